"""`searchrun retry` on a cluster, without one: the pure rules (tokens, epochs, admission of the
update, the command's checks) and the operator's resume against an in-process stand-in of the API
(support/fake_kube.py) with a file store: kept steps get no Job, one Job per step per epoch, the
same token twice is one resume, and a restart at any point of a resume finishes it."""

from __future__ import annotations

from collections import Counter

import pytest

from searchrun.admission import Policy, review
from searchrun.api import SearchRunSpec
from searchrun.artifacts import open_store
from searchrun.cli_retry import check_retry
from searchrun.engine.resume import ResumeError
from searchrun.executors.kube import resumes
from searchrun.executors.kube.config import OperatorConfig
from searchrun.executors.kube.events import EventSink
from searchrun.executors.kube.jobs import job_name
from searchrun.executors.kube.reconciler import RunReconciler
from searchrun.retry import (RETRY_ANNOTATION, epoch_run_id, new_retry_token, parse_budget_args, requested_by,
                             retry_refusal, run_epoch, spec_to_compare)
from support.fake_kube import FakeKube, searchrun_object

UID = "0f3c2a9e-1b2d-4c5e-8f90-123456789abc"


# -- the pure rules


def test_epochs_name_run_ids_and_jobs_apart():
    assert epoch_run_id(UID, 0) == UID and run_epoch(UID) == (UID, 0)
    assert epoch_run_id(UID, 3) == f"{UID}-r3" and run_epoch(f"{UID}-r3") == (UID, 3)
    assert job_name(UID, "t0-1") == "sr-0f3c2a9e1b-t0-1"
    assert job_name(f"{UID}-r2", "t0-1") == "sr-0f3c2a9e1b-r2-t0-1"
    with pytest.raises(ValueError, match="at most 99"):
        epoch_run_id(UID, 100)


def test_who_asked_is_the_field_manager_of_the_annotation():
    meta = {"managedFields": [
        {"manager": "kubectl-client-side-apply", "fieldsV1": {"f:spec": {}}},
        {"manager": "searchrun-retry", "fieldsV1": {"f:metadata": {"f:annotations": {f"f:{RETRY_ANNOTATION}": {}}}}},
    ]}
    assert requested_by(meta) == "searchrun-retry"
    assert requested_by({}) is None


def test_budget_arguments_name_an_unknown_field():
    assert parse_budget_args(["maxSteps=60", "maxTokens=5e5,maxDepth=3"]) == {"maxSteps": "60", "maxTokens": "5e5", "maxDepth": "3"}
    with pytest.raises(ValueError, match="--budget maxJobs: not a budget field"):
        parse_budget_args(["maxJobs=3"])
    with pytest.raises(ValueError, match="expected FIELD=VALUE"):
        parse_budget_args(["maxSteps"])


def test_admission_of_an_update():
    old = {"annotations": {RETRY_ANNOTATION: "a1"}}
    assert new_retry_token(old, {"annotations": {RETRY_ANNOTATION: "b2"}}) == "b2"
    assert new_retry_token(old, old) is None and new_retry_token(None, {}) is None
    assert "still Running" in retry_refusal("b2", {"phase": "Running"})
    assert "still Pending" in retry_refusal("b2", None)
    assert "not a retry token" in retry_refusal("Bad Token!", {"phase": "Failed"})
    assert retry_refusal("b2", {"phase": "Failed"}) is None

    policy = Policy(caps={"maxSteps": 60})
    spec = SearchRunSpec(query="q", budget={"maxSteps": 30}).model_dump(mode="json", exclude_none=True)
    raised = dict(spec, budget=dict(spec["budget"], maxSteps=50))
    over = dict(spec, budget=dict(spec["budget"], maxSteps=100))
    other = dict(raised, query="something else")
    assert review(raised, policy, old_spec=spec_to_compare(spec, raised, retry=True)).allowed
    v = review(over, policy, old_spec=spec_to_compare(spec, over, retry=True))
    assert not v.allowed and "spec.budget.maxSteps: 100 exceeds the cluster's limit of 60" in v.message
    v = review(raised, policy, old_spec=spec_to_compare(spec, raised, retry=False))
    assert not v.allowed and v.reason == "immutable"  # no token: no budget change
    v = review(other, policy, old_spec=spec_to_compare(spec, other, retry=True))
    assert not v.allowed and v.reason == "immutable"  # a retry changes the budget only


def _obj(phase="Failed", stopped=None, steps=(("detect", "Succeeded"), ("t0", "Failed")), budget=None):
    spec = SearchRunSpec(query="q", budget=budget or {"maxSteps": 10, "maxAgents": 2}).model_dump(mode="json")
    return {"metadata": {"name": "r", "uid": UID}, "spec": spec,
            "status": {"phase": phase, "stoppedBy": stopped,
                       "steps": [{"id": i, "type": "traverse_node", "phase": p} for i, p in steps]}}


