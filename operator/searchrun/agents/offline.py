"""The built-in offline agent: BM25 over title and content, no network.

Ranking is plain BM25 (k1=1.5, b=0.75; the title counts twice). Relevance of
one document to a query is a normalised score in [0, 1], the idf-weighted
fraction of the query's terms the document covers, each term's BM25 term
frequency part measured against an *ideal* document of average length that
contains the term ``IDEAL_TF`` times (and capped there):

    score(d) = sum_t idf(t) * min(1, sat(tf_t(d), |d|) / sat(IDEAL_TF, avgdl)) / sum_t idf(t)

Query terms that occur nowhere in the corpus are left out (no document could
match them). A document that mentions every query term once scores about 0.6,
one that is fully about one term of a three-term query about 0.3, an unrelated
one 0, so the default threshold of 0.35 means "clearly about (most of) the
query".

Tokens are an estimate: ``ceil(words * 1.3)`` of what the agent reads (the
query plus the document text it looks at), truncated to fit the allowance.
Everything is deterministic: ties are broken by corpus order.
"""

from __future__ import annotations

import math
import os
import re
import weakref
from bisect import bisect_right
from collections import Counter
from typing import Optional

from ..corpus import Corpus
from .base import SNIPPET_CHARS, Hit, TraverseDecision, Usage, usage

K1 = 1.5
B = 0.75
IDEAL_TF = 3
TITLE_WEIGHT = 2
TOKENS_PER_WORD = 1.3
MAX_CONTENT_TERMS_SIMPLE = 3

WORD_RE = re.compile(r"\w+")
_SENTENCE_RE = re.compile(r"[^.!?\n]+(?:[.!?]+|\n|$)")

STOPWORDS = frozenset(
    """
    a about above after again against all also am an and any are as at be because been before being
    below between both but by can could did do does doing down during each few for from further had
    has have having he her here hers herself him himself his how i if in into is it its itself just
    me more most my myself no nor not now of off on once only or other our ours ourselves out over
    own same she should so some such than that the their theirs them themselves then there these
    they this those through to too under until up very was we were what when where which while who
    whom why will with would you your yours yourself yourselves get got let may might must shall
    one ones use used using via vs versus us many much
    """.split()
) | frozenset(
    # question framing: signals deep intent, but says nothing about which documents are relevant
    """
    compare compares compared comparing comparison explain explains explained relationship
    relationships relation relations relate relates related tell describe describes
    """.split()
)

DEEP_CUES = frozenset(
    """
    how why compare compares compared comparing comparison versus vs relationship relationships
    relation relations relate relates related between impact impacts affect affects and explain
    explains difference differences tradeoff tradeoffs influence influences connect connects
    connection connections interplay
    """.split()
)


def _stem(tok: str) -> str:
    """A very light, deterministic suffix stripper (plurals only)."""
    if len(tok) <= 3 or not tok.isalpha():
        return tok
    if tok.endswith("ies") and len(tok) > 4:
        return tok[:-3] + "y"
    if tok.endswith("sses"):
        return tok[:-2]
    if tok.endswith("s") and not tok.endswith(("ss", "us", "is")):
        return tok[:-1]
    return tok


_TERM_CACHE: dict[str, Optional[str]] = {}


def _term(tok: str) -> Optional[str]:
    """Index term of a lowercased word, or None for stopwords and single characters."""
    t = _TERM_CACHE.get(tok, "")
    if t != "":
        return t
    t = None if (tok in STOPWORDS or len(tok) < 2) else _stem(tok)
    if len(_TERM_CACHE) < 500_000:
        _TERM_CACHE[tok] = t
    return t


def words(text: str) -> list[str]:
    return WORD_RE.findall(text.lower())


def query_terms(query: str) -> list[str]:
    """Unique content terms of a query, in order."""
    out: list[str] = []
    for w in words(query):
        t = _term(w)
        if t is not None and t not in out:
            out.append(t)
    return out


def estimate_tokens(n_words: int) -> int:
    return math.ceil(n_words * TOKENS_PER_WORD)


def words_for(allowance: int) -> int:
    """The most words whose estimate fits in ``allowance`` tokens."""
    n = int(max(0, allowance) / TOKENS_PER_WORD)
    while n > 0 and estimate_tokens(n) > allowance:
        n -= 1
    return n


