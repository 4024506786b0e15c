"""What a corpus's document types are, from its links: people and groups (the targets of
``managed_by``-like links), places (the targets of ``located_in``-like links)."""

from __future__ import annotations

import weakref
from collections import Counter

from .text import kind_words, term, terms_of

_WHO_KIND_END = frozenset(["by"])  # owned_by, run_by, headed_by: the target is who does it
_NOT_AGENTS = frozenset(  # ... but not governed_by, covered_by: those point at a rule or a thing
    terms_of(
        """governed covered replaced superseded caused used triggered blocked limited defined regulated
        described documented referenced cited affected impacted required protected backed stored"""
    )
)


def agent_types(links) -> frozenset[str]:
    """Stems of the document types that this corpus treats as people or groups: a type more
    often the target of an agent link (``managed_by``, ``headed_by``) than the source of one
    (things have owners and maintainers; the owners seldom do). ``links`` yields (source type,
    kind, target type)."""
    into: Counter = Counter()
    out: Counter = Counter()
    for src_type, kind, dst_type in links:
        kw = kind_words(kind or "")
        if len(kw) >= 2 and kw[-1] in _WHO_KIND_END and term(kw[-2]) not in _NOT_AGENTS:
            into[dst_type] += 1
            out[src_type] += 1
    stems: set[str] = set()
    for t, n in into.items():
        if t and t != "document" and n > out.get(t, 0):
            stems.update(x for x in map(term, kind_words(t)) if x)
    return frozenset(stems)


_PLACE_KIND_WORDS = frozenset("located location site based housed hosted held sited".split())


def _place_link(kw: tuple[str, ...]) -> bool:
    """``located_in``, ``based_at``, ``held_at``: the target is where the source is."""
    return bool(kw) and (kw[-1] == "at" or bool(set(kw) & _PLACE_KIND_WORDS))


def place_types(links) -> frozenset[str]:
    """Stems of the document types that this corpus treats as places: a type more often the
    target of a place link (``located_in``, ``based_at``) than the source of one. ``links``
    yields (source type, kind, target type), as for :func:`agent_types`."""
    into: Counter = Counter()
    out: Counter = Counter()
    for src_type, kind, dst_type in links:
        if _place_link(kind_words(kind or "")):
            into[dst_type] += 1
            out[src_type] += 1
    stems: set[str] = set()
    for t, n in into.items():
        if t and t != "document" and n > out.get(t, 0):
            stems.update(x for x in map(term, kind_words(t)) if x)
    return frozenset(stems)


_KINDS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def kinds_for(corpus) -> tuple[frozenset, frozenset, frozenset]:
    """(agent types, place types, every type's stems) of a corpus, computed in one pass over its
    links and cached per corpus object (a warm step worker computes them once for its children)."""
    got = _KINDS.get(corpus)
    if got is None:
        docs = corpus.documents
        links = [(d.type, kind, docs[dst].type) for d in docs.values() for kind, dst in corpus.links(d.id)]
        types = frozenset(t for d in docs.values() if d.type != "document" for t in map(term, kind_words(d.type)) if t)
        got = (agent_types(links), place_types(links), types)
        _KINDS[corpus] = got
    return got
