"""PerFanout (``spec.steps.jobGrouping``): the steps one decision starts become one Indexed Job.
The Job spec, the index bookkeeping, and passes of the reconciler against a stand-in for the
API server (pure: no cluster)."""

import json
import threading
from datetime import datetime, timezone

import pytest

from searchrun.api import SearchRunSpec
from searchrun.artifacts import open_store, read_uri, step_key
from searchrun.engine import StartStep
from searchrun.executors.kube.config import OperatorConfig
from searchrun.executors.kube.events import EventSink
from searchrun.executors.kube.fanout import (A_STEPS, INDEX_ANNOTATION, MAX_GROUP, build_group_job, index_states,
                                            members, observe_index, parse_indexes, plan_groups, pod_failures,
                                            split_context, steps_key)
from searchrun.executors.kube.jobs import L_STEP, job_name
from searchrun.steps import STEP_ENV
from searchrun.steps.context import STEPS_URI_ENV, indexed_context

UID = "0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0"


def _start(sid, typ="traverse_node", attempt=1, job=None, timeout=300, retries=2):
    return StartStep(step_id=sid, step_type=typ, attempt=attempt, job=job or job_name(UID, sid), input={"stepId": sid},
                     timeout_seconds=timeout, retries=retries)


def test_fresh_steps_of_one_pod_template_form_one_group_in_path_order():
    starts = [_start("t10"), _start("t2"), _start("t1-0"), _start("aggregate", "aggregate_results"), _start("t3", timeout=5)]
    groups = plan_groups(starts, UID)
    assert list(groups) == [job_name(UID, "g-t1-0")]
    [g] = groups.values()
    assert [a.step_id for a in g] == ["t1-0", "t2", "t10"]  # t10 after t2: by path, not by text
    assert {a.job for a in g} == {"sr-0b1c2d3e4f-g-t1-0"}


def test_restarted_steps_keep_their_group_and_a_later_attempt_gets_a_new_name():
    name = job_name(UID, "g-t0")
    groups = plan_groups([_start("t1", job=name), _start("t0", job=name)], UID)
    assert {n: [a.step_id for a in g] for n, g in groups.items()} == {name: ["t0", "t1"]}
    retry = plan_groups([_start("t0", attempt=2), _start("t1", attempt=2)], UID)
    assert list(retry) == [job_name(UID, "g-t0-a2")]


def test_groups_are_cut_at_max_group():
    groups = plan_groups([_start(f"t{i}") for i in range(MAX_GROUP + 1)], UID)
    assert [len(g) for g in groups.values()] == [MAX_GROUP]  # the one left over keeps its own Job


def test_group_job_is_indexed_with_per_index_retries_and_a_permanent_exit_failing_its_index(tmp_path):
    spec = SearchRunSpec(query="q", steps={"retries": 3, "jobGrouping": "PerFanout"})
    acts = [_start("t0", retries=3), _start("t1", retries=3, attempt=2)]
    ctxs = [json.dumps({"run": {"uid": UID, "query": "q", "store": "file:///x"}, "step": {"stepId": a.step_id}}) for a in acts]
    parts = [split_context(c) for c in ctxs]
    name = job_name(UID, "g-t0")
    assert steps_key(UID, name) == f"runs/{UID}/g-t0.json"
    uri = open_store(f"file://{tmp_path}").put_json(steps_key(UID, name), {"steps": [p[1] for p in parts]})
    job = build_group_job(name, acts, "run", "ns", UID, spec, parts[0][0], uri, OperatorConfig())
    js = job["spec"]
    assert js["completionMode"] == "Indexed" and js["completions"] == js["parallelism"] == 2
    assert js["backoffLimitPerIndex"] == 3 and js["maxFailedIndexes"] == 2
    assert "backoffLimit" not in js  # else it would cap the failures of all steps together
    assert js["podFailurePolicy"]["rules"] == [{"action": "FailIndex", "onExitCodes": {
        "containerName": "step", "operator": "In", "values": [3]}}]
    assert job["metadata"]["annotations"][A_STEPS] == "t0:1,t1:2"
    assert L_STEP not in job["metadata"]["labels"] and L_STEP not in js["template"]["metadata"]["labels"]
    env = {e["name"]: e.get("value") for e in js["template"]["spec"]["containers"][0]["env"]}
    assert "step" not in json.loads(env[STEP_ENV]) and env[STEPS_URI_ENV] == uri
    assert len(json.dumps(job)) < 4000  # the steps are in the store, not in the Job (nor in each pod)
    # the pod of index 1 runs step t1
    chosen = json.loads(indexed_context({**env, "JOB_COMPLETION_INDEX": "1"}, read_uri))
    assert chosen["step"] == {"stepId": "t1"} and chosen["run"]["uid"] == UID
    with pytest.raises(Exception, match="has no step 2"):
        indexed_context({**env, "JOB_COMPLETION_INDEX": "2"}, read_uri)
    # a process outside an Indexed Job reads $SEARCHRUN_STEP as it is
    assert indexed_context({STEP_ENV: ctxs[0]}, read_uri) == ctxs[0]


