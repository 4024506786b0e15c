"""Process-wide run metrics: the gauges over all runs (runs by phase, Jobs in flight)."""

from __future__ import annotations

import threading
from datetime import datetime
from typing import Optional

from ... import metrics

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


def _duration(job: dict) -> Optional[float]:
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
