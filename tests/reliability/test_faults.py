"""Faults: the operator SIGKILLed and restarted, S3 unreachable, a step's pod deleted, the API
server restarted, the admission webhook down. Each test checks behaviour and prints figures
(recovery times); none asserts on a time."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time
from pathlib import Path

import pytest

from searchrun.executors.kube.jobs import job_name
from support.fake_openai import FakeOpenAI
from support.reliability import JobRecorder, figure
from support.session import WEBHOOK_CONFIG
from support.runs import (BUCKET, EXAMPLES, apply, assert_budgets_hold, assert_jobs_match_lineage, get_run, manifest,
                          run_jobs, wait_finished)

pytestmark = [pytest.mark.cluster, pytest.mark.s3]


def _named(path: Path, name: str, **overrides) -> dict:
    doc = manifest(path, **overrides)
    doc["metadata"]["name"] = name
    return doc


def small_deep(name: str, **overrides) -> dict:
    """A deep run of about 8 steps: 2 seeds, one child each."""
    small = dict(budget__maxAgents=2, budget__maxFanoutPerNode=1, budget__maxSteps=10, budget__maxParallel=2)
    return _named(EXAMPLES / "searchrun.yaml", name, **{**small, **overrides})


def apply_all(cluster, ns: str, docs: list[dict]) -> None:
    cluster.kubectl("-n", ns, "apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": docs}))


def wait_all(cluster, ns: str, names: list[str], op, timeout: float = 420) -> dict[str, dict]:
    deadline = time.monotonic() + timeout
    while True:
        items = cluster.kubectl_json("-n", ns, "get", "searchruns")["items"]
        runs = {r["metadata"]["name"]: r for r in items}
        if all((runs.get(n, {}).get("status") or {}).get("phase") in ("Succeeded", "Failed") for n in names):
            return runs
        if time.monotonic() > deadline:
            left = {n: (runs.get(n, {}).get("status") or {}).get("phase") for n in names}
            raise AssertionError(f"runs not finished in {timeout}s: {left}\n{op.log_tail()}")
        time.sleep(1)


def wait_step(cluster, ns: str, name: str, pred, timeout: float = 180) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = get_run(cluster, ns, name)
        if any(pred(s) for s in (run.get("status") or {}).get("steps", [])):
            return run
        time.sleep(0.3)
    raise AssertionError(f"{name}: no step matched in {timeout}s: {json.dumps(run.get('status'))[:2000]}")


def assert_results_kept(s3, run: dict) -> None:
    """Every step that succeeded has its output and its result.json in the store, and the
    status adds up to what the steps report."""
    from searchrun.artifacts import step_key

    uid, st = run["metadata"]["uid"], run["status"]
    tokens = 0
    for s in st["steps"]:
        if s["phase"] != "Succeeded":
            continue
        assert s.get("output", "").startswith(f"s3://{BUCKET}/runs/{uid}/"), s
        key = s["output"][len(f"s3://{BUCKET}/"):]
        s3.client().head_object(Bucket=BUCKET, Key=key)
        s3.client().head_object(Bucket=BUCKET, Key=step_key(uid, s["id"], 1, "result.json"))
        tokens += s.get("tokens", 0)
    assert st["tokens"] == tokens, "status tokens == the sum of the steps' tokens"


# ------------------------------------------------------------------ operator SIGKILL


def test_operator_sigkilled_at_random_points_of_10_runs(cluster, operator, run_ns, rel_s3):
    """10 runs (6 simple, 4 deep); the operator is SIGKILLed at random moments and restarted
    until they are all done. Every run finishes, every Job name was created once (one uid per
    name over the whole test, seen by a watch), and every step's result is in the store."""
    seed = int(os.environ.get("SEARCHRUN_FAULT_SEED", random.randrange(1 << 30)))
    rng = random.Random(seed)
    figure("sigkill: random seed (SEARCHRUN_FAULT_SEED)", seed)
    docs = [_named(EXAMPLES / "searchrun-simple.yaml", f"simple-{i}", budget__maxParallel=1) for i in range(6)]
    docs += [small_deep(f"deep-{i}") for i in range(4)]
    names = [d["metadata"]["name"] for d in docs]
    kills: list[float] = []
    restart_seconds: list[float] = []
    with JobRecorder(cluster, run_ns) as rec:
        t0 = time.monotonic()
        apply_all(cluster, run_ns, docs)
        while len(kills) < 8:
            time.sleep(rng.uniform(0.5, 7.0))
            phases = [(r.get("status") or {}).get("phase") for r in cluster.kubectl_json("-n", run_ns, "get", "sr")["items"]]
            if all(p in ("Succeeded", "Failed") for p in phases):
                break
            operator.kill()
            kills.append(round(time.monotonic() - t0, 1))
            time.sleep(rng.uniform(0.0, 4.0))  # Jobs go on while nobody watches
            t1 = time.monotonic()
            operator.start()
            restart_seconds.append(time.monotonic() - t1)
        runs = wait_all(cluster, run_ns, names, operator)
        elapsed = time.monotonic() - t0
        time.sleep(2)  # let the recorder see the last events
    figure("sigkill: kills at seconds", kills)
    figure("sigkill: operator restart to ready (s), mean/max",
           f"{sum(restart_seconds) / max(1, len(restart_seconds)):.1f}/{max(restart_seconds, default=0):.1f}")
    figure("sigkill: 10 runs finished in (s)", round(elapsed, 1))
    assert kills, "the operator was never killed"

    assert not rec.duplicates(), f"a Job was created twice: {rec.duplicates()}"
    per_step: dict[tuple[str, str], int] = {}
    for name, labels in rec.labels.items():
        key = (labels.get("searchrun.dev/run-uid"), labels.get("searchrun.dev/step-id"))
        per_step[key] = per_step.get(key, 0) + len(rec.uids[name])
    assert set(per_step.values()) == {1}, f"Jobs per step: {per_step}"
    total_steps = 0
    for name in names:
        run = runs[name]
        assert run["status"]["phase"] == "Succeeded", (name, run["status"].get("message"))
        assert_jobs_match_lineage(cluster, run_ns, run)
        assert_budgets_hold(run)
        assert_results_kept(rel_s3, run)
        steps = [s for s in run["status"]["steps"] if s["phase"] != "Skipped"]
        assert all(s["phase"] == "Succeeded" for s in steps), [(s["id"], s["phase"], s.get("message")) for s in steps]
        total_steps += len(steps)
    assert len(rec.uids) == total_steps, "every Job the API server ever held is a step of the lineage"
    figure("sigkill: steps (Jobs) over the 10 runs", total_steps)


