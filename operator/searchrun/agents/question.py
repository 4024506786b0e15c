"""A question as the offline agent reads it: its content terms, each weighed by how rare its word
is in general English and with its related words, and its focus (who, where, which X, what is X).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Optional

from .lexicon import LEXICON, NEIGHBOURS
from .text import STOPWORDS, surface_forms, term, terms_of, words

MAX_RELATED_PER_TERM = 24
# A term's weight in the score follows how rare the word is in general English (GloVe's
# frequency rank, corpus-independent): "says" or "working" weigh less than "passport".
COMMON_RANK = 100  # at or above this frequency (rank 1 = "the") a word weighs WEIGHT_FLOOR
RARE_RANK = 20_000  # at or below this frequency (and for words the table does not know) it weighs 1
WEIGHT_FLOOR = 0.3
NEAR_LABEL_WEIGHT = 0.4  # a distributional neighbour ("planes" ~ "aircraft") in a title, type or link, times its similarity
NEAR_CONTENT_WEIGHT = 0.25  # ... in the content
NEAR_MIN_RANK = 1000  # frequent words have topical neighbours ("team" ~ "football"): only rarer ones use them
MAX_NEAR_PER_TERM = 6
NEAR_LABEL_MIN_SIM = 0.85  # in a title, type or link: below this, 50-dimensional neighbours are mostly topical ("computing" ~ "networking")

WHO = "\x00who"  # the focus of a "who ..." question: a person, team, owner or organisation
WHERE = "\x00where"  # the focus of a "where ..." question: a place
HOWTO = "\x00howto"  # the focus of "what should I do when ...?": a procedure (a runbook, a guide)
HOWTO_TERMS = frozenset(terms_of(
    "runbook playbook procedure guide guidance instruction instructions steps checklist manual handbook howto"))
DURATION = "\x00duration"  # "how long / how often ...?": a document that gives a number of time units
_DURATION_ASKERS = frozenset("long soon often".split())
_CLAUSE_RE = re.compile(r"[:;,\u2013\u2014]|\s-\s")
_DO_ASKERS = frozenset("should do does must can shall".split())
_WHO_TERMS = frozenset(
    terms_of(
        """team person people owner group squad engineer lead leader manager maintainer director head
        chief staff contractor company firm vendor supplier provider department organisation
        organization agency operator committee board council panel crew member contributor author
        rotation rota role sponsor partner customer user client"""
    )
)
# roles anyone may play (a person, a team, a company): "which sponsor ...?" is answered by any agent
_WHO_ROLES = frozenset(
    terms_of(
        """owner lead leader manager maintainer director head chief operator contractor vendor supplier
        provider sponsor partner customer user client author contributor member staff engineer"""
    )
)
WHO_TERMS = _WHO_TERMS
_WH_START = frozenset("which what who whom whose where".split())
_AUX = frozenset("is are was were does do did has have had can could should would will".split())


@dataclass(frozen=True)
class QTerm:
    stem: str
    surface: str
    related: frozenset[str]
    ordered: tuple[str, ...] = ()  # the related stems, closest first
    weight: float = 1.0  # how much the term weighs in the score (see term_weight)
    near: tuple[tuple[str, float], ...] = ()  # distributional neighbours (stem, similarity), closest first
    # related stems that are the word itself with an agent or noun ending the stemmer keeps
    # ("paged" ~ "pager", "manages" ~ "manager"): as good as the word (see ``variants_of``)
    variants: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Question:
    terms: tuple[QTerm, ...]
    focus: Optional[str]  # a term's stem, WHO, or None
    definitional: bool  # "What is X?": the answer is a document about X
    agent_object: bool = False  # "who leads the team that ...": the answer lies past a person or group

    @property
    def stems(self) -> list[str]:
        return [t.stem for t in self.terms]


# Phrasal verbs whose words say nothing of what they mean ("looks after" is neither looking nor
# after): read as the one verb they mean, before anything else (stems ignore the inflection).
_PHRASAL = tuple((re.compile(p, re.I), v) for p, v in (
    (r"\b(?:look|looks|looked|looking) after\b", "maintain"),
    (r"\b(?:answer|answers|answered|answering) to\b", "report to"),
    (r"\b(?:keep|keeps|kept|keeping) an eye on\b", "monitor"),
    (r"\b(?:hang|hangs|hung|hanging|hold|holds|held|holding) on to\b", "keep"),
    (r"\b(?:sign|signs|signed|signing) off\b", "approve"),
    (r"\b(?:go|goes|went|gone|going) wrong\b|\b(?:fall|falls|fell|fallen|falling) over\b", "fail"),
))


def plain_verbs(query: str) -> str:
    """``query`` with its phrasal verbs replaced by the verbs they mean (``_PHRASAL``)."""
    for pat, verb in _PHRASAL:
        query = pat.sub(verb, query)
    return query


def analyse(query: str) -> Question:
    """The question's terms (with related words), focus and shape."""
    query = plain_verbs(query)
    surf = surface_forms(query)
    terms = []
    for s, w in surf.items():
        rel = LEXICON.related_terms(w)[:MAX_RELATED_PER_TERM] if w.isalpha() else ()
        if rel:  # "kept" ~ "retain" ~ "retention": the nouns of its related verbs, after them
            rel = rel + tuple(t for t in LEXICON.derived_terms(w) if t not in rel)
        rank = NEIGHBOURS.rank(w) if w.isalpha() else 0
        near = ()
        if w.isalpha() and (rank == 0 or rank >= NEAR_MIN_RANK):
            near = tuple((t, sim) for t, sim in NEIGHBOURS.near_terms(w) if t not in rel)[:MAX_NEAR_PER_TERM]
        terms.append(QTerm(s, w, frozenset(rel), rel, term_weight(rank), near, variants_of(s, rel)))
    terms = _without_each_other(terms)
    ws = _asking_clause(query)
    focus: Optional[str] = None
    definitional = False
    if len(ws) > 2 and ws[0] == "how" and ws[1] in _DURATION_ASKERS:
        focus = DURATION  # "how long do we keep ...", "how soon must ..."
    elif ws and ws[0] in _WH_START:
        if ws[0] in ("who", "whom", "whose"):
            focus = WHO
        elif ws[0] == "where":
            focus = WHERE
        elif (asked := kind_asked(ws)) is not None:
            # "which team ...", "which outside company does ...", "what procedure covers ..."
            focus = asked[1]
            if focus in HOWTO_TERMS:
                focus = HOWTO  # "what procedure ...", "which runbook ...": a procedure
        elif ws[0] == "what" and len(ws) > 2 and ws[1] in ("is", "are") and len(surf) <= 3:
            definitional = True
        elif ws[0] == "what" and len(ws) > 2 and ws[1] in _DO_ASKERS and "do" in ws[2:6] and (
                ws.index("do", 2) + 1 < len(ws) or ws[1] not in ("do", "does") or ws[2] in ("i", "we", "you")):
            focus = HOWTO  # "what should staff do when ...", "what should I do?", not "what does the team do?"
    elif len(ws) > 2 and ws[0] == "how" and ws[1] in ("do", "should", "can") and ws[2] in ("i", "we", "you"):
        focus = HOWTO  # "how do I restore ...", not "how does X work"
    elif ws and ws[0] in ("define", "definition"):
        definitional = True
    return Question(tuple(terms), focus, definitional, focus == WHO and _agent_object(ws))


