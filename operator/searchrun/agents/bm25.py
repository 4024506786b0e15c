"""A lazy BM25 index over a corpus: ranking for seeds and candidates, term frequencies for judging.

Building the index only lowercases and concatenates the documents (C speed), because a step
process scores a handful of documents for one query: the first use of a term scans the text
once for words that start like the term's stem, keeps those whose Snowball stem is the term,
and caches the postings. Document length is measured in characters of the indexed text.

BM25 (k1=1.5, b=0.75, the title counted twice) only *orders* documents; whether a document
answers is judged by :mod:`.scoring`, whose scores do not depend on the rest of the corpus.
"""

from __future__ import annotations

import math
import re
import weakref
from bisect import bisect_right
from typing import Optional

from ..corpus import Corpus
from .text import count_words, irregular_forms, stem, term

K1 = 1.5
B = 0.75
TITLE_WEIGHT = 2


def index_text(title: str, content: str) -> str:
    """What the index sees of a document: the title ``TITLE_WEIGHT`` times, then the content."""
    if not title:
        return content.lower()
    return ((title + "\n") * TITLE_WEIGHT + content).lower()


def _prefix(t: str) -> str:
    """The start every surface form of stem ``t`` shares (Porter2 turns a final y into i)."""
    if len(t) > 3 and t[-1] in "ie":
        return t[:-1]
    return t


class BM25Index:
    def __init__(self, corpus: Corpus):
        self.corpus = corpus
        self.ids: list[str] = list(corpus.documents)
        self.pos: dict[str, int] = {d: i for i, d in enumerate(self.ids)}
        parts: list[str] = []
        starts: list[int] = []
        lens: list[int] = []
        p = 0
        for doc in corpus.documents.values():
            t = index_text(doc.title, doc.content)
            parts.append(t)
            starts.append(p)
            lens.append(len(t))
            p += len(t) + 1
        self.text = "\x00".join(parts)  # NUL is not a word character: no match spans two documents
        self.starts = starts
        self.lens = lens
        self.n = len(self.ids)
        self.avgdl = (sum(lens) / self.n) if self.n else 1.0
        if self.avgdl <= 0:
            self.avgdl = 1.0
        self._postings: dict[str, dict[int, int]] = {}
        self._nwords: dict[int, int] = {}

    def nwords(self, i: int) -> int:
        """Words an agent reads in document ``i`` (title and content)."""
        n = self._nwords.get(i)
        if n is None:
            doc = self.corpus.documents[self.ids[i]]
            n = count_words(doc.title) + count_words(doc.content)
            self._nwords[i] = n
        return n

    def postings(self, t: str) -> dict[int, int]:
        """{document index: term frequency} of every document containing term ``t``."""
        post = self._postings.get(t)
        if post is not None:
            return post
        post = {}
        if t:
            alts = [re.escape(_prefix(t)) + r"\w*"] + [re.escape(f) + r"(?!\w)" for f in irregular_forms(t)]
            pattern = re.compile(r"(?<!\w)(?:" + "|".join(alts) + ")")
            text, starts = self.text, self.starts
            ok: dict[str, bool] = {}
            for m in pattern.finditer(text):
                w = m.group(0)
                good = ok.get(w)
                if good is None:
                    good = ok[w] = term(w) == t or (w == t and stem(w) == t)
                if good:
                    i = bisect_right(starts, m.start()) - 1
                    post[i] = post.get(i, 0) + 1
        self._postings[t] = post
        return post

    def tf(self, t: str, doc_id: str) -> int:
        i = self.pos.get(doc_id)
        return 0 if i is None else self.postings(t).get(i, 0)

    def df(self, t: str) -> int:
        return len(self.postings(t))

    def idf(self, t: str) -> float:
        df = self.df(t)
        return math.log(1.0 + (self.n - df + 0.5) / (df + 0.5))

    def _sat(self, tf: float, dl: float) -> float:
        return tf * (K1 + 1) / (tf + K1 * (1 - B + B * dl / self.avgdl))

    def rank(self, terms: list[str], weights: Optional[dict[str, float]] = None) -> list[tuple[str, float]]:
        """Documents matching at least one term with their BM25 score, best first (ties by corpus
        order). ``weights`` scales a term's contribution (e.g. below 1 for related words)."""
        bm25: dict[int, float] = {}
        for t in dict.fromkeys(terms):
            w = (weights or {}).get(t, 1.0) * self.idf(t)
            for i, n in self.postings(t).items():
                bm25[i] = bm25.get(i, 0.0) + w * self._sat(n, self.lens[i])
        scored = sorted(bm25.items(), key=lambda x: (-x[1], x[0]))
        return [(self.ids[i], round(s, 6)) for i, s in scored]


_INDEXES: "weakref.WeakKeyDictionary[Corpus, BM25Index]" = weakref.WeakKeyDictionary()


def index_for(corpus: Corpus) -> BM25Index:
    """The corpus's index, built once per corpus object."""
    idx = _INDEXES.get(corpus)
    if idx is None:
        idx = BM25Index(corpus)
        _INDEXES[corpus] = idx
    return idx