def count_words(text: str) -> int:
    return len(WORD_RE.findall(text)) if text else 0


def truncate_words(text: str, n: int) -> str:
    """The prefix of ``text`` holding its first ``n`` words."""
    if n <= 0:
        return ""
    end = None
    for i, m in enumerate(WORD_RE.finditer(text)):
        if i == n - 1:
            end = m.end()
            break
    return text if end is None else text[:end]


def index_text(title: str, content: str) -> str:
    """What the index sees of a document: the title ``TITLE_WEIGHT`` times, then the content."""
    if not title:
        return content.lower()
    return ((title + "\n") * TITLE_WEIGHT + content).lower()


def _is_word_char(ch: str) -> bool:
    return ch.isalnum() or ch == "_"


class BM25Index:
    """BM25 statistics for one corpus, computed lazily for the terms queries use.

    Building the index only lowercases and concatenates the documents (C speed), because
    a step process scores a handful of documents for one query: the first use of a query
    term scans the text once with a literal-prefix regex for the term's surface forms
    (``limit`` -> ``limit``, ``limits``) and caches its postings. Document length is
    measured in characters of the indexed text, a consistent length normalisation that
    needs no tokenisation of the whole corpus.
    """

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
        self._forms: dict[str, list[str]] = {}
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

    def forms(self, term: str) -> list[str]:
        """Surface words whose index term is ``term`` (the stemmer only strips plurals)."""
        f = self._forms.get(term)
        if f is None:
            cands = [term, term + "s", term + "es"]
            if term.endswith("y"):
                cands.append(term[:-1] + "ies")
            f = [w for w in cands if _term(w) == term]
            self._forms[term] = f
        return f

    def postings(self, term: str) -> dict[int, int]:
        """{document index: term frequency} of every document containing ``term``."""
        post = self._postings.get(term)
        if post is not None:
            return post
        post = {}
        forms = self.forms(term)
        if forms:
            prefix = os.path.commonprefix(forms)
            suffixes = sorted({f[len(prefix) :] for f in forms}, key=lambda x: (-len(x), x))
            pattern = re.compile(re.escape(prefix) + "(?:" + "|".join(map(re.escape, suffixes)) + r")(?!\w)")
            text, starts = self.text, self.starts
            for m in pattern.finditer(text):
                p = m.start()
                if p and _is_word_char(text[p - 1]):
                    continue
                i = bisect_right(starts, p) - 1
                post[i] = post.get(i, 0) + 1
        self._postings[term] = post
        return post

    def df(self, term: str) -> int:
        return len(self.postings(term))

    def idf(self, term: str) -> float:
        df = self.df(term)
        return math.log(1.0 + (self.n - df + 0.5) / (df + 0.5))

    def _sat(self, tf: float, dl: float) -> float:
        return tf * (K1 + 1) / (tf + K1 * (1 - B + B * dl / self.avgdl))

    def weights(self, terms: list[str]) -> list[tuple[str, float]]:
        """(term, idf) for the query terms that occur in the corpus."""
        return [(t, self.idf(t)) for t in terms if self.df(t) > 0]

    def _normalised(self, w: list[tuple[str, float]], tfs: list[int], dl: int) -> float:
        total = sum(i for _, i in w)
        if total <= 0:
            return 0.0
        ideal = self._sat(IDEAL_TF, self.avgdl)
        got = sum(idf * min(1.0, self._sat(n, dl) / ideal) for (_, idf), n in zip(w, tfs) if n)
        return min(1.0, got / total)

    def score(self, terms: list[str], doc_id: str) -> float:
        """Normalised relevance in [0, 1] of a whole document."""
        i = self.pos.get(doc_id)
        if i is None:
            return 0.0
        w = self.weights(terms)
        return self._normalised(w, [self.postings(t).get(i, 0) for t, _ in w], self.lens[i])

    def score_text(self, terms: list[str], title: str, content: str) -> tuple[float, list[str]]:
        """Normalised relevance of a piece of text (e.g. the part of a document an agent read),
        with the query terms it contains."""
        t = index_text(title, content)
        counts = Counter(WORD_RE.findall(t))
        w = self.weights(terms)
        tfs = [sum(counts.get(f, 0) for f in self.forms(term)) for term, _ in w]
        return self._normalised(w, tfs, len(t)), [term for (term, _), n in zip(w, tfs) if n]

    def matched(self, terms: list[str], doc_id: str) -> list[str]:
        i = self.pos.get(doc_id)
        return [t for t in terms if i is not None and self.postings(t).get(i)]

    def rank(self, terms: list[str]) -> list[tuple[str, float]]:
        """All documents matching at least one term with their normalised scores, best first
        (ties broken by raw BM25, then corpus order)."""
        w = self.weights(terms)
        total = sum(i for _, i in w)
        if total <= 0:
            return []
        ideal = self._sat(IDEAL_TF, self.avgdl)
        bm25: dict[int, float] = {}
        norm: dict[int, float] = {}
        for t, idf in w:
            for i, n in self.postings(t).items():
                sat = self._sat(n, self.lens[i])
                bm25[i] = bm25.get(i, 0.0) + idf * sat
                norm[i] = norm.get(i, 0.0) + idf * min(1.0, sat / ideal)
        scored = [(min(1.0, norm[i] / total), b, i) for i, b in bm25.items()]
        scored.sort(key=lambda x: (-x[0], -x[1], x[2]))
        return [(self.ids[i], s) for s, _, i in scored]


