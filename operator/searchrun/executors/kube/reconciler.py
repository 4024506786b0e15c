"""Reconcile one SearchRun: its spec, its status and its Jobs in; status patch and Jobs out.

Order matters for crash safety: the status (lineage) is written *before* the
Jobs it names are created. After a crash, a step that is Running in status but
has no Job is created again; a Job that exists answers AlreadyExists. So no Job
is created twice and no decided step is lost.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from datetime import datetime, timezone
from typing import Optional

from kubernetes import client
from kubernetes.client.rest import ApiException

from ... import metrics
from ...api import GROUP, PLURAL, VERSION, SearchRunSpec, SearchRunStatus
from ...engine import Decision, Observation, lineage_summary, reconcile
from ...steps import LINEAGE_NAME
from .. import lineage_document, step_context
from .config import OperatorConfig
from .jobs import build_job, job_state, observe_job, pod_error

log = logging.getLogger("searchrun.reconciler")


class EventSink:
    """Where a run's Kubernetes Events go (kopf's poster in the operator)."""

    def post(self, run: "RunReconciler", type: str, reason: str, message: str) -> None:
        log.info("%s/%s %s %s: %s", run.namespace, run.name, type, reason, message)

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


_STORES: dict = {}
_stores_lock = threading.Lock()


def shared_store(uri: str):
    """One store (and one boto3 client, ~15 MiB) per URI for all runs, not one per run."""
    from ...artifacts import open_store

    with _stores_lock:
        if uri not in _STORES:
            _STORES[uri] = open_store(uri)
        return _STORES[uri]


def restore_status(raw_status: dict, read_uri) -> tuple[Optional[SearchRunStatus], bool]:
    """The run's status as the engine needs it: when the lineage was offloaded, status holds
    only the frontier and the store holds it all (it is written before every status patch)."""
    known = {k: v for k, v in (raw_status or {}).items() if k in SearchRunStatus.model_fields}
    if not known:
        return None, False
    status = SearchRunStatus.model_validate(known)
    if status.lineageURI and read_uri is not None:
        doc = json.loads(read_uri(status.lineageURI))
        return SearchRunStatus.model_validate(doc["status"]), True
    return status, False


class RunReconciler:
    def __init__(self, api_client: client.ApiClient, cache, config: OperatorConfig, namespace: str, name: str, uid: str,
                 events: EventSink, clock=lambda: datetime.now(timezone.utc)):
        self.api_client = api_client
        self.custom = client.CustomObjectsApi(api_client)
        self.batch = client.BatchV1Api(api_client)
        self.core = client.CoreV1Api(api_client)
        self.cache = cache
        self.config = config
        self.namespace, self.name, self.uid = namespace, name, uid
        self.events = events
        self.clock = clock
        self.spec: Optional[SearchRunSpec] = None
        self.status: Optional[SearchRunStatus] = None
        self.store = None
        self.store_uri: Optional[str] = None
        self.last_patch: Optional[dict] = None
        self.results: dict[str, dict] = {}       # step id -> result.json, read once
        self.create_errors: dict[str, str] = {}  # step id -> why the API refused its Job
        self.unreadable_since: dict[str, float] = {}  # step id -> when its result was first missed
        self.offloaded = False

    # -- loading

    def load(self) -> bool:
        """Read the SearchRun; False when it is gone."""
        try:
            obj = self.custom.get_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, self.name)
        except ApiException as e:
            if e.status == 404:
                return False
            raise
        if obj["metadata"]["uid"] != self.uid:
            return False
        raw_status = obj.get("status") or {}
        try:
            self.spec = SearchRunSpec.model_validate(obj.get("spec") or {})
        except Exception as e:
            self.spec = None
            self.status, _ = restore_status(raw_status, read_uri=None)
            self.status = self.status or SearchRunStatus()
            if self.status.phase not in ("Succeeded", "Failed"):
                self._fail_invalid(str(e))
            return True
        from ...artifacts import read_uri

        self.store_uri = self.spec.artifacts.uri or self.config.artifacts
        self.store = shared_store(self.store_uri)
        self.status, self.offloaded = restore_status(raw_status, read_uri)
        return True

    def _fail_invalid(self, why: str) -> None:
        now = self.clock().strftime("%Y-%m-%dT%H:%M:%SZ")
        body = {"status": {"phase": "Failed", "message": f"invalid spec: {why}"[:1000], "finishedAt": now,
                           "conditions": [{"type": "Failed", "status": "True", "reason": "InvalidSpec",
                                           "message": why[:1000], "lastTransitionTime": now}]}}
        self.custom.patch_namespaced_custom_object_status(GROUP, VERSION, self.namespace, PLURAL, self.name, body)
        self.events.post(self, "Warning", "InvalidSpec", why[:1000])

    # -- observing

    def _result(self, step_id: str, attempt: int) -> Optional[dict]:
        from ...artifacts import step_key

        if step_id in self.results:
            return self.results[step_id]
        try:
            data = self.store.get_json(step_key(self.uid, step_id, attempt, "result.json"))
        except Exception as e:
            log.warning("%s/%s: cannot read result of %s: %s", self.namespace, self.name, step_id, e)
            return None
        self.results[step_id] = data
        return data

    def _pod_error(self, job_name: str) -> str:
        try:
            pods = self.core.list_namespaced_pod(self.namespace, label_selector=f"job-name={job_name}", _preload_content=False)
            items = json.loads(pods.data).get("items", [])
        except ApiException:
            return ""
        items.sort(key=lambda p: p["metadata"].get("creationTimestamp") or "")
        return pod_error(items[-1]) if items else ""

    def observations(self) -> tuple[dict[str, Observation], dict[str, dict]]:
        running = {s.id: s for s in self.status.steps if s.phase == "Running"} if self.status else {}
        obs: dict[str, Observation] = {}
        jobs: dict[str, dict] = {}
        for job in self.cache.jobs(self.uid):
            sid = (job["metadata"].get("labels") or {}).get("searchrun.dev/step-id")
            if sid not in running:
                continue
            jobs[sid] = job
            state = job_state(job)
            result = self._result(sid, running[sid].attempts or 1) if state == "succeeded" else None
            if state == "succeeded" and result is None:
                # The Job is complete but its result is not readable (S3 down?): wait, within bounds.
                first = self.unreadable_since.setdefault(sid, time.monotonic())
                if time.monotonic() - first < self.config.resultWaitSeconds:
                    obs[sid] = Observation(sid, running[sid].attempts, "running")
                    continue
                obs[sid] = Observation(sid, running[sid].attempts, "failed", final=True,
                                       message=f"the step's result.json could not be read for {self.config.resultWaitSeconds:g}s")
                continue
            self.unreadable_since.pop(sid, None)
            msg = self._pod_error(job["metadata"]["name"]) if state == "failed" else ""
            obs[sid] = observe_job(job, result, msg)
        for sid, why in list(self.create_errors.items()):
            if sid in running:
                obs[sid] = Observation(sid, running[sid].attempts, "failed", message=why, final=True)
            del self.create_errors[sid]
        return obs, jobs

    # -- acting

    def _status_body(self, d: Decision) -> dict:
        st = d.status
        full = st.model_dump(mode="json", exclude={"steps"})
        steps = [s.model_dump(mode="json", exclude_none=True, exclude_defaults=False) for s in st.steps]
        size = len(json.dumps(steps, separators=(",", ":")))
        if size > self.config.lineageOffloadBytes or self.offloaded:
            uri = self.write_lineage(st)
            self.offloaded = True
            full["lineageURI"] = uri
            full["lineageSummary"] = lineage_summary(st).model_dump(mode="json")
            # Keep what is in flight, so `kubectl describe` still shows the frontier.
            full["steps"] = [x for x in steps if x.get("phase") in ("Running", "Queued", "Backoff")][:50]
        else:
            full["steps"] = steps
        full["observedGeneration"] = None
        return {"status": full}

    def write_lineage(self, st: SearchRunStatus) -> str:
        from ...artifacts import run_key

        doc = lineage_document(self.name, self.uid, self.namespace, self.spec, st)
        return self.store.put_json(run_key(self.uid, LINEAGE_NAME), doc, overwrite=True)

    def _patch_status(self, body: dict) -> None:
        if body == self.last_patch:
            return
        self.custom.patch_namespaced_custom_object_status(GROUP, VERSION, self.namespace, PLURAL, self.name, body)
        self.last_patch = body

    def _create_job(self, a) -> None:
        ctx = step_context(self.spec, self.uid, self.name, self.store_uri, a)
        body = build_job(a, self.name, self.namespace, self.uid, self.spec, ctx.to_json(), self.config)
        try:
            created = self.batch.create_namespaced_job(self.namespace, body, _preload_content=False)
            self.cache.put(json.loads(created.data))
            metrics.STEPS_CREATED.labels(step_type=a.step_type).inc()
        except ApiException as e:
            if e.status == 409:
                return  # AlreadyExists: created before a crash, or by the previous pass
            if 400 <= e.status < 500:
                why = f"the API refused Job {a.job}: {e.status} {e.reason}"
                try:
                    why += f": {json.loads(e.body).get('message', '')}"
                except (TypeError, ValueError):
                    pass
                self.create_errors[a.step_id] = why[:500]
                log.warning("%s/%s: %s", self.namespace, self.name, why)
                return
            raise

    def reconcile_once(self) -> Decision:
        t0 = time.perf_counter()
        before = {s.id: (s.phase, s.expanded) for s in self.status.steps} if self.status else {}
        was_done = self.status is not None and self.status.phase in ("Succeeded", "Failed")
        limits_before = set(self.status.limitsHit) if self.status else set()
        obs, jobs = self.observations()
        t1 = time.perf_counter()
        d = reconcile(self.spec, self.status, obs, self.clock(), self.uid, complete=self.cache.synced.is_set())
        metrics.DECISION_SECONDS.observe(time.perf_counter() - t1)
        self.status = d.status
        if any(a.needs_lineage for a in d.start):
            self.write_lineage(d.status)
        self._patch_status(self._status_body(d))      # lineage first ...
        for a in d.start:                              # ... then the Jobs it names
            self._create_job(a)
        if self.create_errors:
            self.cache.on_change(self.uid)
        for e in d.events:
            self.events.post(self, e.type, e.reason, e.message)
        if not was_done:
            self._record_metrics(d, before, limits_before, jobs)
        metrics.RECONCILE_SECONDS.observe(time.perf_counter() - t0)
        return d

    def _record_metrics(self, d: Decision, before: dict, limits_before: set, jobs: dict) -> None:
        st = d.status
        children: dict[str, int] = {}
        for s in st.steps:
            if s.id not in before and s.parents and s.type == "traverse_node" and len(s.parents) == 1:
                children[s.parents[0]] = children.get(s.parents[0], 0) + 1
        for s in st.steps:
            old = before.get(s.id)
            if s.phase in ("Succeeded", "Failed") and (old is None or old[0] not in ("Succeeded", "Failed")):
                metrics.STEPS_FINISHED.labels(step_type=s.type, outcome=s.phase.lower()).inc()
                if s.tokens:
                    metrics.TOKENS.labels(namespace=self.namespace).inc(s.tokens)
                if s.costUSD:
                    metrics.COST.labels(namespace=self.namespace).inc(s.costUSD)
                job = jobs.get(s.id)
                dur = _duration(job) if job else None
                if dur is not None:
                    metrics.STEP_DURATION.labels(step_type=s.type).observe(dur)
            if s.expanded and (old is None or not old[1]) and s.type in ("traverse_node", "plan_search"):
                metrics.FANOUT.observe(children.get(s.id, 0))
        for name in set(st.limitsHit) - limits_before:
            metrics.BUDGET_EXHAUSTED.labels(budget=name).inc()
        if d.done:
            metrics.DEPTH.observe(st.maxDepthReached)
        _update_gauges(self.uid, st.phase, sum(1 for s in st.steps if s.phase == "Running") if not d.done else 0)
