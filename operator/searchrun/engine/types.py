"""What goes into the engine and what comes out: small, immutable data, no behaviour."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable, Literal, Mapping, Optional

from ..api import MAX_NOTE_CHARS, MAX_REASON_CHARS, MAX_RELATION_CHARS, SearchRunStatus, StepPhase
from ..clip import clip

# Well-known step ids of the DAG (traversal steps are t0, t0-1, ...: their path from the plan).
DETECT, SIMPLE, PLAN, AGGREGATE, REPORT = "detect", "simple", "plan", "aggregate", "report"

# Plain strings: enum attribute lookups dominate a 10,000-step plan otherwise.
P_BACKOFF = StepPhase.Backoff.value
P_FAILED = StepPhase.Failed.value
P_QUEUED = StepPhase.Queued.value
P_RUNNING = StepPhase.Running.value
P_SKIPPED = StepPhase.Skipped.value
P_SUCCEEDED = StepPhase.Succeeded.value

MAX_ID_CHARS = 256
MAX_DECISION_CHARS = 200

JobNamer = Callable[[str, str], str]


def step_attempt_name(run_uid: str, step_id: str) -> str:
    """The default name of a step's attempt (a local process): its step path. The kube
    executor passes its own namer (a Job name, by Kubernetes' naming rules)."""
    return step_id


def path_key(step_id: str) -> tuple:
    """Sort key of traversal step ids by their path (t2 before t10, t0-1 before t0-10)."""
    parts = step_id[1:].split("-") if step_id[:1] == "t" else []
    if parts and all(p.isdigit() for p in parts):
        return (0, tuple(int(p) for p in parts))
    return (1, step_id)


def iso(t: datetime) -> str:
    return t.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(s: Optional[str]) -> Optional[datetime]:
    if not s:
        return None
    return datetime.fromisoformat(s.replace("Z", "+00:00"))


@dataclass(frozen=True)
class StepResult:
    """What a finished step tells the engine (small: it fits a termination message)."""

    tokens: int = 0
    costUSD: float = 0.0
    output: Optional[str] = None
    decision: str = ""
    intent: Optional[str] = None          # detect_intent
    seeds: tuple[str, ...] = ()           # plan_search
    found: Optional[bool] = None          # traverse_node, simple_search, aggregate_results
    next: tuple[str, ...] = ()            # traverse_node: proposed children, best first
    answers: int = 0                      # simple_search, aggregate_results
    note: str = ""                        # traverse_node: the note for its children
    proposals: tuple[tuple[str, str, str], ...] = ()  # traverse_node: (doc, via, why), best first
    score: Optional[float] = None         # traverse_node: the agent's score of its document, in [0, 1]

    @classmethod
    def from_dict(cls, data: Mapping) -> "StepResult":
        """Parse a step's result; raises ValueError naming the bad field."""
        if not isinstance(data, Mapping):
            raise ValueError("step result must be a JSON object")

        def _int(name: str) -> int:
            v = data.get(name, 0)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ValueError(f"step result field {name!r} must be a non-negative integer")
            return v

        def _ids(name: str) -> tuple[str, ...]:
            v = data.get(name, [])
            if not isinstance(v, list) or not all(isinstance(x, str) and 0 < len(x) <= MAX_ID_CHARS for x in v):
                raise ValueError(f"step result field {name!r} must be a list of document ids, each 1 to {MAX_ID_CHARS} characters")
            return tuple(v)

        cost = data.get("costUSD", 0.0)
        if isinstance(cost, bool) or not isinstance(cost, (int, float)) or cost < 0 or not math.isfinite(cost):
            raise ValueError("step result field 'costUSD' must be a non-negative number")
        found = data.get("found")
        if found is not None and not isinstance(found, bool):
            raise ValueError("step result field 'found' must be true, false or null")
        intent = data.get("intent")
        if intent is not None and intent not in ("simple", "deep"):
            raise ValueError("step result field 'intent' must be 'simple' or 'deep'")
        output = data.get("output")
        if output is not None and not isinstance(output, str):
            raise ValueError("step result field 'output' must be a URI string")
        decision = data.get("decision", "")
        if not isinstance(decision, str):
            raise ValueError("step result field 'decision' must be a string")
        note = data.get("note", "")
        if not isinstance(note, str) or len(note) > MAX_NOTE_CHARS:
            raise ValueError(f"step result field 'note' must be a string of at most {MAX_NOTE_CHARS} characters")
        proposals = _proposals(data.get("proposals", []))
        score = data.get("score")
        if score is not None and (isinstance(score, bool) or not isinstance(score, (int, float))
                                  or not math.isfinite(score) or not 0.0 <= score <= 1.0):
            raise ValueError("step result field 'score' must be a number from 0 to 1, or null")
        nxt = _ids("next")
        if proposals and not nxt:
            nxt = tuple(p[0] for p in proposals)
        return cls(
            tokens=_int("tokens"),
            costUSD=float(cost),
            output=output,
            decision=clip(decision, MAX_DECISION_CHARS),
            intent=intent,
            seeds=_ids("seeds"),
            found=found,
            next=nxt,
            answers=_int("answers"),
            note=note,
            proposals=proposals,
            score=None if score is None else float(score),
        )

    def to_dict(self) -> dict:
        out = {"tokens": self.tokens, "costUSD": self.costUSD, "decision": self.decision}
        if self.output is not None:
            out["output"] = self.output
        if self.intent is not None:
            out["intent"] = self.intent
        if self.seeds:
            out["seeds"] = list(self.seeds)
        if self.found is not None:
            out["found"] = self.found
        if self.next:
            out["next"] = list(self.next)
        if self.answers:
            out["answers"] = self.answers
        if self.note:
            out["note"] = self.note
        if self.proposals:
            out["proposals"] = [{"doc": d, "via": v, "why": w} for d, v, w in self.proposals]
        if self.score is not None:
            out["score"] = self.score
        return out


def _proposals(v) -> tuple[tuple[str, str, str], ...]:
    bad = ValueError(f"step result field 'proposals' must be a list of {{doc, via, why}} objects (doc: a document id of at "
                     f"most {MAX_ID_CHARS} characters, via: at most {MAX_RELATION_CHARS}, why: at most {MAX_REASON_CHARS})")
    if not isinstance(v, list):
        raise bad
    out = []
    for p in v:
        if not isinstance(p, Mapping):
            raise bad
        doc, via, why = p.get("doc"), p.get("via", ""), p.get("why", "")
        if not (isinstance(doc, str) and 0 < len(doc) <= MAX_ID_CHARS and isinstance(via, str) and len(via) <= MAX_RELATION_CHARS
                and isinstance(why, str) and len(why) <= MAX_REASON_CHARS):
            raise bad
        out.append((doc, via, why))
    return tuple(out)


@dataclass(frozen=True)
class Reuse:
    """A result the executor did not compute now: a cache hit (``cache``: its tokens are not this
    run's) or a step that succeeded before a resume (``kept``)."""

    how: Literal["cache", "kept"]
    run: str
    step: str
    attempt: int = 1
    tokens_saved: int = 0
    job: Optional[str] = None  # kept: the Job (or process) that computed it, named in the lineage


@dataclass(frozen=True)
class Observation:
    """What the executor saw of one step's current attempt."""

    step_id: str
    attempt: int
    state: Literal["running", "succeeded", "failed"]
    result: Optional[StepResult] = None
    message: str = ""
    # The executor already retried this step itself (a Job's backoffLimit): a failure is final.
    final: bool = False
    attempts: Optional[int] = None  # attempts the executor made, when it retries itself
    reused: Optional[Reuse] = None  # the result is a cache hit or kept from before a resume


@dataclass(frozen=True)
class StartStep:
    """Make sure this step's attempt exists (idempotent: a second start is a no-op)."""

    step_id: str
    step_type: str
    attempt: int
    job: str
    input: dict
    timeout_seconds: int
    retries: int
    needs_lineage: bool = False


@dataclass(frozen=True)
class Event:
    reason: str
    message: str
    type: Literal["Normal", "Warning"] = "Normal"


@dataclass
class Decision:
    status: SearchRunStatus
    start: list[StartStep] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    wake_at: Optional[datetime] = None
    # Ids of the steps this call added or changed: an executor writes only these (status patches,
    # the offloaded lineage, metrics) and never looks inside the engine's index.
    changed: frozenset[str] = frozenset()
    # Ids of the steps in phase Running after this call (the attempts the executor must watch).
    running: tuple[str, ...] = ()

    @property
    def done(self) -> bool:
        return self.status.phase in ("Succeeded", "Failed")
