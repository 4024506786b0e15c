"""Simple or deep, from the shape of a question alone (deterministic, no corpus).

Deep means the answer may sit a link or two away from the best lexical match, so a traversal
is worth its fan-out:

* a comparison or an explanation (*compare*, *versus*, *difference*, *between*, *why*);
* a relation between things (*owns*, *depends on*, *on call*, *responsible*, *escalate*, ...);
* a relative clause that describes one thing through another ("the service **that** sends ...");
* several questions in one ("..., and what limits it?");
* many content terms (more than ``MAX_SIMPLE_TERMS``).

"What is X?", "Define X", "How does X work?" and short keyword lookups are simple: "how" or
"and" alone decide nothing.
"""

from __future__ import annotations

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
    n = len(surf)
    if n > MAX_SIMPLE_TERMS:
        cues.append(f"spans {n} content terms")
    if cues:
        return "deep", f"deep: the query {'; '.join(cues)}: {shown}"
    plural = "s" if n != 1 else ""
    return "simple", f"simple: a lookup with {n} content term{plural} ({shown})"


def _tokens_with_commas(query: str) -> list[str]:
    out: list[str] = []
    for part in query.lower().replace(";", ",").split(","):
        if out:
            out.append(",")
        out.extend(words(part))
    return out
