"""A status written by someone else than the operator is put back from the operator's record, and a
step Job deleted by hand is created again, visibly (the reconciler against a stand-in API)."""

from __future__ import annotations

import copy
import json
import threading

from searchrun import metrics
from searchrun.api import SearchRunSpec
from searchrun.executors.kube import reconciler as rec
from searchrun.executors.kube.config import OperatorConfig
from searchrun.executors.kube.status_guard import digest, differences, trusted_status

UID = "5f0c2a9e-1b2c-4d5e-8f90-a1b2c3d4e5f6"


class _Events(rec.EventSink):
    def __init__(self):
        self.posted: list[tuple[str, str, str]] = []

    def post(self, run, type, reason, message):
        self.posted.append((type, reason, message))


class _Kube:
    """The API server and the Job controller: a created Job succeeds at once (its step's
    result.json written first), unless ``finish`` is False; the SearchRun object is kept."""

    def __init__(self, store, spec: dict, finish: bool = True):
        self.store, self.finish = store, finish
        self.obj = {"metadata": {"uid": UID, "name": "run", "namespace": "ns"}, "spec": spec, "status": {}}
        self.jobs: dict[str, dict] = {}
        self.created: list[str] = []
        self.synced = threading.Event()
        self.synced.set()

    def job(self, uid, name):
        return self.jobs.get(name)

    def put(self, job):
        pass

    def on_change(self, uid):
        pass

    def create_job(self, ns, body):
        from searchrun.artifacts import step_key
        from searchrun.steps import STEP_ENV, StepContext

        env = {e["name"]: e.get("value") for e in body["spec"]["template"]["spec"]["containers"][0]["env"]}
        step = StepContext.from_json(env[STEP_ENV]).step
        r = {"detect_intent": {"intent": "simple"}, "simple_search": {"found": True, "answers": 1}}.get(
            step["type"], {"found": True, "answers": 1, "output": "s3://x/report.html"})
        job = dict(body, status={})
        if self.finish:
            self.store.put_json(step_key(UID, step["stepId"], step["attempt"], "result.json"), r)
            job["status"] = {"conditions": [{"type": "Complete", "status": "True"}], "succeeded": 1}
        self.jobs[body["metadata"]["name"]] = job
        self.created.append(body["metadata"]["name"])
        return json.loads(json.dumps(job))

    def patch_run_status(self, ns, name, body):
        self.obj["status"] = {k: v for k, v in json.loads(json.dumps(body["status"])).items() if v is not None}
        return self.obj

    def get_run(self, ns, name):
        return copy.deepcopy(self.obj)


def _reconciler(kube, events, tmp_path):
    return rec.RunReconciler(kube, kube, OperatorConfig(artifacts=f"file://{tmp_path}"), "ns", "run", UID, events=events)


def _finished_run(tmp_path):
    spec = SearchRunSpec(query="What is BM25?", artifacts={"uri": f"file://{tmp_path}"}).model_dump(mode="json", exclude_none=True)
    from searchrun.artifacts import open_store

    kube = _Kube(open_store(f"file://{tmp_path}"), spec)
    r = _reconciler(kube, _Events(), tmp_path)
    assert r.load()
    for _ in range(20):
        if r.reconcile_once().done:
            break
    assert kube.obj["status"]["phase"] == "Succeeded"
    return kube, copy.deepcopy(kube.obj["status"])


def test_a_forged_status_of_a_finished_run_is_restored_from_the_record(tmp_path):
    """Anyone with write access to searchruns/status could set a finished run to Failed (or back to
    Running) for good. Loading the run (at start-up, or when the status guard sees the change)
    finds the status disagreeing with the lineage the operator stored when the run ended, posts
    StatusRestored and writes the record back."""
    kube, final = _finished_run(tmp_path)
    for forged in ({"phase": "Failed", "message": "forged by user"},
                   {"phase": "Running", "finishedAt": None},
                   {"answers": 99},
                   {"lineageURI": "s3://other-bucket/runs/x/lineage.json"}):
        kube.obj["status"] = {k: v for k, v in dict(final, **forged).items() if v is not None}
        events = _Events()
        r = _reconciler(kube, events, tmp_path)
        assert r.load()
        [(type_, reason, message)] = [e for e in events.posted if e[1] == "StatusRestored"]
        assert type_ == "Warning" and "restored" in message
        for field in forged:
            assert f"status.{field}" in message, message
        r.reconcile_once()
        assert digest(kube.obj["status"]) == digest(final), differences(kube.obj["status"], final)
    # the operator's own status is left as it is, and no event
    events = _Events()
    r = _reconciler(kube, events, tmp_path)
    assert r.load() and not events.posted


