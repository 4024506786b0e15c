"""Words for the offline agent: tokenising, stopwords, Snowball stems, token estimates, snippets.

Stems come from the Snowball English (Porter2) stemmer of the ``snowballstemmer`` package,
so "maintains"/"maintained" and "leads"/"leading" meet; irregular forms ("led", "kept") are
joined by the lexicon (:mod:`.lexicon`) instead. Everything is deterministic and cached per
process (a step process is short-lived and reads a few thousand distinct words at most).
"""

from __future__ import annotations

import math
import re
from functools import lru_cache
from importlib import resources
from typing import Callable, Optional

from snowballstemmer.english_stemmer import EnglishStemmer

from .base import SNIPPET_CHARS

TOKENS_PER_WORD = 1.3
CHARS_PER_TOKEN = 4

WORD_RE = re.compile(r"\w+")
_SENTENCE_RE = re.compile(r"[^.!?\n]+(?:[.!?]+|\n|$)")
_KIND_SPLIT_RE = re.compile(r"[^A-Za-z0-9]+|(?<=[a-z0-9])(?=[A-Z])")

STOPWORDS = frozenset(
    """
    a about above across after again against all along also am among an and any are around as at
    be because been before behind being below beneath beside besides between beyond both but by can
    could did do does doing done down during each either else every few for from further had has
    have having he her here hers herself him himself his how however i if in inside into is it its
    itself just like me more most my myself near neither no nor not now of off on once only onto or
    other others our ours ourselves out outside over own same she should so some such than that the
    their theirs them themselves then there these they this those through throughout to too toward
    towards under underneath until up upon very was we were what whatever when where whether which
    while who whom whose why will with within without would yet you your yours yourself yourselves
    get gets got let may might must shall one ones use used uses using via vs versus us many much
    thing things something anything way ways kind kinds please currently actually really
    """.split()
) | frozenset(
    # question framing: says how to answer, nothing about which documents are relevant
    """
    compare compares compared comparing comparison explain explains explained relationship
    relationships relation relations relate relates related tell describe describes find show
    list give know need want answer question
    """.split()
)

# "own" is a stopword as an adjective ("its own") but a relation as a verb: keep its verb forms
_RELATION_VERBS = frozenset("owns owned owner owners owning".split())

_STEMMER = EnglishStemmer()
_IRREGULAR: Optional[dict[str, str]] = None


def irregular() -> dict[str, str]:
    """{irregular form: base} from WordNet's exception lists (kept -> keep, led -> lead), shipped
    as ``data/irregular-en.tsv`` (see hack/build-lexicon.py); empty if the file is missing."""
    global _IRREGULAR
    if _IRREGULAR is None:
        table: dict[str, str] = {}
        try:
            data = resources.files("searchrun").joinpath("data/irregular-en.tsv").read_text(encoding="utf-8")
            for line in data.splitlines():
                form, _, base = line.partition("\t")
                if base:
                    table[form] = base
        except OSError:
            pass
        _IRREGULAR = table
    return _IRREGULAR


@lru_cache(maxsize=200_000)
def stem(word: str) -> str:
    """Snowball English stem of a lowercased word, after mapping an irregular form to its base
    (numbers and mixed tokens are kept as they are)."""
    if len(word) <= 2 or not word.isalpha():
        return word
    return _STEMMER.stemWord(irregular().get(word, word))


@lru_cache(maxsize=4096)
def irregular_forms(t: str) -> tuple[str, ...]:
    """Irregular forms whose stem is ``t`` ("kept" for "keep"): what an index must also look for."""
    head = t[:2]
    return tuple(f for f, base in irregular().items() if base.startswith(head) and stem(base) == t)


@lru_cache(maxsize=200_000)
def term(word: str) -> Optional[str]:
    """Index term of a lowercased word, or None for stopwords and single characters."""
    if len(word) < 2 or (word in STOPWORDS and word not in _RELATION_VERBS):
        return None
    return stem(word)


# "won't", "can't", "we're", "it's": the negation is a word, the rest of a contraction none
# ("we're" gave a term "re", "won't" the verb "won")
_CONTRACTION_RE = re.compile(r"n['\u2019]t\b|['\u2019](?:re|ve|ll|d|m|s)\b")
_NEGATION_RE = re.compile(r"\b(wo|ca|sha)n['\u2019]t\b")
_IRREGULAR_NEGATIONS = {"wo": "will", "ca": "can", "sha": "shall"}


def _contraction(m: re.Match) -> str:
    return " not" if m.group(0)[0] == "n" else ""


def words(text: str) -> list[str]:
    text = text.lower()
    if "'" in text or "\u2019" in text:
        text = _NEGATION_RE.sub(lambda m: _IRREGULAR_NEGATIONS[m.group(1)] + " not", text)
        text = _CONTRACTION_RE.sub(_contraction, text)
    return WORD_RE.findall(text)


def terms_of(text: str) -> list[str]:
    """Content terms of ``text`` in order, with repeats."""
    return [t for t in map(term, words(text)) if t is not None]


def query_terms(query: str) -> list[str]:
    """Unique content terms of a query, in order."""
    return list(dict.fromkeys(terms_of(query)))


def surface_forms(text: str) -> dict[str, str]:
    """{term: the first word of ``text`` that gave it}, to show a query's own words."""
    out: dict[str, str] = {}
    for w in words(text):
        t = term(w)
        if t is not None:
            out.setdefault(t, w)
    return out


@lru_cache(maxsize=4096)
def kind_words(kind: str) -> tuple[str, ...]:
    """Lowercased words of a relationship kind or a document type: ``owned_by`` -> (owned, by),
    ``onCall`` -> (on, call)."""
    return tuple(w.lower() for w in _KIND_SPLIT_RE.split(kind or "") if w)


# What a question calls the other end of a reporting link: X reports_to Y, so Y is X's boss.
_REPORTING_NOUNS = ("boss", "manager", "supervisor", "superior")


@lru_cache(maxsize=4096)
def kind_terms(kind: str) -> frozenset[str]:
    """Index terms of a relationship kind, with the nouns a question uses for what it links to:
    ``reports_to`` is also "boss", "manager", "supervisor" ("Who is Ruth Lane's boss?")."""
    out = {t for t in map(term, kind_words(kind)) if t}
    if stem("report") in out and len(out) == 1:
        out |= {stem(w) for w in _REPORTING_NOUNS}
    return frozenset(out)


def estimate_tokens(n_words: int) -> int:
    return math.ceil(max(0, n_words) * TOKENS_PER_WORD)


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


def clip(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` characters, at a word boundary when one is near."""
    if limit <= 0:
        return ""
    if len(text) <= limit:
        return text
    if limit == 1:
        return "…"
    cut = text[: limit - 1]
    sp = cut.rfind(" ")
    if sp > limit // 2:
        cut = cut[:sp]
    return cut.rstrip(" ,;:") + "…"


def snippet(text: str, terms: list[str], idf: Optional[Callable[[str], float]] = None, limit: int = SNIPPET_CHARS) -> str:
    """The passage of ``text`` (at most ``limit`` characters) that best matches ``terms``:
    the best-matching sentence and what follows it, cut at a word boundary."""
    text = text.strip()
    if not text:
        return ""
    wanted = set(terms)
    best_start, best_score = 0, 0.0
    if wanted:
        for m in _SENTENCE_RE.finditer(text):
            present = {term(w) for w in words(m.group(0))} & wanted
            s = sum(idf(t) if idf else 1.0 for t in present)
            if s > best_score:
                best_start, best_score = m.start(), s
    return clip(" ".join(text[best_start:].split()), limit)
