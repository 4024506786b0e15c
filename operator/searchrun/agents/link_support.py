"""How many of the question's relations the links of an evidence path name.

Two answers that cover the question about as well often differ in whether the graph itself
says the relation asked: "Where is the office that takes bookings ...?" reached through
``booked_via`` versus through ``run_by``; "Who maintains the library the renderer depends
on?" through ``depends_on`` then ``maintained_by`` versus ``maintained_by`` alone. The fan-in
(``steps/aggregate_results.py``) prefers, among answers of about the same score, the ones
whose path names more of the question's relations. A "who" question counts a link into the
answer that says who does something (``managed_by``, not ``part_of``); a "where" question a
link that says where (``located_at``).
"""

from __future__ import annotations

from typing import Iterable, Optional

from .corpus_kinds import _NOT_AGENTS, _WHO_KIND_END, _place_link
from .question import WHERE, WHO, Question, _WHO_ROLES
from .text import kind_terms, kind_words, term


def _stems(relation: str) -> set[str]:
    return set(kind_terms(relation))


def is_agent_link(relation: Optional[str]) -> bool:
    """``owned_by``, ``managed_by``: the target is who does it (not ``governed_by``)."""
    kw = kind_words(relation or "")
    return len(kw) >= 2 and kw[-1] in _WHO_KIND_END and term(kw[-2]) not in _NOT_AGENTS


def link_support(q: Question, relations: Iterable[Optional[str]], into: Optional[str]) -> int:
    """The question's terms named (exactly or through a related word) by a link on the path
    (``relations``, every link followed, ``into`` the one into the answer), plus one when the
    link into the answer says who (a "who" question, or one asking for a role such as "which
    sponsor") or where (a "where" question)."""
    stems: set[str] = set()
    for r in list(relations) + [into]:
        stems |= _stems(r or "")
    n = sum(1 for t in q.terms if t.stem in stems or t.related & stems)
    if (q.focus == WHO or q.focus in _WHO_ROLES) and is_agent_link(into):
        n += 1
    elif q.focus == WHERE and _place_link(kind_words(into or "")):
        n += 1
    return n