def test_trusted_status_keeps_a_running_run_but_never_follows_a_foreign_lineage_pointer():
    own = "s3://b/runs/u/lineage.json"
    running = {"phase": "Running", "message": "", "steps": [{"id": "detect"}]}
    assert trusted_status(running, lambda: None, own) == (running, None)
    assert trusted_status(running, lambda: {"status": {"phase": "Running"}}, own) == (running, None)
    raw, why = trusted_status(dict(running, lineageURI="s3://evil/x"), lambda: None, own)
    assert "lineageURI" not in raw and "s3://evil/x" in why
    raw, why = trusted_status(dict(running, lineageURI="s3://evil/x"), lambda: {"status": {"phase": "Running"}}, own)
    assert raw["lineageURI"] == own and why
    # an offloaded finished run: its status shows the frontier only, the record has every step
    record = {"status": {"phase": "Succeeded", "message": "ok", "costUSD": 0.0, "steps": [{"id": "detect"}, {"id": "report"}]}}
    view = {"phase": "Succeeded", "message": "ok", "costUSD": 0, "lineageURI": own, "steps": [], "lineageSummary": {"steps": 2}}
    assert trusted_status(view, lambda: record, own) == (view, None)
    raw, why = trusted_status(dict(view, phase="Failed"), lambda: record, own)
    assert raw["lineageURI"] == own and raw["phase"] == "Succeeded" and "status.phase" in why
    # the pointer forged away from a run with journal entries: it is loaded from its own snapshot and journal
    raw, why = trusted_status({"phase": "Failed"}, lambda: dict(record, journal={"seq": 3}), own)
    assert raw["lineageURI"] == own and why


def test_a_step_job_deleted_by_hand_is_recreated_with_an_event_and_a_metric(tmp_path):
    spec = SearchRunSpec(query="What is BM25?", artifacts={"uri": f"file://{tmp_path}"}).model_dump(mode="json", exclude_none=True)
    from searchrun.artifacts import open_store

    kube = _Kube(open_store(f"file://{tmp_path}"), spec, finish=False)
    events = _Events()
    r = _reconciler(kube, events, tmp_path)
    assert r.load()
    r.reconcile_once()
    assert kube.created == ["sr-5f0c2a9e1b-detect"]
    r.reconcile_once()  # the Job is there: nothing is created, nothing said
    assert kube.created == ["sr-5f0c2a9e1b-detect"] and not [e for e in events.posted if e[1] == "StepJobRecreated"]
    before = metrics.STEP_JOBS_RECREATED._value.get()
    del kube.jobs["sr-5f0c2a9e1b-detect"]  # kubectl delete job
    r.reconcile_once()
    assert kube.created == ["sr-5f0c2a9e1b-detect"] * 2
    [(type_, _, message)] = [e for e in events.posted if e[1] == "StepJobRecreated"]
    assert type_ == "Warning" and "sr-5f0c2a9e1b-detect" in message and "detect" in message
    assert metrics.STEP_JOBS_RECREATED._value.get() == before + 1


def test_a_running_runs_daemon_verifies_a_changed_status_and_writes_it_whole(tmp_path):
    """The event handler only flags a change (it may be the echo of our own patch); the daemon,
    between two passes, re-reads the status: forged, it posts StatusRestored once and its next
    pass writes the whole status; its own, nothing happens."""
    from searchrun.executors.kube import handlers

    spec = SearchRunSpec(query="What is BM25?", artifacts={"uri": f"file://{tmp_path}"}).model_dump(mode="json", exclude_none=True)
    from searchrun.artifacts import open_store

    kube = _Kube(open_store(f"file://{tmp_path}"), spec, finish=False)
    events = _Events()
    r = _reconciler(kube, events, tmp_path)
    assert r.load()
    r.reconcile_once()
    ours = copy.deepcopy(kube.obj["status"])
    handlers._verify_live_status(r)
    assert r.last_patch is not None and not events.posted, "our own status: left alone"
    kube.obj["status"] = dict(ours, phase="Failed", message="forged by user")
    handlers._verify_live_status(r)
    assert r.last_patch is None
    [(type_, reason, message)] = events.posted
    assert reason == "StatusRestored" and "status.phase" in message
    r.reconcile_once()
    assert kube.obj["status"]["phase"] == "Running" and kube.obj["status"].get("message") == ours.get("message")