# ------------------------------------------------------------------ S3 outage


def test_s3_unreachable_for_30s_mid_run(cluster, operator, run_ns, rel_s3):
    """S3 (as step pods and the operator reach it) refuses connections for 30 s while
    traversals run. Steps retry (their Job's pod retries); the run finishes, or fails with a
    reason that names the store."""
    doc = small_deep("s3-outage", steps__retries=3, budget__maxSteps=12)
    apply(cluster, run_ns, doc)
    wait_step(cluster, run_ns, "s3-outage", lambda s: s["type"] == "traverse_node" and s["phase"] == "Running")
    rel_s3.proxy.down()
    t_down = time.monotonic()
    try:
        time.sleep(30)
    finally:
        rel_s3.proxy.up()
    t_up = time.monotonic()
    run = wait_finished(cluster, run_ns, "s3-outage", operator, timeout=420)
    t_done = time.monotonic()
    st = run["status"]
    jobs = run_jobs(cluster, run_ns, run["metadata"]["uid"])
    failed_pods = sum(int((j.get("status") or {}).get("failed") or 0) for j in jobs)
    retried = sorted(s["id"] for s in st["steps"] if s.get("attempts", 0) > 1)
    figure("s3 outage: outage (s)", round(t_up - t_down, 1))
    figure("s3 outage: run finished after S3 came back (s)", round(t_done - t_up, 1))
    figure("s3 outage: step pods that failed and were retried", failed_pods)
    figure("s3 outage: steps with more than one attempt", retried)
    figure("s3 outage: outcome", f"{st['phase']}: {st.get('message')}")
    assert operator.proc.poll() is None, "the operator survived the outage"
    if st["phase"] == "Succeeded":
        assert_jobs_match_lineage(cluster, run_ns, run)
        assert_results_kept(rel_s3, run)
        failed = {j["metadata"]["name"]: int((j.get("status") or {}).get("failed") or 0) for j in jobs}
        for s in st["steps"]:
            if s.get("job"):
                assert s["attempts"] == 1 + failed[s["job"]], (s, failed)  # each retried pod counted once
        # a step that succeeded on a retried pod says why the earlier pod failed (from its termination message)
        told = [s["message"] for s in st["steps"] if s.get("attempts", 0) > 1 and s["phase"] == "Succeeded"]
        figure("s3 outage: message of a step retried by its Job", told[:1])
        assert all(m and m.startswith("succeeded on attempt ") and len(m.split("failed: ", 1)[-1]) > 5 for m in told), told
    else:
        assert any(w in (st.get("message") or "") for w in ("s3", "S3", "artifact", "Could not connect")), st.get("message")


# ------------------------------------------------------------------ pod deleted mid-step


@pytest.fixture
def fake_llm(cluster):
    server = FakeOpenAI(cluster.host_ip or "127.0.0.1")
    yield server
    server.close()


