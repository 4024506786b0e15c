"""Reconcile one SearchRun: its spec, its status and its Jobs in; status patch and Jobs out.

Order matters for crash safety: the lineage is written *before* the Jobs it
names are created (the status, or once offloaded the store, which a restart
reads first). After a crash, a step that is Running in the lineage but has no
Job is created again; a Job that exists answers AlreadyExists. So no Job is
created twice and no decided step is lost.

A pass costs what changed, not the size of the run (see ``lineage_store``).
"""

from __future__ import annotations

import json
import logging
import time
from functools import partial
from datetime import datetime, timezone
from typing import Optional

from kubernetes.client.rest import ApiException

from ... import metrics
from ...api import SearchRunSpec, SearchRunStatus, StepStatus
from ...artifacts import ArtifactStore, read_uri, result_key
from ...engine import Decision, Observation, reconcile
from .. import lineage_document, lineage_needed, step_context
from ...retry import epoch_run_id
from . import resumes
from .client import KubeClient
from .config import OperatorConfig
from .events import EventSink, merge_events
from .fanout_pass import create_group_job, group_observations, group_starts
from .jobwatch import drop_applied
from .jobs import A_ATTEMPT, build_job, job_name, job_state, observe_job, pod_error
from .lineage_store import LineageJournal, StepDumps, restore_lineage, restore_status
from .answered import AnsweredSteps
from .queue_metrics import record_handoff
from .run_metrics import record_pass
from .shared import io_pool, shared_store
from .status_guard import read_record, trusted_status
from .step_cache import StepRecall

log = logging.getLogger("searchrun.reconciler")


# An offloaded run's status is a view (the store holds the lineage): patched at most this often.
STATUS_PATCH_SECONDS = 1.0


def _same_but_the_clock(a: dict, b: Optional[dict]) -> bool:
    """Two status bodies that differ at most in the elapsed time of the budget accounting."""
    if b is None:
        return False
    sa, sb = a["status"], b["status"]
    if sa.keys() != sb.keys():
        return False
    for k, va in sa.items():
        vb = sb[k]
        if k in ("budgetUsed", "budgetRemaining") and isinstance(va, dict) and isinstance(vb, dict):
            if {x: y for x, y in va.items() if x != "elapsedSeconds"} != {x: y for x, y in vb.items() if x != "elapsedSeconds"}:
                return False
        elif va != vb:
            return False
    return True


