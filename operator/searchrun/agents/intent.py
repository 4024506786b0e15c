"""Simple or deep, from the shape of a question alone (deterministic, no corpus).

Deep means the answer may sit a link or two away from the best lexical match, so a traversal
is worth its fan-out:

* a comparison or an explanation (*compare*, *versus*, *difference*, *between*, *why*);
* a relation between things (*owns*, *depends on*, *on call*, *responsible*, *escalate*, ...);
* a relative clause that describes one thing through another ("the service **that** sends ...");
* several questions in one ("..., and what limits it?");
* many content terms (more than ``MAX_SIMPLE_TERMS``);
* a "who", "which", "where" or "what X" question about something other than the thing it names
  ("Who rents us the warehouse?", "Which company does Postbox rely on ...?", "Who is Edith
  Crane's agent?"): the one asked for is found through what it is related to;
* "how do I / we ..." for a named thing: the procedure is usually its own document, linked from
  the thing.

"What is X?", "Who is <name>?", "Where is X?", "Define X", "How does X work?" and short keyword
lookups are simple: "how" or "and" alone decide nothing.
"""

from __future__ import annotations

import re

from .question import kind_asked
from .text import STOPWORDS, surface_forms, term, words

MAX_SIMPLE_TERMS = 4

COMPARISON = frozenset(
    """
    compare compares compared comparing comparison versus vs difference differences differ differs
    between tradeoff tradeoffs trade why impact impacts affect affects influence influences
    interplay
    """.split()
)
RELATION = frozenset(
    """
    own owns owned owner owners owning depend depends dependent dependency dependencies
    oncall responsible responsibility escalate escalates escalation maintain maintains maintained
    maintainer run runs operate operates operated oversee oversees overseen approve approves
    approved approver belong belongs report reports manage manages managed manager lead leads
    led upstream downstream consume consumes consumer
    """.split()
)
_WH = frozenset("what which who whom whose where when why how".split())
_RELATIVE = frozenset("that which who whom whose where".split())
_JOINERS = frozenset(["and", "but", "or", ",", "then", "also"])
_COPULA = frozenset("is are was were".split())
_ASKS_FOR = frozenset("who whom whose which where".split())
_RELATING = frozenset("of for in at behind on to with from by".split())  # "who is the head of ..."
_PEOPLE = frozenset("i we you".split())
_HOW_AUX = frozenset("do should can could must".split())
_POSSESSIVE_RE = re.compile(r"\w(?:'s|s')\s+\w", re.I)


def classify(query: str) -> tuple[str, str]:
    """("simple" | "deep", reason naming the cue)."""
    ws = words(query)
    toks = _tokens_with_commas(query)
    surf = surface_forms(query)
    shown = ", ".join(list(surf.values())[:8]) + (", ..." if len(surf) > 8 else "") if surf else "none"
    cues: list[str] = []
    comp = [w for w in dict.fromkeys(ws) if w in COMPARISON]
    if comp:
        cues.append("asks " + "/".join(comp) + " (a comparison or an explanation)")
    rel = [w for w in dict.fromkeys(ws) if w in RELATION]
    if any(a == "on" and b == "call" for a, b in zip(ws, ws[1:])):
        rel.append("on call")
    if rel:
        cues.append("asks about a relation (" + "/".join(rel) + ")")
    for i, w in enumerate(ws):
        # a relative pronoun after a content word: "the service that sends ..."
        if i >= 2 and w in _RELATIVE and term(ws[i - 1]) is not None and ws[i - 1] not in STOPWORDS:
            cues.append(f"describes {ws[i - 1]} through a relative clause ({w} ...)")
            break
    for i, w in enumerate(toks):
        if i >= 2 and w in _WH and toks[i - 1] in _JOINERS:
            cues.append(f"asks more than one question ({toks[i - 1]} {w} ...)")
            break
    asked = _asks_through_relation(query, ws)
    if asked:
        cues.append(asked)
    n = len(surf)
    if n > MAX_SIMPLE_TERMS:
        cues.append(f"spans {n} content terms")
    if cues:
        return "deep", f"deep: the query {'; '.join(cues)}: {shown}"
    plural = "s" if n != 1 else ""
    return "simple", f"simple: a lookup with {n} content term{plural} ({shown})"


def _asks_through_relation(query: str, ws: list[str]) -> str:
    """The cue, if the question asks for one thing through its relation to another: a wh-word
    (and the kind asked for: "which team") followed by anything but "is <the thing>", or a
    possessive ("Edith Crane's agent"); or "how do I ..." about a named thing ("" if neither)."""
    if not ws:
        return ""
    i = next((k for k, w in enumerate(ws) if w in _ASKS_FOR or w in ("what", "how")), None)
    if i is None or (i > 0 and ws[i - 1] not in STOPWORDS and i > len(ws) // 2):
        return ""  # no question word, or one late in a keyword string
    wh = ws[i]
    rest = ws[i + 1:]
    if wh == "how":
        if len(rest) >= 3 and rest[0] in _HOW_AUX and rest[1] in _PEOPLE:
            return f"asks how to act on something (how {rest[0]} {rest[1]} ...)"
        return ""
    asked = kind_asked(ws[i:])  # "which team ...", "what company does ..." (not "what happens if")
    if asked is not None:
        kind, rest = ws[i + asked[0]], ws[i + asked[0] + 1:]
    elif wh == "what":
        return ""  # "what is X", "what does X do", "what happens if ...": the shape decides nothing
    else:
        kind = ""
    possessive = _POSSESSIVE_RE.search(query)
    if possessive:
        return f"asks for {kind or wh} through a possessive ({possessive.group(0)} ...)"
    if not rest:
        return ""
    if rest[0] in _COPULA and wh != "which" and not kind and not set(rest[1:]) & _RELATING:
        return ""  # "who is Priya Raman?", "where is the depot?": a lookup of the thing named
    # (not "who is in charge of ...", "who is the boss of ...": a relation)
    if rest[0] in _COPULA and kind and len(rest) > 1 and rest[1] in ("the", "a", "an") and len(rest) <= 3:
        return ""  # "which team is the platform team?"
    return f"asks for {kind or wh} in relation to something else ({wh} {' '.join(ws[i + 1:i + 3])} ...)"


def _tokens_with_commas(query: str) -> list[str]:
    out: list[str] = []
    for part in query.lower().replace(";", ",").split(","):
        if out:
            out.append(",")
        out.extend(words(part))
    return out