def openai_simple(name: str, base_url: str, **overrides) -> dict:
    return _named(EXAMPLES / "searchrun-simple.yaml", name,
                  agent={"type": "openai", "baseURL": base_url, "model": "fake-model", "requestTimeoutSeconds": 60},
                  **overrides)


def test_step_pod_deleted_mid_step_is_retried_and_counted_once(cluster, operator, run_ns, fake_llm):
    """detect_intent's pod is deleted while it waits for the model: the Job makes a new pod,
    the step succeeds, and its attempts say 2 (the deleted pod counted once)."""
    fake_llm.delay_seconds = 10
    apply(cluster, run_ns, openai_simple("pod-deleted", fake_llm.base_url))
    run = wait_step(cluster, run_ns, "pod-deleted", lambda s: s["id"] == "detect" and s["phase"] == "Running")
    job = job_name(run["metadata"]["uid"], "detect")
    deadline = time.monotonic() + 120
    while not fake_llm.requests:  # the step is mid-step: it asked the model and waits for the answer
        assert time.monotonic() < deadline, "the step never called the model"
        time.sleep(0.2)
    pods = cluster.kubectl_json("-n", run_ns, "get", "pods", "-l", f"job-name={job}")["items"]
    assert len(pods) == 1, [p["metadata"]["name"] for p in pods]  # (its phase may still say Pending: the kubelet reports late)
    assert "Classify this search query" in fake_llm.requests[0]["prompt"]
    t_del = time.monotonic()
    # (a short grace period: the step's python is PID 1 without a SIGTERM handler, so it would sit out 30 s)
    cluster.kubectl("-n", run_ns, "delete", "pod", pods[0]["metadata"]["name"], "--grace-period=2", "--wait=false")
    fake_llm.delay_seconds = 0
    run = wait_finished(cluster, run_ns, "pod-deleted", operator, timeout=300)
    figure("pod deleted: run finished after the delete (s)", round(time.monotonic() - t_del, 1))
    st = run["status"]
    assert st["phase"] == "Succeeded", st.get("message")
    detect = next(s for s in st["steps"] if s["id"] == "detect")
    j = cluster.kubectl_json("-n", run_ns, "get", "job", job)
    figure("pod deleted: Job status", {k: j["status"].get(k) for k in ("failed", "succeeded", "terminating")})
    assert j["status"].get("succeeded") == 1 and j["status"].get("failed") == 1, j["status"]
    assert detect["phase"] == "Succeeded" and detect["attempts"] == 2, detect
    assert [s["attempts"] for s in st["steps"] if s["id"] != "detect"] == [1, 1]
    assert_jobs_match_lineage(cluster, run_ns, run)


# ------------------------------------------------------------------ API server restart


def _apiserver_state(cluster) -> Path | None:
    kc = cluster.info.get("KUBECONFIG")
    if not kc:
        return None
    state = Path(kc).parent
    return state if (state / "pids" / "kube-apiserver.pid").is_file() else None


def restart_apiserver(cluster) -> tuple[float, float]:
    """Stop the local cluster's kube-apiserver (SIGTERM, SIGKILL after 10 s; by the pid in its state
    dir) and start it again with the same command line, log and pid file (as hack/local-cluster.sh does).
    Returns (seconds until it stopped, seconds from stop to /readyz)."""
    state = _apiserver_state(cluster)
    pid_file = state / "pids" / "kube-apiserver.pid"
    pid = int(pid_file.read_text().strip())
    argv = Path(f"/proc/{pid}/cmdline").read_bytes().rstrip(b"\0").split(b"\0")
    assert Path(argv[0].decode()).name == "kube-apiserver", argv[:1]
    t0 = time.monotonic()
    os.kill(pid, signal.SIGTERM)  # it stops listening at once, then waits up to 60 s for open watches:
    while Path(f"/proc/{pid}").exists():
        if time.monotonic() - t0 > 10:  # ... 10 s of that is enough of an outage
            os.kill(pid, signal.SIGKILL)
        time.sleep(0.1)
    t_stopped = time.monotonic()
    with open(state / "logs" / "kube-apiserver.log", "ab") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    pid_file.write_text(f"{proc.pid}\n")
    proc.returncode = 0  # it belongs to the cluster now (its `down` stops it by the pid file); no ResourceWarning
    while cluster.kubectl("get", "--raw", "/readyz", check=False, timeout=10).returncode != 0:
        assert time.monotonic() - t_stopped < 180, "kube-apiserver not ready 180 s after a restart"
        time.sleep(0.5)
    return t_stopped - t0, time.monotonic() - t_stopped


