"""One decision: the run's spec, lineage and observations in; the updated lineage and the
steps to start out."""

from __future__ import annotations

from datetime import datetime
from typing import Mapping, Optional

from ..api import LineageSummary, Phase, SearchRunSpec, SearchRunStatus
from . import retries
from .planner import RUN_DONE, Planner
from .types import Decision, JobNamer, Observation, step_attempt_name


def reconcile(
    spec: SearchRunSpec,
    status: Optional[SearchRunStatus],
    observations: Mapping[str, Observation],
    now: datetime,
    run_uid: str,
    complete: bool = False,
    job_namer: JobNamer = step_attempt_name,
) -> Decision:
    """Decide the run's next steps.

    ``observations`` maps step ids to what the executor saw of them. With
    ``complete=True`` they are everything that exists (the kube executor lists the
    run's Jobs), so a Running step with no observation is started again; starting
    is idempotent by the step's deterministic Job name (``job_namer(run_uid, step_id)``).
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    status = status if status is not None else SearchRunStatus()
    p = Planner(spec, status, now, run_uid, job_namer)
    p.idx.dirty = set()
    if status.phase in RUN_DONE:
        return Decision(status=status)
    if status.phase == Phase.Pending.value:
        p.begin()
    for obs in observations.values():
        p.apply(obs)
    retries.release_backoffs(p)
    # Expanding can add steps that finish nothing yet; fan-in may follow; loop to a fixpoint.
    while True:
        before = (len(status.steps), p.idx.open_search)
        p.expand()
        p.stop_search_if_spent()
        p.fan_in()
        p.expand()
        if (len(status.steps), p.idx.open_search) == before:
            break
    if status.phase == Phase.Running.value:
        p.launch()
        if complete:
            p.restart_missing(observations)
        if not (p.idx.running or p.idx.queue or p.idx.backoff or p.more) and status.phase == Phase.Running.value:
            # Nothing runs and nothing can: a dead run must not hang.
            p.finish(Phase.Failed, "no step can make progress (internal error)")
    p.budget.account()
    changed, p.idx.dirty = frozenset(p.idx.dirty), set()
    return Decision(status=status, start=p.start, events=p.events, wake_at=p.wake_at(),
                    changed=changed, running=tuple(sorted(p.idx.running)))


def lineage_summary(status: SearchRunStatus) -> LineageSummary:
    by_type: dict[str, int] = {}
    by_phase: dict[str, int] = {}
    for s in status.steps:
        by_type[s.type] = by_type.get(s.type, 0) + 1
        by_phase[s.phase] = by_phase.get(s.phase, 0) + 1
    return LineageSummary(steps=len(status.steps), byType=by_type, byPhase=by_phase)