class RunReconciler(AnsweredSteps):
    """One run: a pass (``reconcile_once``) observes its Jobs, asks the engine, then writes the
    lineage, the status and the Jobs the engine started, through the injected ``KubeClient``."""

    def __init__(self, kube: KubeClient, cache, config: OperatorConfig, namespace: str, name: str, uid: str,
                 events: EventSink, clock=lambda: datetime.now(timezone.utc)):
        self.kube = kube
        self.cache = cache
        self.config = config
        self.namespace, self.name, self.uid = namespace, name, uid
        self.events = events
        self.clock = clock
        self.spec: Optional[SearchRunSpec] = None
        self.status: Optional[SearchRunStatus] = None
        self.store: Optional[ArtifactStore] = None
        self.store_uri: Optional[str] = None
        self.last_patch: Optional[dict] = None
        self.results: dict[str, bytes] = {}      # step id -> result.json, read once
        self.create_errors: dict[str, str] = {}  # step id -> why the API refused its Job
        self.unreadable_since: dict[str, float] = {}  # step id -> when its result was first missed
        self.offloaded = False
        self.dumps: Optional[StepDumps] = None  # self.status's steps as JSON, kept up to date
        self.journal = LineageJournal(uid)      # the offloaded lineage in the store
        self.status_points_at_store = False     # a status with lineageURI was patched (or loaded)
        self.last_patch_at = 0.0
        self.patch_pending = False              # a status patch was held back (see reconcile_once)
        self.unsynced: frozenset[str] = frozenset()  # steps the engine changed that StepDumps has not taken
        self.running_ids: Optional[tuple[str, ...]] = None  # Running steps after the last decision
        self.taken: Optional[Decision] = None   # the last decision whose changes were noted
        self.jobs_created: set[tuple[str, int]] = set()  # (step id, attempt) whose Job this process created
        self.jobs_recreated: list = []          # StartSteps whose Job was gone and was created again
        # A retried run is a new epoch: its artifacts, lineage and Job names come from the run id
        # <uid>-r<epoch> (``retry``); Jobs keep the SearchRun's uid in their label and owner.
        self.epoch, self.run_id = 0, uid
        self.recall = None                      # executors.base.Recall: results found without a Job
        self.recalled: dict[str, Observation] = {}  # step id -> its recalled result, for the next pass
        self.metadata: dict = {}                # the SearchRun's metadata at load (its retry annotation)
        self.step_recall: Optional[StepRecall] = None  # the step cache (built with the spec)
        self.index_keys: dict[str, str] = {}    # step id -> its group Job's index, from the last observations

    @property
    def journal_seq(self) -> int:
        """The last lineage journal entry written (or read)."""
        return self.journal.seq

    @journal_seq.setter
    def journal_seq(self, seq: int) -> None:
        self.journal.seq = seq

    # -- loading

    def load(self) -> bool:
        """Read the SearchRun; False when it is gone."""
        obj = self.kube.get_run(self.namespace, self.name)
        if obj is None or obj["metadata"]["uid"] != self.uid:
            return False
        raw_status = obj.get("status") or {}
        self.metadata = obj.get("metadata") or {}
        try:
            self.spec = SearchRunSpec.model_validate(obj.get("spec") or {})
        except Exception as e:
            self.spec = None
            self.status, _ = restore_status(raw_status, read_uri=None)
            self.status = self.status or SearchRunStatus()
            if self.status.phase not in ("Succeeded", "Failed"):
                self._fail_invalid(str(e))
            return True
        self.store_uri = self.spec.artifacts.uri or self.config.artifacts
        try:
            self.store = shared_store(self.store_uri)
        except ValueError as e:  # not a store (admission refuses these): fail the run, never retry forever
            self.spec = None
            self.status = restore_status(raw_status, read_uri=None)[0] or SearchRunStatus()
            if self.status.phase not in ("Succeeded", "Failed"):
                self._fail_invalid(f"spec.artifacts.uri: {e}")
            return True
        try:
            self._load_lineage(raw_status)
        except Exception:
            self.spec = self.status = None  # not loaded (the store is unreachable?): the next pass loads again
            raise
        return True

    def _load_lineage(self, raw_status: dict) -> None:
        resumed = resumes.epoch_of(self)  # the epoch decides which record the status is checked against
        raw_status, restored = trusted_status(raw_status, read_record(self.store, self._lineage_key()),
                                              self.store.uri_for(self._lineage_key()))
        if restored:  # someone else wrote the status: the operator's record wins
            self.events.post(self, "Warning", "StatusRestored", restored)
        self.status, self.offloaded, self.journal_seq = restore_lineage(raw_status, read_uri)
        self.status_points_at_store = self.offloaded
        if self.status is not None:
            self.dumps = StepDumps(self.status)
        resumes.resume_loaded(self, resumed)

    # -- epochs (a retried run: ``resumes``)

    def use_epoch(self, epoch: int) -> None:
        self.epoch, self.run_id = epoch, epoch_run_id(self.uid, epoch)
        self.journal = LineageJournal(self.run_id)

    def enter_epoch(self, epoch: int, status: SearchRunStatus, recall) -> None:
        """Go on as epoch ``epoch`` from ``status`` (a resume's fresh status), nothing carried over."""
        self.use_epoch(epoch)
        self.status, self.recall, self.recalled = status, recall, {}
        self.dumps, self.unsynced, self.running_ids, self.taken = StepDumps(status), frozenset(), None, None
        self.offloaded = self.status_points_at_store = False
        self.last_patch, self.results, self.unreadable_since, self.create_errors = None, {}, {}, {}

    def _fail_invalid(self, why: str) -> None:
        now = self.clock().strftime("%Y-%m-%dT%H:%M:%SZ")
        body = {"status": {"phase": "Failed", "message": f"invalid spec: {why}"[:1000], "finishedAt": now,
                           "conditions": [{"type": "Failed", "status": "True", "reason": "InvalidSpec",
                                           "message": why[:1000], "lastTransitionTime": now}]}}
        self.kube.patch_run_status(self.namespace, self.name, body)
        self.events.post(self, "Warning", "InvalidSpec", why[:1000])

    # -- observing

    def _result(self, step_id: str, attempt: int) -> Optional[bytes]:
        if step_id in self.results:
            return self.results[step_id]
        try:
            raw = self.store.get_bytes(result_key(self.run_id, step_id, attempt))
        except Exception as e:
            log.warning("%s/%s: cannot read result of %s: %s", self.namespace, self.name, step_id, e)
            return None
        self.results[step_id] = raw  # observe_job parses it (executors.base.parse_result)
        return raw

    def _pod_error(self, job: str, failed_pods_only: bool = False) -> str:
        try:
            items = self.kube.job_pods(self.namespace, job)
        except ApiException:
            return ""
        if failed_pods_only:
            items = [p for p in items if (p.get("status") or {}).get("phase") == "Failed"]
        items.sort(key=lambda p: p["metadata"].get("creationTimestamp") or "")
        return pod_error(items[-1]) if items else ""

    def _running_jobs(self, running: dict[str, StepStatus]):
        """(step id, Job) for the running steps whose Job the cache holds: looked up by the Job's
        (deterministic) name, so a pass costs the steps in flight, not all the run's Jobs."""
        get = getattr(self.cache, "job", None)
        if get is None:  # a cache that can only list
            for job in self.cache.jobs(self.uid):
                sid = (job["metadata"].get("labels") or {}).get("searchrun.dev/step-id")
                if sid in running:
                    yield sid, job
            return
        for sid, s in running.items():
            job = get(self.uid, s.job) if s.job else None
            if job is not None and (job["metadata"].get("labels") or {}).get("searchrun.dev/step-id") == sid:
                yield sid, job

    def _running_steps(self) -> dict[str, StepStatus]:
        """The steps whose attempts are in flight: from the last decision, or (after a load) a scan."""
        if self.status is None:
            return {}
        if self.running_ids is None:
            return {s.id: s for s in self.status.steps if s.phase == "Running"}
        pos = self.dumps.pos if self.dumps is not None else None
        if pos is None:
            by_id = {s.id: s for s in self.status.steps}
            return {sid: by_id[sid] for sid in self.running_ids}
        return {sid: self.status.steps[pos[sid]] for sid in self.running_ids}

    def unreadable(self, sid: str, attempts: int) -> Observation:
        """A step whose Job (or index) succeeded but whose result is not readable (S3 down?): still
        running for up to resultWaitSeconds, then failed."""
        first = self.unreadable_since.setdefault(sid, time.monotonic())
        if time.monotonic() - first < self.config.resultWaitSeconds:
            return Observation(sid, attempts, "running")
        del self.unreadable_since[sid]
        return Observation(sid, attempts, "failed", final=True,
                           message=f"the step's result.json could not be read for {self.config.resultWaitSeconds:g}s")

    def observations(self) -> tuple[dict[str, Observation], dict[str, dict]]:
        running = self._running_steps()
        obs: dict[str, Observation] = {}
        jobs: dict[str, dict] = dict((sid, job) for sid, job in self._running_jobs(running))
        # The pods of one Job all write under the attempt the Job was created for; status
        # attempts also count the Job's pod retries.
        attempts = {sid: int((job["metadata"].get("annotations") or {}).get(A_ATTEMPT) or running[sid].attempts or 1)
                    for sid, job in jobs.items()}
        unread = [(sid, attempts[sid]) for sid, job in jobs.items() if job_state(job) == "succeeded" and sid not in self.results]
        fetched: dict = {}
        if len(unread) > 1:  # read the results of the steps that finished at once
            fetched = dict(zip((sid for sid, _ in unread), io_pool().map(lambda x: self._result(*x), unread)))
        for sid, job in jobs.items():
            state = job_state(job)
            attempt = attempts[sid]
            result = None
            if state == "succeeded":
                result = fetched[sid] if sid in fetched else self._result(sid, attempt)
            if state == "succeeded" and result is None:
                obs[sid] = self.unreadable(sid, running[sid].attempts)
                continue
            self.unreadable_since.pop(sid, None)
            msg = ""
            if state == "failed":
                msg = self._pod_error(job["metadata"]["name"])
            elif state == "succeeded" and int((job.get("status") or {}).get("failed") or 0):
                # succeeded on a retried pod: say why the earlier one failed (one LIST, once per step)
                msg = self._pod_error(job["metadata"]["name"], failed_pods_only=True)
            obs[sid] = observe_job(job, result, msg)
        grouped, self.index_keys = group_observations(self, running, jobs)  # PerFanout: steps of group Jobs
        obs.update(grouped)
        obs.update(self._recalled(running))
        for sid, why in list(self.create_errors.items()):
            if sid in running:
                obs[sid] = Observation(sid, running[sid].attempts, "failed", message=why, final=True)
            del self.create_errors[sid]
        return obs, jobs

    # -- acting

    def _take(self, d: Decision) -> None:
        """Note the steps ``d`` changed, once per decision: the next ``_sync`` dumps them."""
        if d is not self.taken:
            self.taken = d
            self.unsynced = self.unsynced | d.changed
            self.running_ids = d.running

    def _sync(self, st: SearchRunStatus) -> dict[str, Optional[dict]]:
        """Bring the JSON steps up to date with ``st``; the changed steps' previous dumps."""
        if self.dumps is None or self.dumps.status is not st or len(self.dumps.dumps) > len(st.steps):
            self.dumps = StepDumps(st)
            self.unsynced = frozenset()
            return {}
        changed, self.unsynced = self.unsynced, frozenset()
        return self.dumps.sync(changed)

    def _status_body(self, d: Decision) -> dict:
        st = d.status
        self._take(d)
        self._sync(st)
        full = st.model_dump(mode="json", exclude={"steps"})
        if self.offloaded or self.dumps.json_size > self.config.lineageOffloadBytes:
            uri = self._write_offloaded(st, full)
            self.offloaded = True
            full["lineageURI"] = uri
            full["lineageSummary"] = self.dumps.summary()
            # Keep what is in flight, so `kubectl describe` still shows the frontier.
            full["steps"] = self.dumps.frontier(50)
            self.dumps.settle()  # the store has the finished steps: held as JSON only from now on
        else:
            full["steps"] = list(self.dumps.dumps)
        full["observedGeneration"] = None
        return {"status": full}

    def _lineage_key(self) -> str:
        return self.journal.key

    def write_lineage(self, st: SearchRunStatus) -> str:
        """The full lineage (a snapshot that includes journal entries up to ``journal_seq``)."""
        self._sync(st)
        doc = lineage_document(self.name, self.run_id, self.namespace, self.spec, st.model_copy(update={"steps": []}))
        return self.journal.write_snapshot(self.store, doc, self.dumps)

    def _write_offloaded(self, st: SearchRunStatus, scalars: dict) -> str:
        """Before a status patch of an offloaded run: what changed goes to the store."""
        if self.journal.snapshot_due():
            return self.write_lineage(st)
        return self.journal.write_entry(self.store, self.dumps, scalars)

    def _patch_status(self, body: dict) -> None:
        if _same_but_the_clock(body, self.last_patch):
            return  # a pass that changed nothing but elapsed time: no write (the next change carries it)
        self.kube.patch_run_status(self.namespace, self.name, body)
        self.last_patch, self.last_patch_at = body, time.monotonic()
        if body["status"].get("lineageURI"):
            self.status_points_at_store = True

    def _create_job(self, a) -> None:
        ctx = step_context(self.spec, self.run_id, self.name, self.store_uri, a)
        body = build_job(a, self.name, self.namespace, self.uid, self.spec, ctx.to_json(), self.config)
        try:
            self.cache.put(self.kube.create_job(self.namespace, body))
            metrics.STEPS_CREATED.labels(step_type=a.step_type).inc()
            if (a.step_id, a.attempt) in self.jobs_created:  # it existed, and was gone (deleted by hand?)
                self.jobs_recreated.append(a)
            self.jobs_created.add((a.step_id, a.attempt))
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
        was_done = self.status is not None and self.status.phase in ("Succeeded", "Failed")
        limits_before = set(self.status.limitsHit) if self.status else set()
        obs, jobs = self.observations()
        answered = self._answered()
        obs.update(answered)
        t1 = time.perf_counter()
        d = reconcile(self.spec, self.status, obs, self.clock(), self.run_id, complete=self.cache.synced.is_set(),
                      job_namer=job_name)
        metrics.DECISION_SECONDS.observe(time.perf_counter() - t1)
        self._answer_recalled(d)  # steps a resume kept: no Job (and no place in a group Job)
        need = {a.step_id for a in self._needing_jobs(d.start)}  # the rest the step cache answered
        groups = group_starts(self, d, need)  # PerFanout: the steps started together become one Job
        self.status = d.status
        self._take(d)
        for sid, o in obs.items():
            if o.state != "running":
                self.results.pop(sid, None)  # applied: the step is not read again (a 10,000-step run held them all)
        before = self._sync(d.status)
        # the lineage once more when the run ends: the record a forged status is restored from
        if lineage_needed(d.start) or (d.done and (self.offloaded or not was_done)):
            self.write_lineage(d.status)
        body = self._status_body(d)  # an offloaded lineage is written to the store here
        # The lineage first, then the Jobs it names. Once the status points at the store, the store
        # holds the lineage and the status only shows the frontier: its patch goes along with the
        # Jobs, and at most every STATUS_PATCH_SECONDS while the phase stays (the daemon comes back
        # for a patch held back: ``patch_pending``).
        calls = [partial(self._create_job, a) for a in d.start if a.step_id in need and a.job not in groups]
        calls += [partial(create_group_job, self, name, actions) for name, actions in groups.items()]
        self.patch_pending = False
        if not self.status_points_at_store:
            self._patch_status(body)
        elif (not d.done and body["status"].get("phase") == (self.last_patch or {}).get("status", {}).get("phase")
              and time.monotonic() - self.last_patch_at < STATUS_PATCH_SECONDS):
            self.patch_pending = not _same_but_the_clock(body, self.last_patch)
        elif calls:
            calls.append(partial(self._patch_status, body))
        else:
            self._patch_status(body)
        if len(calls) > 1:
            for f in [io_pool().submit(c) for c in calls]:
                f.result()
        elif calls:
            calls[0]()
        record_handoff(self.cache, self.uid, obs, jobs, len(need), self.index_keys)  # the steps this pass gave a Job
        drop_applied(self.cache, self.uid, obs, jobs, d.running)  # finished Jobs of applied steps
        if self.create_errors or self.recalled:  # come back at once for what is known already
            self.cache.on_change(self.uid)
        self._recall().after_pass(d, obs, answered, self.dumps.pos if self.dumps is not None else None)
        for type_, reason, message in merge_events(d.events):
            self.events.post(self, type_, reason, message)
        recreated, self.jobs_recreated = self.jobs_recreated, []
        if recreated:
            metrics.STEP_JOBS_RECREATED.inc(len(recreated))
            self.events.post(self, "Warning", "StepJobRecreated", "; ".join(
                f"Job {a.job} of running step {a.step_id} was gone: created it again" for a in recreated)[:1000])
        if not was_done:  # ``before``: the steps this pass added (None) or changed (their previous JSON)
            record_pass(self.namespace, self.uid, d, [d.status.steps[self.dumps.pos[sid]] for sid in before], before,
                        limits_before, jobs)
        metrics.RECONCILE_SECONDS.observe(time.perf_counter() - t0)
        return d
