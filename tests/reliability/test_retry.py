"""`searchrun retry` on the cluster: a failed run resumed (the operator SIGKILLed during the resume
too), a budget-stopped run resumed with a raised budget, and the refusals. The steps that had
succeeded keep their Jobs (no new one); each step planned again gets one Job in the new epoch."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from searchrun.executors.kube.jobs import job_name
from searchrun.retry import RETRY_ANNOTATION
from support.fake_openai import FakeOpenAI
from support.reliability import JobRecorder, figure
from support.runs import EXAMPLES, REPO, apply, get_run, manifest, run_jobs, wait_finished

pytestmark = [pytest.mark.cluster, pytest.mark.s3]

TRAVERSE = "together with the path and the note that led here"
SIMPLE = "For each document say whether it answers the query"


@pytest.fixture
def llm(cluster):
    server = FakeOpenAI(cluster.host_ip or "127.0.0.1")
    # a deep run: two seeds, each a leaf (the fake proposes no children)
    server.model = lambda p: {"intent": "deep", "reason": "test"} if "Classify this search query" in p else None
    yield server
    server.close()


def deep_openai(name: str, base_url: str, **overrides) -> dict:
    doc = manifest(EXAMPLES / "searchrun.yaml", agent={"type": "openai", "baseURL": base_url, "model": "fake-model",
                                                       "requestTimeoutSeconds": 60},
                   budget__maxAgents=2, budget__maxSteps=10, budget__maxParallel=2, steps__retries=0, **overrides)
    doc["metadata"]["name"] = name
    return doc


def searchrun_cli(cluster, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "searchrun", "retry", *args, "--kubeconfig", cluster.kubeconfig],
                          capture_output=True, text=True, timeout=timeout, cwd=REPO)


def jobs_by_epoch(cluster, ns: str, uid: str) -> dict[str, list[str]]:
    """Job names of the run, grouped by epoch ('r0' for the run as created)."""
    out: dict[str, list[str]] = {}
    token = job_name(uid, "x")[:-1]  # sr-<uid>-
    for j in run_jobs(cluster, ns, uid):
        rest = j["metadata"]["name"][len(token):]
        epoch = rest.split("-", 1)[0] if rest[:1] == "r" and rest.split("-", 1)[0][1:].isdigit() else "r0"
        out.setdefault(epoch, []).append(j["metadata"]["labels"]["searchrun.dev/step-id"])
    return out


def assert_one_job_per_step_per_epoch(cluster, ns: str, run: dict, must_keep: set[str]) -> None:
    """Each step has one Job per epoch; a kept step (``keptFrom``) none in the new epoch, its lineage
    naming its old Job; every other step's Job is the new epoch's."""
    uid, st = run["metadata"]["uid"], run["status"]
    kept = {s["id"] for s in st["steps"] if s.get("keptFrom")}
    assert must_keep <= kept, f"not kept: {sorted(must_keep - kept)}"
    by_epoch = jobs_by_epoch(cluster, ns, uid)
    for epoch, steps in by_epoch.items():
        assert len(steps) == len(set(steps)), f"epoch {epoch}: a step has two Jobs: {sorted(steps)}"
    new = set(by_epoch.get("r1", []))
    assert not new & kept, f"steps kept by the resume got a new Job: {sorted(new & kept)}"
    steps = {s["id"]: s for s in st["steps"]}
    jobs = {j["metadata"]["name"] for j in run_jobs(cluster, ns, uid)}
    for sid, s in steps.items():
        if s["phase"] == "Skipped":
            continue
        assert s.get("job") in jobs, f"{sid}: its Job {s.get('job')} does not exist"
        if sid in kept:
            assert s.get("keptFrom", {}).get("run") == uid and s["job"] == job_name(uid, sid), s
        else:
            assert s["job"] == job_name(f"{uid}-r1", sid), s


def test_a_failed_run_is_retried_and_succeeds_keeping_the_steps_that_succeeded(cluster, operator, run_ns, llm):
    llm.refuse = lambda p: TRAVERSE in p or SIMPLE in p  # every traversal and the fallback fail
    apply(cluster, run_ns, deep_openai("failed-then-retried", llm.base_url))
    run = wait_finished(cluster, run_ns, "failed-then-retried", operator)
    st = run["status"]
    assert st["phase"] == "Failed", st.get("message")
    before = {s["id"]: s["phase"] for s in st["steps"]}
    kept = {sid for sid, p in before.items() if p == "Succeeded"}
    assert kept == {"detect", "plan"} and {before["t0"], before["t1"]} == {"Failed"}, before
    requests_before = len(llm.requests)

    llm.refuse = None  # the agent works again
    t0 = time.monotonic()
    r = searchrun_cli(cluster, "failed-then-retried", "-n", run_ns)
    assert r.returncode == 0, r.stderr
    figure("retry: `searchrun retry` until the operator answered (s)", round(time.monotonic() - t0, 1))
    assert "resumed as epoch 1" in r.stdout and "3 failed or skipped step(s) planned again" in r.stdout, r.stdout
    run = wait_finished(cluster, run_ns, "failed-then-retried", operator)
    st = run["status"]
    assert st["phase"] == "Succeeded", st.get("message")
    assert_one_job_per_step_per_epoch(cluster, run_ns, run, kept)
    rec = st["resumes"][-1]
    assert (rec["epoch"], rec["fromPhase"], rec["fromRun"], sorted(rec["replanned"])) == \
        (1, "Failed", run["metadata"]["uid"], ["simple", "t0", "t1"]), rec
    assert rec["by"] == "searchrun-retry" and rec["token"] == run["metadata"]["annotations"][RETRY_ANNOTATION]
    # the kept steps asked the model nothing again
    asked = [q["prompt"] for q in llm.requests[requests_before:]]
    assert not any("Classify this search query" in p or "best places to start" in p for p in asked)
    story = cluster.kubectl("-n", run_ns, "describe", "sr", "failed-then-retried").stdout
    assert "RunResumed" in story, story[-2000:]

    # a retry of a run that Succeeded with nothing left is refused
    r = searchrun_cli(cluster, "failed-then-retried", "-n", run_ns)
    assert r.returncode == 2 and "nothing to resume" in r.stderr, (r.stdout, r.stderr)
    assert len(get_run(cluster, run_ns, "failed-then-retried")["status"]["resumes"]) == 1


def test_operator_sigkilled_during_the_resume_leaves_no_duplicate_job(cluster, operator, run_ns, llm):
    llm.refuse = lambda p: TRAVERSE in p or SIMPLE in p
    apply(cluster, run_ns, deep_openai("killed-in-resume", llm.base_url))
    run = wait_finished(cluster, run_ns, "killed-in-resume", operator)
    assert run["status"]["phase"] == "Failed"
    uid = run["metadata"]["uid"]
    llm.refuse, llm.delay_seconds = None, 3  # the resumed traversals take a while
    with JobRecorder(cluster, run_ns) as rec:
        r = searchrun_cli(cluster, "killed-in-resume", "-n", run_ns, "--wait", "0")
        assert r.returncode == 0, r.stderr
        operator.kill()  # at once: the token may or may not be recorded yet
        operator.start()
        deadline = time.monotonic() + 120
        while not any(n.startswith(job_name(f"{uid}-r1", "")) for n in rec.uids):
            assert time.monotonic() < deadline, f"no Job of the resumed epoch: {operator.log_tail()}"
            time.sleep(0.2)
        operator.kill()  # again, with the resumed epoch's Jobs running
        time.sleep(2)
        operator.start()
        run = wait_finished(cluster, run_ns, "killed-in-resume", operator, timeout=300)
        time.sleep(2)
    st = run["status"]
    assert st["phase"] == "Succeeded", st.get("message")
    assert not rec.duplicates(), f"a Job was created twice: {rec.duplicates()}"
    assert len(st["resumes"]) == 1, st["resumes"]
    assert_one_job_per_step_per_epoch(cluster, run_ns, run, {"detect", "plan"})


def test_a_budget_stopped_run_resumed_with_a_raised_budget_goes_on(cluster, operator, run_ns):
    doc = manifest(EXAMPLES / "searchrun.yaml", budget__maxAgents=2, budget__maxFanoutPerNode=1, budget__maxSteps=6,
                   budget__maxParallel=2)
    doc["metadata"]["name"] = "budget-stopped"
    apply(cluster, run_ns, doc)
    run = wait_finished(cluster, run_ns, "budget-stopped", operator)
    st = run["status"]
    assert st["stoppedBy"] == "maxSteps", (st["phase"], st.get("stoppedBy"), st.get("message"))
    before = {s["id"]: s for s in st["steps"]}
    kept = {sid for sid, s in before.items() if s["phase"] == "Succeeded" and s["type"] not in ("create_report",)}

    r = searchrun_cli(cluster, "budget-stopped", "-n", run_ns)  # not raised: it would stop at once again
    assert r.returncode == 2 and "stopped by budget.maxSteps (6)" in r.stderr and "--budget maxSteps=12" in r.stderr, r.stderr
    r = searchrun_cli(cluster, "budget-stopped", "-n", run_ns, "--budget", "maxSteps=12")
    assert r.returncode == 0, r.stderr
    run = wait_finished(cluster, run_ns, "budget-stopped", operator)
    st = run["status"]
    assert run["spec"]["budget"]["maxSteps"] == 12
    assert st["phase"] == "Succeeded", st.get("message")
    assert st["resumes"][-1]["budget"] == {"maxSteps": [6, 12]}
    after = {s["id"]: s for s in st["steps"]}
    new_traversals = [sid for sid, s in after.items() if s["type"] == "traverse_node" and s["depth"] == 2]
    assert new_traversals, f"the raised budget planned no deeper step: {sorted(after)}"
    figure("retry: budget-stopped run, steps before/after the resume", f"{len(before)}/{len(after)}")
    # the seed plan and the traversals are kept; the deeper steps and the report run in the new epoch
    assert {"detect", "plan", "t0", "t1"} <= kept
    assert_one_job_per_step_per_epoch(cluster, run_ns, run, {"detect", "plan", "t0", "t1"})


def test_bad_retries_are_refused_naming_the_reason(cluster, operator, run_ns, llm):
    r = searchrun_cli(cluster, "no-such-run", "-n", run_ns)
    assert r.returncode == 2 and "'no-such-run' not found" in r.stderr, r.stderr

    llm.delay_seconds = 5  # keeps the run Running for a while; then it fails (a run that may be retried)
    llm.refuse = lambda p: TRAVERSE in p or SIMPLE in p
    apply(cluster, run_ns, deep_openai("still-running", llm.base_url))
    deadline = time.monotonic() + 120
    while (get_run(cluster, run_ns, "still-running").get("status") or {}).get("phase") != "Running":
        assert time.monotonic() < deadline
        time.sleep(0.3)
    r = searchrun_cli(cluster, "still-running", "-n", run_ns)
    assert r.returncode == 2 and "the run is still Running" in r.stderr, r.stderr
    # around the command, straight to the API: admission refuses it too
    patch = json.dumps({"metadata": {"annotations": {RETRY_ANNOTATION: "abc123"}}})
    p = cluster.kubectl("-n", run_ns, "patch", "sr", "still-running", "--type", "merge", "-p", patch, check=False)
    assert p.returncode != 0 and "the run is still Running" in p.stderr, p.stderr
    llm.delay_seconds = 0
    run = wait_finished(cluster, run_ns, "still-running", operator)
    assert run["status"]["phase"] == "Failed"

    r = searchrun_cli(cluster, "still-running", "-n", run_ns, "--budget", "maxJobs=3")
    assert r.returncode == 2 and "--budget maxJobs: not a budget field" in r.stderr, r.stderr
    r = searchrun_cli(cluster, "still-running", "-n", run_ns, "--budget", "maxSteps=100")  # the test cap is 60
    assert r.returncode == 2 and "spec.budget.maxSteps: 100 exceeds the cluster's limit of 60" in r.stderr, r.stderr
    assert get_run(cluster, run_ns, "still-running")["spec"]["budget"]["maxSteps"] == run["spec"]["budget"]["maxSteps"]
    # a budget edit without a retry token stays refused (the spec is immutable)
    p = cluster.kubectl("-n", run_ns, "patch", "sr", "still-running", "--type", "merge", "-p",
                        '{"spec":{"budget":{"maxSteps":20}}}', check=False)
    assert p.returncode != 0 and "immutable" in p.stderr, p.stderr
