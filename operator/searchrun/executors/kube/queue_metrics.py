"""The cluster's share of a step, beside the operator's: how long a step Job waits before its pod
starts and runs (``searchrun_step_queue_seconds``), and how long the operator takes from a
finished Job to the Jobs that follow it (``searchrun_step_handoff_seconds``).

Everything is read from the Job watch the operator already keeps (``jobwatch``): no pod watch,
no extra request. A Job's own timestamps (``creationTimestamp``, ``status.startTime``) have a
resolution of one second and come from other clocks; the operator instead notes, on its own
monotonic clock, when it created a Job and when the watch first showed the Job with a pod
(``status.active``), with a pod ready (``status.ready``, i.e. running: step pods have no
readiness probe) and finished. Only Jobs this process created are timed (a restarted operator
does not know when the Jobs it found were created). A pod that finishes within the Job
controller's status batching may never be seen ready: its ``pod_running`` is not observed, its
``pod_created`` and ``complete`` are.
"""

from __future__ import annotations

import threading
import time
from typing import Callable, Iterable, Mapping, Optional

from ... import metrics
from .fanout import index_states
from .jobs import L_RUN, job_state

QUEUE_PHASES = ("pod_created", "pod_running", "complete")


def index_key(job_name: str, index: int) -> str:
    """How ``QueueClock`` names one step of a group Job (PerFanout) among whole Jobs."""
    return f"{job_name}#{index}"


def _key(job: Mapping) -> Optional[tuple[str, str]]:
    meta = job.get("metadata") or {}
    uid = (meta.get("labels") or {}).get(L_RUN)
    return (uid, meta.get("name")) if uid else None


class QueueClock:
    """Per Job this process created and is in flight: when it was created and which phases were
    observed; per such Job finished and not yet applied by its run: when the watch saw it finish.
    A group Job's steps (PerFanout) finish one index at a time: each index is noted when the
    watch first shows it completed or failed (``index_key``). Bounded by the Jobs in flight."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, observe=None):
        self.clock = clock
        self.observe = observe or (lambda phase, seconds: metrics.STEP_QUEUE.labels(phase=phase).observe(seconds))
        self._created: dict[tuple[str, str], tuple[float, set]] = {}
        self._finished: dict[tuple[str, str], float] = {}
        self._indexes: dict[tuple[str, str], set[int]] = {}  # a group Job's indexes seen ended
        self._lock = threading.Lock()

    def created(self, job: Mapping) -> None:
        """The operator created this Job (the API server's answer)."""
        key = _key(job)
        if key:
            with self._lock:
                self._created.setdefault(key, (self.clock(), set()))

    def seen(self, job: Mapping) -> None:
        """A version of a Job, from the watch (or a create's answer)."""
        key = _key(job)
        if not key:
            return
        status = job.get("status") or {}
        done = job_state(job) != "running"
        now = self.clock()
        due = []
        with self._lock:
            entry = self._created.get(key)
            if entry is None:
                return
            at, phases = entry
            if "pod_created" not in phases and (int(status.get("active") or 0) or int(status.get("ready") or 0)
                                                or int(status.get("succeeded") or 0) or int(status.get("failed") or 0)):
                phases.add("pod_created")
                due.append("pod_created")
            if "pod_running" not in phases and int(status.get("ready") or 0):
                phases.add("pod_running")
                due.append("pod_running")
            group = index_states(job)  # a group Job's indexes as its run reads them; [] for a Job of one step
            if group:
                ended = {i for i, state in enumerate(group) if state != "running"}
                noted = self._indexes.setdefault(key, set())
                for i in ended - noted:
                    self._finished[(key[0], index_key(key[1], i))] = now
                noted |= ended
            if done:
                del self._created[key]
                self._indexes.pop(key, None)
                if not group:
                    self._finished[key] = now
                due.append("complete")
        for phase in due:
            self.observe(phase, max(0.0, now - at))

    def gone(self, job: Mapping) -> None:
        key = _key(job)
        with self._lock:
            self._created.pop(key, None)
            self._finished.pop(key, None)
            for i in self._indexes.pop(key, ()) if key else ():
                self._finished.pop((key[0], index_key(key[1], i)), None)

    def forget(self, run_uid: str) -> None:
        with self._lock:
            for d in (self._created, self._finished, self._indexes):
                for key in [k for k in d if k[0] == run_uid]:
                    del d[key]

    def finished_at(self, run_uid: str, names: Iterable[str]) -> Optional[float]:
        """The earliest time the watch saw one of these Jobs finish; they are forgotten."""
        first = None
        with self._lock:
            for name in names:
                t = self._finished.pop((run_uid, name), None)
                if t is not None and (first is None or t < first):
                    first = t
        return first


def record_handoff(cache, run_uid: str, observations: Mapping, jobs: Mapping[str, Mapping], started: int,
                   indexes: Mapping[str, str] = {}) -> None:
    """After a pass: the operator's share of each Job it created, from the earliest finished Job
    (or group Job index) the pass applied, when the watch saw it finish, to now (the creates
    done). ``observations`` and ``jobs`` by step id, as ``RunReconciler.observations`` returns
    them; ``indexes``: step id -> ``index_key`` for the steps of group Jobs."""
    clock: Optional[QueueClock] = getattr(cache, "queue", None)
    if clock is None:
        return
    finished = [jobs[sid]["metadata"]["name"] if sid in jobs else indexes[sid] for sid, o in observations.items()
                if o.state != "running" and (sid in jobs or sid in indexes)]
    if not finished:
        return
    first = clock.finished_at(run_uid, finished)
    if first is None or not started:
        return
    seconds = max(0.0, clock.clock() - first)
    for _ in range(started):
        metrics.STEP_HANDOFF.observe(seconds)
