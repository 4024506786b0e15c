"""How the offline agent judges a document against a question and the path that led to it.

A question is a list of content terms (Snowball stems), each worth 1, and perhaps a *focus*:
the kind of thing it asks for ("Which **team** ...", "Who ..." = a person, team or owner;
"What is **X**?" = a document about X). A document matches a term with a strength in [0, 1]:

* the term in its title or its document type: 1; in the kind of the link that led here: 0.8;
* in its content: BM25's term-frequency saturation against a *fixed* reference length
  (``REF_WORDS``), so one mention in a 150-word document gives 0.7 and two or more give 1;
* through a related word from the lexicon (synonym, derived form): ``SYNONYM_WEIGHT`` of that;
* through a distributional neighbour (GloVe, :class:`.lexicon.Distributional`: "planes" ~
  "aircraft"), for words rarer than ``NEAR_MIN_RANK`` only: ``NEAR_*_WEIGHT`` times the
  similarity, which is never enough to establish a term for the note.

Terms weigh by how rare their word is in general English (``term_weight``, from GloVe's
frequency ranks; no corpus statistic): "says" or "working" count less than "passport".

The score is the (weighted) share of the question covered by the document *together with its path*:
terms the path already covered (the parent's note and the ancestors' titles and link kinds)
count ``PATH_CREDIT`` each, the rest what this document gives. No corpus statistic enters it, so
a score (and the threshold) means the same in a 12- and a 5,000-document corpus. A document
answers when the score reaches the threshold and it contributes itself: it matches the focus
in its title, type or incoming link kind (a "who" question is answered by what its type or
its title's head noun says is a person, team or organisation - or a type this corpus uses for
them, see :func:`agent_types` - or by an untyped target of an ``..._by`` link), it covers at
least ``MIN_OWN_OPEN`` of what was still open, a seed with at least two of a longer question's
terms, and a document reached by a link through its title, type or link kind - so one
incidental word, or an echo of the seed's subject, is never an answer. Past a document that
answered, one that gives no open term strongly itself (the answer's team or manager), unless it
is a person or group reached by a link that says the relation asked ("who manages ...?" and
``managed_by``), is marked ``past_answer``: the fan-in keeps it over the earlier answer only if
its link names a relation the question asks, so the path does not drift on. Reached by a link, a document of the
kind a "which X" question names answers while the path had none; a "who"/"where" question
whose path covered every term is answered by the first person or place on it; "who leads the
team that ...?" (:func:`_agent_object`) only past a person or group. A "where" question counts
the types this corpus uses as places (:func:`place_types`), as "who" counts its agent types.

The link into a document is its own evidence (``View.kind``), not the path's; related words
met in passing in the content count ``CONTENT_SYNONYM_WEIGHT`` and establish nothing for the
note.
"""

from __future__ import annotations

import re
from functools import cached_property
from collections import Counter
from dataclasses import dataclass
from typing import Iterable, Optional

from .base import PathContext
from .corpus_kinds import _NOT_AGENTS, _WHO_KIND_END, agent_types, place_types  # noqa: F401  (re-exported)
from .question import (  # noqa: F401  (re-exported)
    _AUX,
    DURATION,
    HOWTO,
    HOWTO_TERMS,
    _WHO_ROLES,
    _WHO_TERMS,
    NEAR_CONTENT_WEIGHT,
    NEAR_LABEL_MIN_SIM,
    NEAR_LABEL_WEIGHT,
    WHERE,
    WHO,
    WHO_TERMS,
    QTerm,
    Question,
    analyse,
    term_weight,
)
from .text import kind_terms, kind_words, term, terms_of