def test_index_bookkeeping():
    assert parse_indexes("0,2-4,7") == {0, 2, 3, 4, 7} and parse_indexes(None) == set()
    job = {"metadata": {"annotations": {A_STEPS: "t0:1,t1:1,t2:1,t3:1"}},
           "status": {"completedIndexes": "0,2", "failedIndexes": "1", "failed": 3}}
    assert members(job) == [("t0", 1), ("t1", 1), ("t2", 1), ("t3", 1)]
    assert index_states(job) == ["succeeded", "failed", "succeeded", "running"]
    over = dict(job, status=dict(job["status"], conditions=[{"type": "Failed", "status": "True", "reason": "DeadlineExceeded"}]))
    assert index_states(over) == ["succeeded", "failed", "succeeded", "failed"]  # the Job's deadline ends its steps
    o = observe_index(job, "failed", "t1", 1, failed_pods=3, pod_message="boom")
    assert o.state == "failed" and o.final and o.attempts == 3 and "3 time(s)" in o.message and "boom" in o.message
    o = observe_index(over, "failed", "t3", 1)
    assert o.final and o.message.startswith("DeadlineExceeded")
    ok = observe_index(job, "succeeded", "t0", 1, b'{"found": true}', failed_pods=1, pod_message="oom")
    assert ok.state == "succeeded" and ok.attempts == 2 and ok.result.found
    pods = [{"metadata": {"creationTimestamp": f"2026-01-01T00:00:0{i}Z", "annotations": {INDEX_ANNOTATION: str(ix)}},
             "status": {"phase": ph}} for i, (ix, ph) in enumerate([(1, "Failed"), (0, "Succeeded"), (1, "Failed"), (2, "Running")])]
    assert {k: len(v) for k, v in pod_failures(pods).items()} == {1: 2}


