"""One label-selected watch on step Jobs, kept as a cache, that wakes the run a Job belongs to.

kopf would list and watch every Job in scope and filter on the client; this
asks the API server for ours only (``labelSelector``). Jobs are kept as plain
JSON (no client models), only their metadata and status. A Job event wakes its
run only when it says something the run acts on: a new or deleted Job, a Job
that finished, or a pod retry (a Job's ``status.failed``). A Job's other updates
(pods created, ready, finalizers) cost no reconcile.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from typing import Callable, Optional

from kubernetes.client.rest import ApiException

from .client import KubeClient
from .jobs import JOB_SELECTOR, L_RUN, L_STEP, job_state
from .queue_metrics import QueueClock

log = logging.getLogger("searchrun.jobwatch")


class JobCache:
    def __init__(self, kube: KubeClient, namespaces: list[str], on_change: Callable[[str], None]):
        self.kube = kube
        self.namespaces = namespaces or [None]  # None: all namespaces
        self.on_change = on_change
        self._jobs: dict[str, dict[str, dict]] = {}  # run uid -> job name -> job
        # run uid -> names of finished Jobs whose steps the run applied: not held (a 10,000-step
        # run held 10,000 finished Jobs, ~15 MiB, until it was deleted) and not taken back from the
        # watch or a relist; a name is forgotten when its Job is deleted or the run is forgotten
        self._applied: dict[str, set[str]] = {}
        self._lock = threading.Lock()
        self.synced = threading.Event()
        self._synced_ns: set = set()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.queue = QueueClock()  # the cluster's share of each Job (searchrun_step_queue_seconds)

    def start(self) -> None:
        for ns in self.namespaces:
            t = threading.Thread(target=self._run, args=(ns,), name=f"jobwatch-{ns or 'all'}", daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self) -> None:
        self._stop.set()

    def jobs(self, run_uid: str) -> list[dict]:
        with self._lock:
            return list(self._jobs.get(run_uid, {}).values())

    def job(self, run_uid: str, name: str) -> Optional[dict]:
        with self._lock:
            return self._jobs.get(run_uid, {}).get(name)

    def forget(self, run_uid: str) -> None:
        with self._lock:
            self._jobs.pop(run_uid, None)
            self._applied.pop(run_uid, None)
        self.queue.forget(run_uid)

    def applied(self, run_uid: str, names) -> None:
        """The run applied these finished Jobs' steps (each Job one step): it reads them no more."""
        with self._lock:
            jobs = self._jobs.get(run_uid, {})
            for name in names:
                job = jobs.get(name)
                if job is not None and job_state(job) != "running":
                    del jobs[name]
                    self._applied.setdefault(run_uid, set()).add(name)

    def put(self, job: dict) -> None:
        """Record a Job we just created, so that the next pass sees it without waiting for the watch."""
        self.queue.created(job)
        self._apply("ADDED", job)

    def _apply(self, kind: str, job: dict) -> Optional[str]:
        """Record an event; the run's uid when the run should look (see the module docstring)."""
        meta = job.get("metadata") or {}
        uid = (meta.get("labels") or {}).get(L_RUN)
        if not uid:
            return None
        with self._lock:
            jobs = self._jobs.setdefault(uid, {})
            if kind == "DELETED":
                jobs.pop(meta.get("name"), None)
                self._applied.get(uid, set()).discard(meta.get("name"))
                self.queue.gone(job)
                return uid
            if meta.get("name") in self._applied.get(uid, ()):
                return None  # finished and applied (``applied``)
            old = jobs.get(meta.get("name"))
            if old is not None and int(old["metadata"].get("resourceVersion") or 0) > int(meta.get("resourceVersion") or 0):
                return None  # an older version than we hold
            job = jobs[meta.get("name")] = _slim(job)
        self.queue.seen(job)
        if old is not None and _news(old) == _news(job):
            return None
        return uid

    def _run(self, ns) -> None:
        backoff = 0.5
        while not self._stop.is_set():
            try:
                items, rv = self.kube.list_jobs(ns, JOB_SELECTOR)
                touched = set()
                with self._lock:
                    known = {(u, n) for u, js in self._jobs.items() for n, j in js.items()
                             if ns is None or j["metadata"].get("namespace") == ns}
                seen = set()
                for job in items:
                    uid = (job["metadata"].get("labels") or {}).get(L_RUN)
                    if uid:
                        seen.add((uid, job["metadata"]["name"]))
                    if self._apply("ADDED", job):
                        touched.add(uid)
                with self._lock:
                    for uid, name in known - seen:
                        self._jobs.get(uid, {}).pop(name, None)
                        touched.add(uid)
                    for uid, names in self._applied.items():  # deleted while the watch was down
                        names.intersection_update(n for u, n in seen if u == uid)
                self._synced_ns.add(ns)
                if len(self._synced_ns) == len(self.namespaces):
                    self.synced.set()
                for uid in touched:
                    self.on_change(uid)
                backoff = 0.5
                for ev in self.kube.watch_jobs(ns, JOB_SELECTOR, rv):
                    if self._stop.is_set():
                        return  # leaving the loop closes the watch
                    if ev["type"] in ("BOOKMARK", "ERROR"):
                        if ev["type"] == "ERROR":
                            break  # e.g. 410 Gone: relist
                        continue
                    job = ev["object"]  # plain JSON (deserialize=False): no client models
                    uid = self._apply(ev["type"], job)
                    if uid:
                        self.on_change(uid)
            except ApiException as e:
                log.warning("job watch (%s): %s %s; relisting", ns or "all namespaces", e.status, e.reason)
            except Exception as e:  # connection drops, API server restarts
                if isinstance(e, KeyError) and e.args == ("raw_object",):
                    # how the client (deserialize=False) meets an ERROR event, e.g. 410 Gone: relist
                    log.info("job watch (%s) expired; relisting", ns or "all namespaces")
                    continue
                log.warning("job watch (%s) broke: %s; relisting in %.1fs", ns or "all namespaces", e, backoff)
                time.sleep(backoff)
                backoff = min(backoff * 2, 10)