K1 = 1.5
B = 0.75
REF_WORDS = 150
IDEAL_TF = 2
SYNONYM_WEIGHT = 0.5
CONTENT_SYNONYM_WEIGHT = 0.3  # a related word in passing in the content is weaker evidence still
KIND_WEIGHT = 0.8
PATH_CREDIT = 0.9
MIN_OWN_OPEN = 0.34
STRONG = 0.6
CONTENT_ONLY_SCORE = 0.75  # a document whose labels share nothing with a longer question answers on content this strong
CLASS_MATCH = 0.75  # "which sponsor ...?" and a company reached by hosted_by: who, if not which
OPENING_WORDS = 8  # a document's first words often say what it is ("A single machine with ...")

# words for anyone at all: naming one says nothing about which person or group answers
_ANYONE = frozenset(terms_of("person people someone somebody individual colleague employee"))
_WHERE_TERMS = frozenset(terms_of("place location office site building address room venue campus depot hall region"))
# General English words for one kind of thing: a question that names one ("which company",
# "what rules") is answered by a document that is another ("vendor", "policy").
KIND_CLASSES = tuple(frozenset(terms_of(names)) for names in (
    "company firm business outfit agency body authority regulator watchdog institution organisation organization "
    "corporation supplier vendor provider contractor consultancy",
    "rule policy regulation standard guideline code schedule",
    "machine server host cluster node computer instance",
    "group team squad crew unit department division committee board",
))
# "A storage company with ...", "Ridgeway Freight is a haulier that ...", "... a contractor based
# in ...": what the document says it is
_ISA_RE = re.compile(r"^(?:[^.!?]{0,80}?\b(?:is|are)\s+)?(?:a|an|the|our)\s+((?:[\w-]+\s+){0,3}?[\w-]+)"
                     r"(?=\s+(?:with|that|which|who|for|of|in|on|at|to|from|by|and|behind|where|[a-z]+ed)\b|[,.;:]|$)", re.I)
_DURATION_RE = re.compile(
    r"\b(?:\d+|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|fifteen|twenty|thirty|forty|"
    r"fifty|sixty|ninety|hundred)[\s-]+(?:[a-z]+[\s-]+)?(?:seconds?|minutes?|hours?|days?|weeks?|months?|years?|decades?)\b"
    r"|\bindefinitely\b|\bforever\b", re.I)  # a number of units ("twelve years", "90 days"), not "a day"
_WHERE_KINDS = frozenset(terms_of("located location site where")) | {"at", "in"}
_OPEN_MARK = re.compile(r"\b(?:(?:still open|open|missing|remaining|unresolved|unknown|todo)\s*:|still need(?:ed|s)?\b)", re.I)


def saturation(tf: int, n_words: int) -> float:
    """Content strength of ``tf`` mentions in a document of ``n_words`` words, in [0, 1]."""
    if tf <= 0:
        return 0.0

    def sat(x: float) -> float:
        return x * (K1 + 1) / (x + K1 * (1 - B + B * max(1, n_words) / REF_WORDS))

    return min(1.0, sat(tf) / (IDEAL_TF * (K1 + 1) / (IDEAL_TF + K1)))