class _IndexedKube:
    """Stands in for the API server and the Job controller: a created Job's steps have their
    result.json written at once, and its indexes complete, except the steps in ``fail`` (their
    index fails, after its retries). ``crash_creates``: the first N creates raise (the operator
    died between its status patch and the create)."""

    def __init__(self, store, fail=(), crash_creates=0, count_failed=True):
        self.store, self.fail, self.crash_creates = store, set(fail), crash_creates
        self.count_failed = count_failed  # False: the index shows failed before status.failed counts its pods
        self.jobs: dict[str, dict] = {}
        self.creates: list[str] = []
        self.patches: list[dict] = []
        self.synced = threading.Event()
        self.synced.set()

    def job(self, uid, name):
        return self.jobs.get(name)

    def put(self, job):
        pass

    def on_change(self, uid):
        pass

    def job_pods(self, ns, name):
        job = self.jobs[name]
        idx = parse_indexes(job["status"].get("failedIndexes"))
        return [{"metadata": {"creationTimestamp": "2026-01-01T00:00:00Z", "annotations": {INDEX_ANNOTATION: str(i)}},
                 "status": {"phase": "Failed", "containerStatuses": [{"state": {"terminated": {
                     "exitCode": 1, "message": json.dumps({"error": "StepError: forced"})}}}]}}
                for i in sorted(idx) for _ in range(job["spec"].get("backoffLimitPerIndex", 0) + 1)]

    def create_job(self, ns, body):
        from kubernetes.client.rest import ApiException

        name = body["metadata"]["name"]
        if self.crash_creates:
            self.crash_creates -= 1
            raise RuntimeError("operator killed")
        if name in self.jobs:
            raise ApiException(status=409, reason="AlreadyExists")
        self.creates.append(name)
        env = {e["name"]: e.get("value") for e in body["spec"]["template"]["spec"]["containers"][0]["env"]}
        n = body["spec"].get("completions", 1)
        done, failed = [], []
        for i in range(n):
            ctx = json.loads(indexed_context({**env, "JOB_COMPLETION_INDEX": str(i)}, read_uri) if n > 1 else env[STEP_ENV])
            step = ctx["step"]
            if step["stepId"] in self.fail:
                failed.append(str(i))
                continue
            r = {"intent": "deep"} if step["type"] == "detect_intent" else \
                {"seeds": [f"d{k}" for k in range(step["k"])]} if step["type"] == "plan_search" else \
                {"found": True, "next": []} if step["type"] == "traverse_node" else {"found": True, "answers": 1, "output": "s3://x/r.html"}
            self.store.put_json(step_key(UID, step["stepId"], step["attempt"], "result.json"), r)
            done.append(str(i))
        status = {"completedIndexes": ",".join(done), "failedIndexes": ",".join(failed),
                  "failed": len(failed) * (body["spec"].get("backoffLimitPerIndex", 0) + 1) if self.count_failed else 0,
                  "conditions": [{"type": "Failed" if failed else "Complete", "status": "True"}]}
        if n == 1:
            status = {"conditions": [{"type": "Complete", "status": "True"}], "succeeded": 1}
        job = dict(body, status=status)
        self.jobs[name] = job
        return job

    def patch_run_status(self, ns, name, body):
        self.patches.append(body)


def _reconciler(fake, tmp_path, grouping="PerFanout"):
    from searchrun.executors.kube import reconciler as rec

    spec = SearchRunSpec(query="q", budget=dict(maxAgents=4, maxDepth=1, maxSteps=20, maxParallel=10, deadlineSeconds=86400),
                         steps={"jobGrouping": grouping, "retries": 1}, artifacts={"uri": f"file://{tmp_path}"})
    r = rec.RunReconciler(fake, fake, OperatorConfig(), "ns", "run", UID, events=EventSink(),
                          clock=lambda: datetime(2026, 1, 1, tzinfo=timezone.utc))
    r.spec, r.store, r.store_uri = spec, open_store(f"file://{tmp_path}"), f"file://{tmp_path}"
    return r


def _drive(r, passes=30):
    for _ in range(passes):
        d = r.reconcile_once()
        if d.done:
            return d
    raise AssertionError("the run did not finish")


def test_a_perfanout_run_makes_one_job_per_fanout_and_one_lineage_entry_per_step(tmp_path):
    fake = _IndexedKube(open_store(f"file://{tmp_path}"))
    d = _drive(_reconciler(fake, tmp_path))
    assert d.status.phase == "Succeeded"
    trav = [s for s in d.status.steps if s.type == "traverse_node"]
    assert len(trav) == 4 and all(s.phase == "Succeeded" for s in trav)
    group = job_name(UID, "g-t0")
    assert {s.job for s in trav} == {group}
    assert fake.creates == [job_name(UID, x) for x in ("detect", "plan", "g-t0", "aggregate", "report")]