def drop_applied(cache, run_uid: str, observations: dict, jobs: dict, running) -> None:
    """After a pass: the per-step Jobs (by step id, as observed) whose steps it finished are not
    held any more (``JobCache.applied``); a group Job (PerFanout) stays until the run goes."""
    applied = getattr(cache, "applied", None)
    running = set(running)
    names = [job["metadata"]["name"] for sid, job in jobs.items()
             if sid in observations and observations[sid].state != "running" and sid not in running
             and (job["metadata"].get("labels") or {}).get(L_STEP) == sid]
    if applied is not None and names:
        applied(run_uid, names)


def _news(job: dict) -> tuple:
    """What a run acts on in a Job: whether it finished, its pod failures (retries), and for an
    Indexed Job (PerFanout) which of its steps finished."""
    status = job.get("status") or {}
    return job_state(job), status.get("failed"), status.get("completedIndexes"), status.get("failedIndexes")


_KEEP_META = ("name", "namespace", "uid", "resourceVersion", "creationTimestamp", "labels", "annotations")
# what jobs.py, fanout.py, queue_metrics.py and run_metrics.py read of a Job's status
_KEEP_STATUS = ("active", "ready", "succeeded", "failed", "startTime", "completionTime", "completedIndexes", "failedIndexes")
_KEEP_CONDITION = ("type", "status", "reason", "message", "lastTransitionTime")


def _slim(job: dict) -> dict:
    """What the operator reads of a Job (metadata, status): a watched Job carries its pod
    template and managed fields too, several KiB a step that a large or busy operator would hold.
    Of its conditions only those in force (status True: all that is read), their repeated strings
    shared (each decoded Job has its own copies; 10,000 finished Jobs are held until the run goes)."""
    meta = job.get("metadata") or {}
    status = job.get("status") or {}
    slim = {k: status[k] for k in _KEEP_STATUS if k in status}
    conditions = [{k: sys.intern(c[k]) if isinstance(c[k], str) else c[k] for k in _KEEP_CONDITION if k in c}
                  for c in status.get("conditions") or () if c.get("status") == "True"]
    if conditions:
        slim["conditions"] = conditions
    return {"metadata": {k: meta[k] for k in _KEEP_META if k in meta}, "status": slim}
