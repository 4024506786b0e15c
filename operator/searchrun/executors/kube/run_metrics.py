"""The operator's run metrics: what one pass of a run adds to the counters, and the process-wide
gauges over all runs (runs by phase, Jobs in flight)."""

from __future__ import annotations

import threading
from datetime import datetime
from typing import Optional

from ... import metrics
from ...api import StepStatus
from ...engine import Decision

_RUN_PHASES: dict[str, str] = {}
_RUN_ACTIVE: dict[str, int] = {}
_gauge_lock = threading.Lock()


def _update_gauges(uid: str, phase: Optional[str], active: int) -> None:
    with _gauge_lock:
        if phase is None:
            _RUN_PHASES.pop(uid, None)
            _RUN_ACTIVE.pop(uid, None)
        else:
            _RUN_PHASES[uid] = phase
            _RUN_ACTIVE[uid] = active
        counts = {p: 0 for p in ("Pending", "Running", "Succeeded", "Failed")}
        for p in _RUN_PHASES.values():
            counts[p] = counts.get(p, 0) + 1
        for p, n in counts.items():
            metrics.RUNS.labels(phase=p).set(n)
        metrics.ACTIVE_JOBS.set(sum(_RUN_ACTIVE.values()))


def forget_run(uid: str) -> None:
    _update_gauges(uid, None, 0)


def job_duration(job: dict) -> Optional[float]:
    st = job.get("status") or {}
    start, end = st.get("startTime"), st.get("completionTime")
    if not end:  # Kubernetes >= 1.31 sets SuccessCriteriaMet / FailureTarget before completionTime
        for c in st.get("conditions") or []:
            if c.get("status") == "True" and c.get("type") in ("SuccessCriteriaMet", "Complete", "FailureTarget", "Failed"):
                end = c.get("lastTransitionTime")
                break
    if not (start and end):
        return None
    f = lambda s: datetime.fromisoformat(str(s).replace("Z", "+00:00"))
    return max(0.0, (f(end) - f(start)).total_seconds())


def record_pass(namespace: str, run_uid: str, d: Decision, changed: list[StepStatus], before: dict[str, Optional[dict]],
                limits_before: set, jobs: dict) -> None:
    """``changed``: the steps the pass added or changed; ``before``: their previous JSON by step id
    (None: added); ``jobs``: the Jobs it observed, by step id."""
    st = d.status
    children: dict[str, int] = {}
    for s in changed:
        if before[s.id] is None and s.parents and s.type == "traverse_node" and len(s.parents) == 1:
            children[s.parents[0]] = children.get(s.parents[0], 0) + 1
    for s in changed:
        old = before[s.id]
        old = (old["phase"], old.get("expanded", False)) if old is not None else None
        if s.phase in ("Succeeded", "Failed") and (old is None or old[0] not in ("Succeeded", "Failed")):
            metrics.STEPS_FINISHED.labels(step_type=s.type, outcome=s.phase.lower()).inc()
            if s.tokens:
                metrics.TOKENS.labels(namespace=namespace).inc(s.tokens)
            if s.costUSD:
                metrics.COST.labels(namespace=namespace).inc(s.costUSD)
            job = jobs.get(s.id)
            dur = job_duration(job) if job else None
            if dur is not None:
                metrics.STEP_DURATION.labels(step_type=s.type).observe(dur)
        if s.expanded and (old is None or not old[1]) and s.type in ("traverse_node", "plan_search"):
            metrics.FANOUT.observe(children.get(s.id, 0))
    for name in set(st.limitsHit) - limits_before:
        metrics.BUDGET_EXHAUSTED.labels(budget=name).inc()
    if d.done:
        metrics.DEPTH.observe(st.maxDepthReached)
    _update_gauges(run_uid, st.phase, len(d.running) if not d.done else 0)