def test_the_handoff_clock_counts_the_steps_started_after_a_group_jobs_indexes(tmp_path):
    """searchrun_step_handoff_seconds under PerFanout: the pass that applies the group Job's
    indexes and starts the fan-in is timed from the index's end (before, only per-step Jobs were)."""
    from searchrun import metrics
    from searchrun.executors.kube.jobwatch import JobCache

    fake = _IndexedKube(open_store(f"file://{tmp_path}"))
    cache = JobCache(None, ["ns"], lambda uid: None)
    cache.synced.set()
    for name in ("job", "put", "on_change", "applied", "queue"):  # the fake's Jobs go through the real cache
        setattr(fake, name, getattr(cache, name))

    def count():
        return metrics.REGISTRY.get_sample_value("searchrun_step_handoff_seconds_count") or 0.0

    n0 = count()
    d = _drive(_reconciler(fake, tmp_path))
    assert d.status.phase == "Succeeded"
    # plan (after detect), 4 traversals (after plan), aggregate (after the group's indexes), report
    assert count() - n0 == 7
    assert cache.queue._finished == {}, "each noted end was applied"


def test_a_failing_index_fails_its_step_only(tmp_path):
    fake = _IndexedKube(open_store(f"file://{tmp_path}"), fail={"t1"})
    d = _drive(_reconciler(fake, tmp_path))
    steps = {s.id: s for s in d.status.steps}
    assert steps["t1"].phase == "Failed" and steps["t1"].attempts == 2  # retries 1: two pods of index 1
    assert "forced" in steps["t1"].message
    assert all(steps[t].phase == "Succeeded" for t in ("t0", "t2", "t3"))
    assert d.status.phase == "Succeeded"


def test_a_failed_index_gets_its_pods_reason_before_the_job_counts_them(tmp_path):
    """The Job controller can list an index in failedIndexes before status.failed counts its pods
    (their finalizers go later): the step's message still comes from its failed pod."""
    fake = _IndexedKube(open_store(f"file://{tmp_path}"), fail={"t1"}, count_failed=False)
    d = _drive(_reconciler(fake, tmp_path))
    t1 = next(s for s in d.status.steps if s.id == "t1")
    assert t1.phase == "Failed" and t1.attempts == 2 and "forced" in t1.message, t1


def test_a_crash_between_the_status_patch_and_the_create_makes_the_same_job_once(tmp_path):
    """The lineage names the group Job before it exists; a restarted operator (a new reconciler
    reading the patched status) creates that Job, under that name, once."""
    from searchrun.api import SearchRunStatus

    fake = _IndexedKube(open_store(f"file://{tmp_path}"))
    r = _reconciler(fake, tmp_path)
    while not fake.jobs.get(job_name(UID, "plan")):
        r.reconcile_once()
    fake.crash_creates = 1
    with pytest.raises(RuntimeError):
        r.reconcile_once()  # plan observed, the group decided and patched, its create "killed"
    named = {s["id"]: s["job"] for s in fake.patches[-1]["status"]["steps"] if s["type"] == "traverse_node"}
    assert set(named.values()) == {job_name(UID, "g-t0")} and job_name(UID, "g-t0") not in fake.jobs
    r2 = _reconciler(fake, tmp_path)
    r2.status = SearchRunStatus.model_validate(fake.patches[-1]["status"])
    d = _drive(r2)
    assert d.status.phase == "Succeeded"
    assert fake.creates.count(job_name(UID, "g-t0")) == 1
    assert not any(n.startswith(job_name(UID, "t")) for n in fake.creates)  # no per-step Job for a grouped step


def test_perstep_stays_the_default(tmp_path):
    fake = _IndexedKube(open_store(f"file://{tmp_path}"))
    d = _drive(_reconciler(fake, tmp_path, grouping="PerStep"))
    assert d.status.phase == "Succeeded" and SearchRunSpec(query="q").steps.jobGrouping == "PerStep"
    assert len(fake.creates) == len(d.status.steps)