def _without_each_other(terms: list[QTerm]) -> list[QTerm]:
    """Each term's related words, less the question's other terms: in "phones can't get a
    session: who is on call?", "phone" is a word of its own, not a second match for "call"."""
    own = {t.stem for t in terms}
    out = []
    for t in terms:
        others = own - {t.stem}
        if t.related & others or any(r in others for r, _ in t.near):
            ordered = tuple(r for r in t.ordered if r not in others)
            t = QTerm(t.stem, t.surface, frozenset(ordered), ordered, t.weight,
                      tuple((r, sim) for r, sim in t.near if r not in others), t.variants - others)
        out.append(t)
    return out


_DETERMINERS = frozenset("the a an its their our your his her this that these those".split())
_VERB_NEXT = frozenset("if when whenever after before during in on to with while once".split())
_MODIFIER_WORDS = 2  # "which outside company", "which two teams": words before the kind asked for


def _asking_clause(query: str) -> list[str]:
    """The words of the clause that asks: the whole query, or the last clause (after a colon,
    semicolon, dash or comma) that starts with a question word ("The ledger database is down:
    how do we recover it?")."""
    ws = words(query)
    if not ws or ws[0] in _WH_START or ws[0] in ("how", "define", "definition"):
        return ws
    for part in reversed(_CLAUSE_RE.split(query)[1:]):
        pws = words(part)
        if pws and (pws[0] in _WH_START or pws[0] == "how"):
            return pws
    return ws