def test_the_command_checks_before_it_asks():
    assert check_retry(_obj(), {}) == {}
    assert check_retry(_obj(), {"maxSteps": "20"}) == {"maxSteps": 20}
    with pytest.raises(ResumeError, match="still Running"):
        check_retry(_obj("Running"), {})
    with pytest.raises(ResumeError, match="nothing to resume"):
        check_retry(_obj("Succeeded", steps=[("t0", "Succeeded")]), {})
    with pytest.raises(ResumeError, match=r"stopped by budget.maxSteps \(10\).*--budget maxSteps=20"):
        check_retry(_obj("Succeeded", stopped="maxSteps", steps=[("t0", "Succeeded")]), {})
    with pytest.raises(ResumeError, match="--budget maxSteps: Input should be less than or equal to 10000"):
        check_retry(_obj(), {"maxSteps": "20000"})


# -- the operator's resume, against a stand-in of the API


def _spec(tmp_path) -> dict:
    return {"query": "q", "artifacts": {"uri": f"file://{tmp_path}"}, "steps": {"retries": 0},
            "budget": {"maxAgents": 2, "maxDepth": 2, "maxFanoutPerNode": 2, "maxSteps": 30, "maxParallel": 3}}


def _reconciler(fake) -> RunReconciler:
    r = RunReconciler(fake, fake, OperatorConfig(), "ns", "run", UID, EventSink())
    assert r.load()
    return r


def _drive(r, passes: int = 300):
    for _ in range(passes):
        d = r.reconcile_once()
        if d.done:
            return d
    raise AssertionError("the run did not finish")


@pytest.fixture
def failed(tmp_path):
    """A run whose traversals and fallback all failed (the agent was down); the agent works now."""
    broken = {"on": True}
    store = open_store(f"file://{tmp_path}")
    fake = FakeKube(store, searchrun_object(UID, _spec(tmp_path)),
                    fails=lambda s: broken["on"] and s["type"] in ("traverse_node", "simple_search"),
                    flaky=lambda s: s["type"] == "plan_search")  # its Job succeeded on a second pod
    d = _drive(_reconciler(fake))
    assert d.status.phase == "Failed"
    assert {s.id for s in d.status.steps if s.phase == "Succeeded"} == {"detect", "plan"}
    assert next(s for s in d.status.steps if s.id == "plan").attempts == 2  # committed under attempt 1
    broken["on"] = False
    fake.obj["metadata"]["annotations"][RETRY_ANNOTATION] = "tok1"
    return fake


def _assert_resumed(fake, d):
    assert d.status.phase == "Succeeded", d.status.message
    names = Counter(fake.created)
    assert set(names.values()) == {1}, f"a Job was created twice: {names}"
    epoch1 = [n for n in fake.created if n.startswith(job_name(f"{UID}-r1", ""))]
    assert epoch1 and not {job_name(f"{UID}-r1", "detect"), job_name(f"{UID}-r1", "plan")} & set(epoch1)
    steps = {s.id: s for s in d.status.steps}
    for sid in ("detect", "plan"):
        assert steps[sid].keptFrom.run == UID and steps[sid].job == job_name(UID, sid)
    assert all(s.job in fake.jobs for s in d.status.steps if s.phase != "Skipped")
    rec = d.status.resumes[-1]
    assert (rec.token, rec.epoch, rec.fromRun, rec.fromPhase, rec.by) == ("tok1", 1, UID, "Failed", "me")


def test_a_failed_run_is_resumed_once_per_token(failed):
    r = _reconciler(failed)
    assert resumes.request(r, "tok1", "me") == resumes.RESUMED
    _assert_resumed(failed, _drive(r))
    created = list(failed.created)
    r = _reconciler(failed)  # the same token again (another event, a restart): nothing new
    assert r.epoch == 1 and resumes.request(r, "tok1", "me") == resumes.RESUMED
    assert r.status.phase == "Succeeded" and failed.created == created
    assert len(failed.obj["status"]["resumes"]) == 1
    assert resumes.request(r, "tok2", "me") == resumes.REFUSED  # nothing left to resume
    assert [e["outcome"] for e in resumes.read_log(r.store, UID)] == ["Resumed", "Refused"]


@pytest.mark.parametrize("passes_before_the_crash", [0, 1, 3])
def test_a_restart_during_the_resume_finishes_it_without_a_duplicate_job(failed, passes_before_the_crash):
    r = _reconciler(failed)
    assert resumes.request(r, "tok1", "me") == resumes.RESUMED  # recorded in the store before acting
    for _ in range(passes_before_the_crash):
        r.reconcile_once()
    r = _reconciler(failed)  # a new operator process: the epoch from the store, the status (if patched) from the API
    assert r.epoch == 1
    _assert_resumed(failed, _drive(r))


