"""What an agent is: the step code's questions to it, and what it answers.

The framework decides how many steps run, where the budget goes and which
documents were already visited; an agent only answers "is this relevant?" and
"where next?". Every answer reports the tokens it used (real usage, or an
estimate for the offline agent); ``allowance`` is the step's token budget and
an agent never plans to use more than it (with ``allowance`` 0 it does no work).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Protocol, runtime_checkable

SNIPPET_CHARS = 300


@dataclass(frozen=True)
class Usage:
    tokens: int = 0
    cost_usd: float = 0.0


@dataclass(frozen=True)
class Hit:
    doc_id: str
    score: float
    snippet: str  # at most SNIPPET_CHARS characters from the document


@dataclass(frozen=True)
class Hop:
    """One document on the path from the seed, seed first."""

    doc_id: str
    title: str
    relation: Optional[str] = None  # the relationship kind followed INTO this hop (None for the seed)


@dataclass(frozen=True)
class PathContext:
    """What a traverse step knows of how it got here: only this travels down to a child."""

    hops: tuple[Hop, ...] = ()  # ancestors of the current document, seed first
    relation: Optional[str] = None  # relationship kind that led to the current document
    note: str = ""  # the parent's note: what is established, what is still open


@dataclass(frozen=True)
class Proposal:
    doc_id: str
    relation: str  # relationship kind from the current doc to this child
    reason: str  # short, why this child may cover what is still open


DEFAULT_MAX_NOTE_CHARS = 400


@dataclass(frozen=True)
class TraverseDecision:
    found: bool
    score: float
    snippet: str
    next: list[str] = field(default_factory=list)  # ranked children, at most 2*k; empty = dead end
    reason: str = ""
    usage: Usage = Usage()
    note: str = ""  # for this step's children: at most max_note_chars characters
    proposals: tuple[Proposal, ...] = ()  # ranked; ``next`` is their doc ids
    # a seed judged as if reached by a chain of links into it: the chain, first document first,
    # each hop's relation the link out of it along the chain (the last one's: into this
    # document); the step's evidence path starts there
    implied: tuple[Hop, ...] = ()
    # why the model's replies were refused (bad JSON, off the schema) after the agent's own
    # retries: the traversal is a dead end, and this says so in the step's decision
    rejected: str = ""
    # how many of the question's relations the links of the evidence path name (see
    # :mod:`.link_support`); the fan-in prefers, among answers of about the same score, the
    # better supported. 0 = not known (an agent that does not say)
    support: int = 0
    # found past another answer on its path, with no open term given strongly itself: the fan-in
    # keeps it over that answer only if its evidence path names more of the question's relations
    past_answer: bool = False


class AgentError(RuntimeError):
    """An unrecoverable agent failure (bad endpoint, out of retries). Never carries secrets."""


class AgentReplyError(AgentError):
    """The endpoint answered, but not usably (no JSON object in the answer), after the agent's own
    retries: running the step again would ask the same question of the same model."""


@runtime_checkable
class Agent(Protocol):
    def detect_intent(self, query: str, allowance: int) -> tuple[str, str, Usage]:
        """("simple" | "deep", reason, usage)."""

    def plan_seeds(self, query: str, k: int, allowance: int) -> tuple[list[str], Usage]:
        """Ranked document ids to start traversals from, at most k."""

    def simple_search(self, query: str, k: int, allowance: int) -> tuple[list[Hit], Usage]:
        """Hits that answer the query, best first, at most k (may be empty)."""

    def traverse(
        self,
        query: str,
        doc_id: str,
        k: int,
        allowance: int,
        path: Optional[PathContext] = None,
        max_note_chars: int = DEFAULT_MAX_NOTE_CHARS,
    ) -> TraverseDecision:
        """Does ``doc_id``, together with ``path`` (how the run got here), answer the query; which
        of its children (ranked, at most 2*k) are worth exploring next; and the note they get.
        The note's characters count into the step's tokens."""


def usage(tokens: int, cost_per_1k: float) -> Usage:
    tokens = max(0, int(tokens))
    return Usage(tokens=tokens, cost_usd=round(tokens / 1000.0 * cost_per_1k, 8))