def kind_asked(ws: list[str]) -> Optional[tuple[int, str]]:
    """(where in ``ws``, stem) of the kind of thing a "which X ..." or "what X ..." question
    asks for: its first content word ("which outside company does ..." asks for a company;
    "which external company does ...", an adjective then the noun before the verb, too), or
    None ("what happens if ...": a verb, not a kind; "what is X": no kind)."""
    if len(ws) < 2 or ws[0] not in ("which", "what"):
        return None
    k = 1
    while k < min(len(ws), 1 + _MODIFIER_WORDS) and ws[k] in STOPWORDS and ws[k] not in _AUX:
        k += 1  # "which outside company", "which two teams"
    if k >= len(ws) or ws[k] in STOPWORDS or term(ws[k]) is None:
        return None
    if k + 1 < len(ws) and ws[k + 1] in _VERB_NEXT and ws[0] == "what":
        return None  # "what happens if ...", "what goes on in ..."
    if k + 2 < len(ws) and ws[k + 1] not in STOPWORDS and term(ws[k + 1]) is not None and ws[k + 2] in _AUX:
        k += 1  # "which external company does ...": the noun before the verb
    return k, term(ws[k])


_AGENT_SUFFIXES = ("ist", "ists", "yst", "ysts", "ian", "ians")  # analysts, technicians: people by what they do


def _agent_object(ws: list[str]) -> bool:
    """"Who leads the technicians that ...", "who heads the department ...": is the object of the
    question's first verb a person or group (so the answer is who stands in that relation to it)?"""
    if len(ws) < 3:
        return False
    i = 2
    if ws[1] in _AUX:
        # "who is in charge of the group ...", "who is the boss of the staff ...", "who is
        # responsible for the team ...": the object follows the role's "of" or "for"
        rel = next((k for k in range(2, min(len(ws), 7)) if ws[k] in ("of", "for")), None)
        if rel is None:
            return False
        i = rel + 1
    start = i
    while i < len(ws) and ws[i] in _DETERMINERS:
        i += 1
    if i == start or i >= len(ws):  # "who leads engineering" has no object noun phrase to pass
        return False
    noun = ws[i]
    t = term(noun)
    return t is not None and (t in _WHO_TERMS or noun.endswith(_AGENT_SUFFIXES))


_AGENT_ENDINGS = ("r", "er", "or")  # "pager" for "page", "manager" for "manag", "owner" for "own"


def variants_of(stem: str, related) -> frozenset[str]:
    """The related stems that are ``stem`` with an agent ending (``_AGENT_ENDINGS``): the same
    word as the one who does it ("pager", "owner", "leader"), which Snowball does not fold."""
    if len(stem) < 3:
        return frozenset()
    return frozenset(r for r in related if r.startswith(stem) and r[len(stem):] in _AGENT_ENDINGS)


def term_weight(rank: int) -> float:
    """A term's weight from its word's frequency rank (0 = unknown, so rare): log-linear from
    ``WEIGHT_FLOOR`` at ``COMMON_RANK`` to 1 at ``RARE_RANK``."""
    if rank <= 0 or rank >= RARE_RANK:
        return 1.0
    if rank <= COMMON_RANK:
        return WEIGHT_FLOOR
    x = (math.log(rank) - math.log(COMMON_RANK)) / (math.log(RARE_RANK) - math.log(COMMON_RANK))
    return round(WEIGHT_FLOOR + (1.0 - WEIGHT_FLOOR) * x, 4)