class View:
    """What the agent read of one document: its title, type, incoming link kind and content."""

    def __init__(self, title: str, doc_type: str, relation: Optional[str], content: str,
                 agent_types: frozenset = frozenset(), place_types: frozenset = frozenset(),
                 corpus_types: frozenset = frozenset()):
        self.corpus_types = corpus_types  # stems of every document type this corpus uses
        self.agent_types = agent_types  # this corpus's document types that are people or groups
        self.place_types = place_types  # ... and that are places
        self.title = set(terms_of(title))
        tws = terms_of(title)
        self.head = {tws[-1]} if tws else set()  # English noun phrases end in what the thing is
        self.type = {t for t in map(term, kind_words(doc_type)) if t} if doc_type != "document" else set()
        kw = kind_words(relation or "")
        self.kind = set(kind_terms(relation or ""))
        self.agent_link = len(kw) >= 2 and kw[-1] in _WHO_KIND_END and term(kw[-2]) not in _NOT_AGENTS
        self.place_link = bool(set(kw) & _WHERE_KINDS)
        toks = terms_of(content)
        self.opening = set(toks[:OPENING_WORDS])
        self._content = content
        self.counts = Counter(toks)
        self.n_words = len(toks) + len(self.title)

    @cached_property
    def isa(self) -> set[str]:
        """The head noun of what the opening says the document is (read only when asked)."""
        m = _ISA_RE.match(self._content.lstrip()[:200])
        head = terms_of(m.group(1)) if m else []
        return {head[-1]} if head else set()

    @cached_property
    def duration(self) -> bool:
        """Does it give a number of time units? (Read only for a "how long" question.)"""
        return bool(_DURATION_RE.search(self._content))

    def _exact(self, s: str) -> tuple[float, str]:
        if s in self.title:
            return 1.0, "title"
        if s in self.type:
            return 1.0, "type"
        if s in self.kind:
            return KIND_WEIGHT, "link"
        c = saturation(self.counts.get(s, 0), self.n_words)
        return c, "content" if c else ""

    def strength(self, t: QTerm) -> tuple[float, str]:
        """(strength, where) of the best match of ``t``: exact, else through a related word."""
        best, where = self._exact(t.stem)
        if best >= 1.0:
            return best, where
        for r in t.variants:  # the same word with an agent ending: as good as the word
            m, w = self._exact(r)
            if m > best:
                best, where = m, f"{w} ={r}"
        for r in t.ordered:
            m, w = self._exact(r)
            m *= CONTENT_SYNONYM_WEIGHT if w == "content" else SYNONYM_WEIGHT
            if m > best:
                best, where = m, f"{w} ~{r}"
        for r, sim in t.near:
            m, w = self._exact(r)
            if w != "content" and sim < NEAR_LABEL_MIN_SIM:
                continue
            m *= sim * (NEAR_CONTENT_WEIGHT if w == "content" else NEAR_LABEL_WEIGHT)
            if m > best:
                best, where = m, f"{w} ≈{r}"
        return best, where

    def is_howto(self) -> bool:
        """Its type, title's head or incoming link says it is a procedure (a runbook, a guide)."""
        return bool((self.type | self.head | self.kind) & HOWTO_TERMS)

    def focus_strength(self, q: Question) -> float:
        """How strongly this document is the kind of thing the question asks for. Its type (when
        the corpus gives one) and title say what it is; the incoming link kind (``owned_by``) and
        its opening words ("A single machine with ...") count for less."""
        if q.focus is None:
            return 1.0
        if q.focus == HOWTO:  # a procedure, where the corpus has any; else no kind is asked for
            return 1.0 if self.is_howto() or not (self.corpus_types & HOWTO_TERMS) else 0.0
        labels = self.title | self.type | self.kind
        if q.focus in (WHO, WHERE):
            named = set(q.stems) - _ANYONE  # "who does the person who ... report to?": a person still answers
            labels = labels - named  # "who leads the department ...": not the department itself
            own = (self.head | self.type) - named  # "Council contact centre" is a centre
            if q.focus == WHO and self.type & self.agent_types - named:
                return 1.0
            if q.focus == WHERE and self.type & self.place_types - named:
                return 1.0
            kinds, linked = (_WHO_TERMS, self.agent_link) if q.focus == WHO else (_WHERE_TERMS, self.place_link)
            if own & kinds:
                return 1.0
            if linked or self.kind & kinds:
                # the link says "by someone"; a typed document that is not a who/where is less sure
                return SYNONYM_WEIGHT if self.type else 1.0
            return SYNONYM_WEIGHT if (self.opening - named) & kinds else 0.0
        if q.focus == DURATION:
            return 1.0 if self.duration else 0.0
        qt = next((t for t in q.terms if t.stem == q.focus), None)
        if q.focus in labels or q.focus in self.isa:
            return 1.0
        if any(q.focus in c and (self.head | self.type | self.isa) & c for c in KIND_CLASSES):
            return 1.0  # "which company ...?" and a vendor, "which rules ...?" and a policy
        if qt is not None and labels & qt.related:
            return SYNONYM_WEIGHT
        if q.focus in self.opening:
            return SYNONYM_WEIGHT
        if q.focus in self.corpus_types:
            return 0.0  # the corpus has documents of the kind asked for ("which vendor"): this is not one
        if q.focus in _WHO_ROLES and ((self.head | self.type) & (_WHO_TERMS | self.agent_types) or (self.agent_link and not self.type)):
            return CLASS_MATCH  # the focus is a role, and this document is an agent that can play it
        return 0.0