_INDEXES: "weakref.WeakKeyDictionary[Corpus, BM25Index]" = weakref.WeakKeyDictionary()


def index_for(corpus: Corpus) -> BM25Index:
    """The corpus's index, built once per corpus object."""
    idx = _INDEXES.get(corpus)
    if idx is None:
        idx = BM25Index(corpus)
        _INDEXES[corpus] = idx
    return idx


def snippet(text: str, terms: list[str], idf=None, limit: int = SNIPPET_CHARS) -> str:
    """The passage of ``text`` (at most ``limit`` characters) that best matches ``terms``:
    the best-matching sentence and what follows it, cut at a word boundary."""
    text = text.strip()
    if not text:
        return ""
    wanted = set(terms)
    best_start, best_score = 0, 0.0
    if wanted:
        for m in _SENTENCE_RE.finditer(text):
            present = {_term(w) for w in words(m.group(0))} & wanted
            s = sum(idf(t) if idf else 1.0 for t in present)
            if s > best_score:
                best_start, best_score = m.start(), s
    passage = " ".join(text[best_start:].split())
    if len(passage) <= limit:
        return passage
    cut = passage[: limit - 1]
    sp = cut.rfind(" ")
    if sp > limit // 2:
        cut = cut[:sp]
    return cut.rstrip(" ,;:") + "…"