@pytest.mark.cluster_exclusive
def test_api_server_restarted_mid_run(cluster_to_itself, operator, run_ns, rel_s3):
    cluster = cluster_to_itself
    if _apiserver_state(cluster) is None:
        pytest.skip("restarting the API server needs the local cluster (hack/local-cluster.sh)")
    apply(cluster, run_ns, small_deep("apiserver-restart"))
    with JobRecorder(cluster, run_ns) as rec:
        wait_step(cluster, run_ns, "apiserver-restart", lambda s: s["type"] == "traverse_node" and s["phase"] == "Running")
        stop_s, down_s = restart_apiserver(cluster)
        t_ready = time.monotonic()
        run = wait_finished(cluster, run_ns, "apiserver-restart", operator, timeout=300)
        figure("apiserver restart: SIGTERM to exit (SIGKILL after 10 s) (s)", round(stop_s, 1))
        figure("apiserver restart: exit to /readyz (s)", round(down_s, 1))
        figure("apiserver restart: run finished after /readyz (s)", round(time.monotonic() - t_ready, 1))
        time.sleep(2)
    assert operator.proc.poll() is None, "the operator survived the API server restart"
    assert run["status"]["phase"] == "Succeeded", run["status"].get("message")
    assert_jobs_match_lineage(cluster, run_ns, run)
    assert_results_kept(rel_s3, run)
    assert not rec.duplicates(), rec.duplicates()


# ------------------------------------------------------------------ webhook down


def test_webhook_down_fails_closed_and_the_schema_still_validates(cluster, operator, run_ns):
    """kopf's managed webhook configurations use failurePolicy Fail: with no operator to answer,
    creating a SearchRun is refused with an error that names the webhook. Switched to Ignore (the
    alternative we did not choose) the CRD schema still rejects invalid fields, but the cluster's
    caps are no longer enforced: the reason for Fail."""
    for kind in ("validatingwebhookconfiguration", "mutatingwebhookconfiguration"):
        cfg = cluster.kubectl_json("get", kind, WEBHOOK_CONFIG)
        assert {w["failurePolicy"] for w in cfg["webhooks"]} == {"Fail"}, cfg["webhooks"]
    ok = _named(EXAMPLES / "searchrun-simple.yaml", "while-down")
    over_cap = _named(EXAMPLES / "searchrun-simple.yaml", "over-cap", budget__maxAgents=7, budget__maxSteps=20)  # cap 5, schema max 10
    bad = _named(EXAMPLES / "searchrun-simple.yaml", "bad-schema", budget__maxDepth=9)       # schema max 5
    operator.kill()
    try:
        r = apply(cluster, run_ns, ok, check=False)
        assert r.returncode != 0
        assert "failed calling webhook" in r.stderr and WEBHOOK_CONFIG in r.stderr, r.stderr
        figure("webhook down: error", r.stderr.strip().splitlines()[-1][:300])
        assert cluster.kubectl("-n", run_ns, "get", "sr", "while-down", check=False).returncode != 0, "nothing was created"
        r = apply(cluster, run_ns, bad, check=False)
        # the mutating webhook is called before the schema is checked: the webhook error comes first
        assert r.returncode != 0 and "failed calling webhook" in r.stderr, r.stderr

        for kind in ("validatingwebhookconfiguration", "mutatingwebhookconfiguration"):
            cluster.kubectl("patch", kind, WEBHOOK_CONFIG, "--type=json", "-p",
                            json.dumps([{"op": "replace", "path": "/webhooks/0/failurePolicy", "value": "Ignore"}]))
        r = apply(cluster, run_ns, bad, check=False)
        assert r.returncode != 0 and "spec.budget.maxDepth" in r.stderr, r.stderr
        figure("webhook down + Ignore: schema error", r.stderr.strip().splitlines()[-1][:300])
        r = cluster.kubectl("-n", run_ns, "create", "--dry-run=server", "-f", "-", input=json.dumps(over_cap), check=False)
        assert r.returncode == 0, "with Ignore, a run over the cluster's caps gets in (so we use Fail)"
    finally:
        operator.start()  # kopf puts its configurations back (failurePolicy Fail)
    for kind in ("validatingwebhookconfiguration", "mutatingwebhookconfiguration"):
        cfg = cluster.kubectl_json("get", kind, WEBHOOK_CONFIG)
        assert {w["failurePolicy"] for w in cfg["webhooks"]} == {"Fail"}
    r = cluster.kubectl("-n", run_ns, "create", "--dry-run=server", "-f", "-", input=json.dumps(over_cap), check=False)
    assert r.returncode != 0 and "spec.budget.maxAgents: 7 exceeds the cluster's limit of 5" in r.stderr, r.stderr
    r = cluster.kubectl("-n", run_ns, "create", "--dry-run=server", "-f", "-", input=json.dumps(ok), check=False)
    assert r.returncode == 0, r.stderr