_NOTE_LABELS = re.compile(r"\b(?:established|answered\s+by)\b\s*:?", re.I)  # the note's own words (see note_for)
_ANSWERED = re.compile(r"\banswered by\b", re.I)


def path_answered(path: Optional[PathContext]) -> bool:
    """Did the parent say (in its note, before any "open:" marker) that it answered?"""
    if path is None or not path.note:
        return False
    m = _OPEN_MARK.search(path.note)
    return bool(_ANSWERED.search(path.note[: m.start()] if m else path.note))


def path_covered(q: Question, path: Optional[PathContext]) -> set[str]:
    """Stems of the question the path already covered: the parent's note (the part before an
    "open:" marker, if it has one) and the ancestors' titles and the link kinds into them. The
    link into the current document is its own evidence (``View.kind``), not the path's."""
    if path is None:
        return set()
    note = path.note or ""
    m = _OPEN_MARK.search(note)
    established = _NOTE_LABELS.sub(" ", note[: m.start()] if m else note)  # "established" is no evidence of "build"
    seen = set(terms_of(established))
    for h in path.hops:
        seen.update(terms_of(h.title or ""))
        seen.update(kind_terms(h.relation or ""))
    out = set()
    for t in q.terms:
        if t.stem in seen or (t.related & seen):
            out.add(t.stem)
    return out


@dataclass(frozen=True)
class Judgement:
    score: float
    found: bool
    matched: tuple[tuple[str, float, str], ...]  # (surface, strength, where) of what the document gives
    covered: frozenset[str]  # stems covered after this document (path and own)
    why_not: str
    past_answer: bool = False  # an answer only as the next thing past the parent's answer (see judge)