class OfflineAgent:
    """BM25 relevance and ranking; intent from the query's shape. No network, deterministic."""

    def __init__(self, corpus: Corpus, threshold: float = 0.35, cost_per_1k: float = 0.0):
        self.corpus = corpus
        self.threshold = float(threshold)
        self.cost_per_1k = float(cost_per_1k)
        self.index = index_for(corpus)

    def _usage(self, n_words: int) -> Usage:
        return usage(estimate_tokens(n_words), self.cost_per_1k)

    def _read_query(self, query: str, allowance: int) -> tuple[str, int, int]:
        """(the part of the query that fits, its words, words left for documents)."""
        budget = words_for(allowance)
        qwords = len(WORD_RE.findall(query))
        if qwords > budget:
            return truncate_words(query, budget), budget, 0
        return query, qwords, budget - qwords

    # ------------------------------------------------------------ questions

    def detect_intent(self, query: str, allowance: int) -> tuple[str, str, Usage]:
        if allowance <= 0:
            return "simple", "no token allowance: did not read the query, assuming simple", Usage()
        text, qwords, _ = self._read_query(query, allowance)
        if qwords == 0:
            return "simple", "empty query (or no allowance to read it): assuming simple", self._usage(0)
        toks = words(text)
        terms = query_terms(text)
        cues = [w for w in dict.fromkeys(toks) if w in DEEP_CUES]
        surface: dict[str, str] = {}
        for w in toks:  # show the query's own words, not their stems
            t = _term(w)
            if t is not None:
                surface.setdefault(t, w)
        shown = ", ".join(surface[t] for t in terms[:8]) + (", ..." if len(terms) > 8 else "") if terms else "none"
        n = len(terms)
        plural = "s" if n != 1 else ""
        if cues or n > MAX_CONTENT_TERMS_SIMPLE:
            why = []
            if cues:
                why.append("asks " + "/".join(cues) + " (relations or explanations across topics)")
            if n > MAX_CONTENT_TERMS_SIMPLE:
                why.append(f"spans {n} content terms")
            reason = f"deep: the query {' and '.join(why)}: {shown}"
            return "deep", reason, self._usage(qwords)
        return "simple", f"simple: a short lookup with {n} content term{plural} ({shown})", self._usage(qwords)

    def plan_seeds(self, query: str, k: int, allowance: int) -> tuple[list[str], Usage]:
        if allowance <= 0 or k <= 0:
            return [], Usage()
        text, qwords, left = self._read_query(query, allowance)
        seeds: list[str] = []
        read = qwords
        for doc_id, s in self.index.rank(query_terms(text)):
            if len(seeds) >= k:
                break
            tw = len(WORD_RE.findall(self.corpus.documents[doc_id].title)) or 1
            if tw > left:
                break
            seeds.append(doc_id)
            left -= tw
            read += tw
        return seeds, self._usage(read)

    def simple_search(self, query: str, k: int, allowance: int) -> tuple[list[Hit], Usage]:
        if allowance <= 0 or k <= 0:
            return [], Usage()
        text, qwords, left = self._read_query(query, allowance)
        terms = query_terms(text)
        hits: list[Hit] = []
        read = qwords
        for doc_id, s in self.index.rank(terms):
            if s < self.threshold or len(hits) >= k or left <= 0:
                break
            doc = self.corpus.documents[doc_id]
            full = self.index.nwords(self.index.pos[doc_id])
            if full <= left:
                n, source = full, (doc.content or doc.title)
            else:
                n, source = left, truncate_words(doc.text, left)
            left -= n
            read += n
            hits.append(Hit(doc_id, round(s, 4), snippet(source, terms, self.index.idf)))
        return hits, self._usage(read)

    def traverse(self, query: str, doc_id: str, k: int, allowance: int) -> TraverseDecision:
        if allowance <= 0:
            return TraverseDecision(False, 0.0, "", [], "no token allowance: did not read the document", Usage())
        doc = self.corpus.get(doc_id)
        if doc is None:
            return TraverseDecision(False, 0.0, "", [], f"document {doc_id!r} is not in the corpus", Usage())
        text, qwords, left = self._read_query(query, allowance)
        terms = query_terms(text)
        n = self.index.nwords(self.index.pos[doc_id])
        truncated = n > left
        if truncated:
            # read only what fits: the title first, then the start of the content
            title_words = count_words(doc.title)
            if title_words >= left:
                read_title, read_content = truncate_words(doc.title, left), ""
            else:
                read_title, read_content = doc.title, truncate_words(doc.content, left - title_words)
            n = count_words(read_title) + count_words(read_content)
            score, matched = self.index.score_text(terms, read_title, read_content)
            snip = snippet(read_content or read_title, terms, self.index.idf)
        else:
            score = self.index.score(terms, doc_id)
            matched = self.index.matched(terms, doc_id)
            snip = snippet(doc.content or doc.title, terms, self.index.idf)
        score = round(score, 4)
        found = score >= self.threshold and score > 0
        nxt = self._rank_children(terms, doc_id, 2 * k) if k > 0 else []
        verdict = (
            f"score {score:.2f} >= threshold {self.threshold:.2f}"
            if found
            else f"score {score:.2f} < threshold {self.threshold:.2f}"
        )
        parts = [verdict]
        if matched:
            parts.append("matched " + ", ".join(matched[:8]))
        if truncated:
            parts.append(f"read the first {n} words only (token allowance)")
        parts.append(f"{len(nxt)} children proposed" if nxt else "no children to explore")
        return TraverseDecision(found, score, snip, nxt, "; ".join(parts), self._usage(qwords + n))

    def _rank_children(self, terms: list[str], doc_id: str, limit: int) -> list[str]:
        children = self.corpus.children(doc_id)
        scored = [(self.index.score(terms, c), j, c) for j, c in enumerate(children)]
        if any(s > 0 for s, _, _ in scored):
            scored = [x for x in scored if x[0] > 0]
        scored.sort(key=lambda x: (-x[0], x[1]))
        return [c for _, _, c in scored[:limit]]
