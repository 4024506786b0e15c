"""Drive the engine with synthetic step outcomes: no processes, no I/O.

Used by the property tests and the engine benchmark. A fake clock advances by
one second per round; each running step finishes in the round after it starts.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Callable, Optional

from searchrun.api import SearchRunSpec, SearchRunStatus
from searchrun.engine import Decision, JobNamer, Observation, StartStep, StepResult, reconcile, step_attempt_name

Outcome = Callable[[StartStep], Observation]


@dataclass
class SyntheticGraph:
    """A random document graph: each node has some children and may hold an answer."""

    n_docs: int = 1000
    branching: int = 4
    answer_rate: float = 0.2
    seed: int = 0
    children: dict[str, list[str]] = field(default_factory=dict)
    answers: set[str] = field(default_factory=set)
    scores: dict[str, float] = field(default_factory=dict)  # what a traversal scores each document (weak matches wait a wave)

    def __post_init__(self) -> None:
        rnd = random.Random(self.seed)
        ids = [f"d{i}" for i in range(self.n_docs)]
        for d in ids:
            self.children[d] = rnd.sample(ids, min(self.branching, len(ids)))
            if rnd.random() < self.answer_rate:
                self.answers.add(d)
        rs = random.Random(self.seed + 1)  # a stream of its own: the graph stays what it was
        self.scores = {d: round(rs.random(), 4) for d in ids}


def graph_outcome(graph: SyntheticGraph, fail_rate: float = 0.0, tokens: int = 300, seed: int = 0, intent: str = "deep") -> Outcome:
    rnd = random.Random(seed)

    def outcome(a: StartStep) -> Observation:
        if rnd.random() < fail_rate:
            return Observation(a.step_id, a.attempt, "failed", message="synthetic failure")
        allowance = a.input["tokenAllowance"]
        used = min(tokens, allowance)
        synthetic = {  # what each step type "finds" in the graph; other types just succeed
            "detect_intent": lambda: StepResult(tokens=min(20, allowance), intent=intent),
            "plan_search": lambda: StepResult(tokens=min(50, allowance), seeds=tuple(f"d{i}" for i in range(a.input["k"] * 2))),
            "traverse_node": lambda: StepResult(tokens=used, found=a.input["doc"] in graph.answers,
                                                score=graph.scores.get(a.input["doc"]),
                                                next=tuple(graph.children.get(a.input["doc"], []))[: 2 * a.input["k"]]),
            "simple_search": lambda: StepResult(tokens=min(100, allowance), found=True, answers=1),
            "aggregate_results": lambda: StepResult(found=True, answers=len(a.input["parents"])),
            "create_report": lambda: StepResult(output="file:///report.html"),
        }
        r = synthetic.get(a.step_type, StepResult)()
        return Observation(a.step_id, a.attempt, "succeeded", result=r)

    return outcome


@dataclass
class SimulatedRun:
    status: SearchRunStatus
    rounds: int
    started: list[StartStep]
    decisions: list[Decision]
    max_running: int


def simulate(spec: SearchRunSpec, outcome: Outcome, run_uid: str = "0123456789abcdef", max_rounds: int = 100000,
             keep_decisions: bool = False, start: Optional[datetime] = None, seconds_per_round: float = 1.0,
             job_namer: JobNamer = step_attempt_name, reload: bool = False) -> SimulatedRun:
    """``reload``: the status is read back from its JSON before every pass, as by an executor
    that restarted (the engine's index is rebuilt from it)."""
    now = start or datetime(2026, 1, 1, tzinfo=timezone.utc)
    status: Optional[SearchRunStatus] = None
    running: dict[str, StartStep] = {}
    started: list[StartStep] = []
    decisions: list[Decision] = []
    observations: dict[str, Observation] = {}
    max_running = 0
    for rounds in range(1, max_rounds + 1):
        if reload and status is not None:
            status = SearchRunStatus.model_validate(status.model_dump(mode="json", exclude_none=True))
        d = reconcile(spec, status, observations, now, run_uid, job_namer=job_namer)
        status = d.status
        if keep_decisions:
            decisions.append(d)
        for a in d.start:
            running[a.step_id] = a
            started.append(a)
        max_running = max(max_running, len(running))
        if d.done:
            return SimulatedRun(status, rounds, started, decisions, max_running)
        observations = {}
        for sid, a in list(running.items()):
            observations[sid] = outcome(a)
            del running[sid]
        now += timedelta(seconds=seconds_per_round)
        if not observations and d.wake_at and d.wake_at > now:
            now = d.wake_at
    raise RuntimeError(f"run did not finish in {max_rounds} rounds")