def judge(q: Question, view: View, path_terms: Iterable[str], threshold: float, after_answer: bool = False,
          agent_before: Optional[bool] = None) -> Judgement:
    """``after_answer``: the parent was itself an answer, so this document, unless it adds an
    open term in its own title, type or link, is only the next thing along the path
    (``past_answer``).
    ``agent_before``: whether the path to this document passed a person or group (None: unknown);
    "who leads the team that ...?" is answered only past one."""
    if not q.terms:
        return Judgement(0.0, False, (), frozenset(), "the query has no content terms")
    path_terms = set(path_terms)
    total = 0.0
    own_open = 0.0
    open_weight = 0.0
    n_open = 0
    own_hits = 0
    strong_hits = 0
    labelled = 0  # open terms matched by the title, type or incoming link kind
    matched = []
    covered = set(path_terms)
    for t in q.terms:
        m, where = view.strength(t)
        if m > 0:
            matched.append((t.surface, round(m, 2), where))
        if m >= 0.5 and not where.startswith("content ~"):  # a synonym in passing establishes nothing
            covered.add(t.stem)
        if t.stem in path_terms:
            total += t.weight * max(m, PATH_CREDIT)
            continue
        n_open += 1
        own_open += t.weight * m
        open_weight += t.weight
        own_hits += m >= 0.3
        # a related word in the title, type or link ("retention" for "kept") is as strong as an
        # exact word in the content
        label = bool(where) and not where.startswith("content")
        strong = m >= STRONG or (label and m >= SYNONYM_WEIGHT)
        strong_hits += strong
        labelled += strong and label
        total += t.weight * m
    score = round(min(1.0, total / sum(t.weight for t in q.terms)), 4)
    open_share = own_open / open_weight if open_weight else 0.0
    fs = view.focus_strength(q)
    # what the document itself gives: the kind of thing asked for (a person, a place), or open terms;
    # reached by a link, a document whose title or type is the kind named ("which team ...") while
    # the path had not found one gives it too
    gives_focus = ((q.focus in (WHO, WHERE) and fs >= 1.0) or fs == CLASS_MATCH or (q.focus == HOWTO and view.is_howto())
                   or (q.focus == DURATION and view.duration)
                   or (bool(path_terms) and fs >= 1.0 and q.focus is not None and q.focus not in path_terms))
    # "who manages ...?" and a managed_by link into an agent: the link itself says this one does it
    by_link = q.focus == WHO and fs >= 1.0 and view.agent_link and any(
        t.stem in view.kind or t.related & view.kind for t in q.terms)  # "who runs ...?" and led_by
    why = ""
    # "Who does Priya Nair report to?": the document the question names is whom it asks about
    # (its title is all the question's words, and the question says more: the relation asked)
    names_it = q.focus in (WHO, WHERE) and bool(view.title) and view.title < set(q.stems)
    if score < threshold or score <= 0:
        why = f"score {score:.2f} < threshold {threshold:.2f}"
    elif names_it:
        why = "the question names this document; it asks who or where stands in a relation to it"
    elif n_open == 0 and not (gives_focus and q.focus in (WHO, WHERE) and path_terms and not after_answer):
        # (the path covered every term but not the who or where: a document that is one answers)
        why = "adds nothing the path had not covered"
    elif fs < (1.0 if q.focus in (WHO, WHERE) else 0.5):
        why = "its title, type and link are not what the question asks for"
    elif q.agent_object and agent_before is False:
        why = "the question asks who stands in a relation to a person or group; the path passed none yet"
    elif q.agent_object and agent_before and not (view.agent_link or any(
            view.kind & ({t.stem} | t.related) for t in q.terms)):
        why = "the link from the group the question names does not say who leads or does it"
    elif not gives_focus and (strong_hits == 0 or open_share < MIN_OWN_OPEN):
        why = f"covers only {open_share:.0%} of what was still open"
    elif not path_terms and len(q.terms) >= 3 and own_hits < 2:
        why = "matches only one of the question's terms"
    elif not path_terms and len(q.terms) >= 3 and not labelled and score < CONTENT_ONLY_SCORE:
        why = f"its title, type and link share nothing with the question and its content covers < {CONTENT_ONLY_SCORE:.0%}"
    elif path_terms and not gives_focus and not labelled:
        # reached by a link, a document answers the open part only if it is *about* it
        why = "mentions what was still open only in passing (not in its title, type or link)"
    # past an answer, one that gives no open term strongly itself is the next thing along the
    # path (its team, its manager): still an answer, marked, and the fan-in keeps it over the
    # earlier one only if its link names a relation the question asks (see aggregate_results)
    past = bool(after_answer and strong_hits == 0 and not by_link)
    return Judgement(score, not why, tuple(matched), frozenset(covered), why, past_answer=past and not why)


def note_for(q: Question, covered: Iterable[str], title: str, found: bool) -> str:
    """The note a document leaves its children: what the path established, what is still open."""
    covered = set(covered)
    est = [t.surface for t in q.terms if t.stem in covered]
    opn = [t.surface for t in q.terms if t.stem not in covered]
    if q.focus in (WHO, WHERE) and not found:
        opn.append("who" if q.focus == WHO else "where")
    parts = []
    if est:
        parts.append("established: " + ", ".join(est) + (f" ({title})" if title else ""))
    if found:
        parts.append(f"answered by {title or 'this document'}")
    parts.append("open: " + (", ".join(opn) if opn else "nothing"))
    return "; ".join(parts)