def test_a_budget_stopped_run_goes_on_under_the_raised_budget(tmp_path):
    store = open_store(f"file://{tmp_path}")
    spec = _spec(tmp_path)
    spec["budget"]["maxSteps"] = 6
    fake = FakeKube(store, searchrun_object(UID, spec))
    d = _drive(_reconciler(fake))
    assert d.status.stoppedBy == "maxSteps" and len(d.status.steps) == 6
    before = {s.id for s in d.status.steps}
    fake.obj["spec"]["budget"]["maxSteps"] = 14  # the retry's patch (admitted by the webhook)
    r = _reconciler(fake)
    assert resumes.request(r, "tok1", None) == resumes.RESUMED
    d = _drive(r)
    assert d.status.phase == "Succeeded" and d.status.resumes[-1].budget == {"maxSteps": [6, 14]}
    assert len(d.status.steps) > 6 and any(s.depth == 2 for s in d.status.steps)
    kept = {s.id for s in d.status.steps if s.keptFrom}
    assert {"detect", "plan", "t0", "t1"} <= kept <= before
    assert set(Counter(fake.created).values()) == {1}


def test_a_token_on_a_run_still_going_is_refused_and_recorded(tmp_path):
    store = open_store(f"file://{tmp_path}")
    fake = FakeKube(store, searchrun_object(UID, _spec(tmp_path)))
    r = _reconciler(fake)
    r.reconcile_once()
    assert r.status.phase == "Running"
    assert resumes.request(r, "tok1", None) == resumes.REFUSED
    assert resumes.request(r, "tok1", None) == resumes.REFUSED  # once
    log = resumes.read_log(store, UID)
    assert len(log) == 1 and "still Running" in log[0]["message"]
    d = _drive(r)
    assert d.status.phase == "Succeeded" and not d.status.resumes  # and it was not resumed when it ended
    assert resumes.run_ids(store, UID) == [UID]


def test_cleanup_finds_every_epoch(failed):
    r = _reconciler(failed)
    resumes.request(r, "tok1", None)
    _drive(r)
    assert resumes.run_ids(r.store, UID) == [UID, f"{UID}-r1"]


def test_the_validating_webhook_judges_a_retry_update(monkeypatch):
    import kopf

    from searchrun.executors.kube import webhooks
    from searchrun.executors.kube.handlers import STATE

    monkeypatch.setattr(STATE, "config", STATE.config.model_copy(update={"policy": Policy(caps={"maxSteps": 60})}))
    spec = SearchRunSpec(query="q", budget={"maxSteps": 30}).model_dump(mode="json", exclude_none=True)
    old = {"metadata": {"annotations": {}}, "spec": spec, "status": {"phase": "Failed"}}

    def update(token=None, steps=30, phase="Failed"):
        new = {"metadata": {"annotations": {RETRY_ANNOTATION: token} if token else {}},
               "spec": dict(spec, budget=dict(spec["budget"], maxSteps=steps))}
        webhooks.validate(body=new, old=dict(old, status={"phase": phase}), operation="UPDATE", warnings=[])

    update("t1", 50)  # a raise with a new token on a finished run
    update("t1", 30)  # a retry without a raise
    with pytest.raises(kopf.AdmissionError, match="spec.budget.maxSteps: 100 exceeds the cluster's limit of 60"):
        update("t1", 100)
    with pytest.raises(kopf.AdmissionError, match="the run is still Running"):
        update("t1", 50, phase="Running")
    with pytest.raises(kopf.AdmissionError, match="immutable"):
        update(None, 50)  # a budget edit is only admitted with a retry


def test_a_load_that_cannot_read_the_store_leaves_the_run_unloaded(failed, monkeypatch):
    """(Before, the spec stayed set with no status: the next pass planned the run again from nothing.)"""
    from searchrun.artifacts import ArtifactError

    r = RunReconciler(failed, failed, OperatorConfig(), "ns", "run", UID, EventSink())
    monkeypatch.setattr(resumes, "read_log", lambda store, uid: (_ for _ in ()).throw(ArtifactError("S3 is down")))
    with pytest.raises(ArtifactError):
        r.load()
    assert r.spec is None and r.status is None  # so the daemon's next pass loads again


def test_the_command_refuses_an_unknown_budget_field_before_it_calls_the_api(capsys, tmp_path):
    from searchrun.cli import main

    assert main(["retry", "some-run", "--budget", "maxJobs=3", "--kubeconfig", str(tmp_path / "none")]) == 2
    assert "error: --budget maxJobs: not a budget field" in capsys.readouterr().err
    assert main(["retry", "some-run", "--kubeconfig", str(tmp_path / "none")]) == 2
    assert f"--kubeconfig {tmp_path / 'none'}" in capsys.readouterr().err
