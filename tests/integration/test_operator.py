"""The operator against a real cluster and a real S3 server: runs, admission, crash safety, failures.

The operator runs as a process on this machine (as a developer runs it); its step
Jobs run as real pods on the cluster's kubelet and write to the S3 server over HTTP.
"""

from __future__ import annotations

import tempfile
import time
import uuid
from pathlib import Path

import pytest

from support.operator_process import Operator
from support.runs import (TEST_OPERATOR_CONFIG, apply, assert_budgets_hold, assert_jobs_match_lineage, get_run, manifest,
                          run_jobs, s3_object, wait_finished)
from support.s3server import S3Server, free_port
from support.session import label_args, namespace_prefix

pytestmark = [pytest.mark.cluster, pytest.mark.s3]

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
BUCKET = "searchrun"
NS_PREFIX = namespace_prefix("srop")  # the operator under test watches only these namespaces


@pytest.fixture(scope="module")
def cluster_s3(cluster):
    """An S3 server on the cluster bridge, so that step pods reach it."""
    host = cluster.host_ip or "127.0.0.1"
    log = Path(tempfile.mkdtemp(prefix="searchrun-s3-")) / "s3-server.log"
    server = S3Server(host, free_port(host), log)
    server.start()
    server.client().create_bucket(Bucket=BUCKET)
    yield server
    server.close()


@pytest.fixture(scope="module")
def operator(cluster, cluster_s3, tmp_path_factory):
    cluster.kubectl("apply", "-f", str(REPO / "crds"))
    cluster.kubectl("wait", "--for=condition=Established", "crd/searchruns.searchrun.dev", "--timeout=60s")
    op = Operator(cluster, cluster_s3, TEST_OPERATOR_CONFIG, tmp_path_factory.mktemp("operator"), namespaces=f"{NS_PREFIX}*", bucket=BUCKET)
    op.start()
    try:
        yield op
    finally:
        op.stop()
        op.delete_webhook_configurations()


@pytest.fixture
def run_ns(cluster, cluster_s3):
    """A fresh namespace with the Secret step pods read their S3 credentials from."""
    namespace = f"{NS_PREFIX}{uuid.uuid4().hex[:8]}"
    cluster.kubectl("create", "namespace", namespace)
    cluster.kubectl("label", "namespace", namespace, *label_args())
    cluster.kubectl("-n", namespace, "create", "secret", "generic", "searchrun-s3",
                    f"--from-literal=AWS_ACCESS_KEY_ID={cluster_s3.access_key}",
                    f"--from-literal=AWS_SECRET_ACCESS_KEY={cluster_s3.secret_key}")
    yield namespace
    cluster.kubectl("delete", "namespace", namespace, "--wait=false", check=False)


def test_example_runs_complete_with_jobs_matching_lineage(cluster, operator, run_ns, cluster_s3):
    apply(cluster, run_ns, manifest(EXAMPLES / "searchrun.yaml"))
    apply(cluster, run_ns, manifest(EXAMPLES / "searchrun-simple.yaml"))
    deep = wait_finished(cluster, run_ns, "quantum-ml", operator)
    simple = wait_finished(cluster, run_ns, "what-is-bm25", operator)

    for run in (deep, simple):
        assert run["status"]["phase"] == "Succeeded", run["status"].get("message")
        assert_jobs_match_lineage(cluster, run_ns, run)
        assert_budgets_hold(run)
        html = s3_object(cluster_s3, run["status"]["reportURI"]).decode()
        assert run["spec"]["query"].split()[0] in html and "<svg" in html

    assert deep["status"]["intent"] == "deep"
    assert any(s["type"] == "traverse_node" and s["depth"] == 2 for s in deep["status"]["steps"])
    assert any(s["type"] == "aggregate_results" for s in deep["status"]["steps"])
    assert simple["status"]["intent"] == "simple"
    assert [s["type"] for s in simple["status"]["steps"]] == ["detect_intent", "simple_search", "create_report"]

    table = cluster.kubectl("-n", run_ns, "get", "sr").stdout
    assert table.split()[:8] == ["NAME", "PHASE", "INTENT", "STEPS", "DEPTH", "TOKENS", "COST", "AGE"]
    assert "quantum-ml" in table and "Succeeded" in table
    story = cluster.kubectl("-n", run_ns, "describe", "sr", "quantum-ml").stdout
    for reason in ("IntentDetected", "FanOut", "RunFinished"):
        assert reason in story, story[-3000:]

    m = operator.metrics()
    assert 'searchrun_steps_created_total{step_type="traverse_node"}' in m
    assert f'searchrun_tokens_total{{namespace="{run_ns}"}}' in m


def test_admission_rejects_with_field_and_limit_and_clamps_with_warning(cluster, operator, run_ns):
    over = manifest(EXAMPLES / "searchrun.yaml", budget__maxAgents=7)
    over["metadata"]["name"] = "too-many-agents"
    r = apply(cluster, run_ns, over, check=False)
    assert r.returncode != 0
    assert "spec.budget.maxAgents: 7 exceeds the cluster's limit of 5" in r.stderr

    local = manifest(EXAMPLES / "searchrun.yaml", corpus__uri="/data/corpus.json")
    local["metadata"]["name"] = "local-corpus"
    r = apply(cluster, run_ns, local, check=False)
    assert r.returncode != 0 and "spec.corpus.uri" in r.stderr

    schema = manifest(EXAMPLES / "searchrun.yaml", budget__maxDepth=9)
    schema["metadata"]["name"] = "too-deep"
    r = apply(cluster, run_ns, schema, check=False)
    assert r.returncode != 0 and "spec.budget.maxDepth" in r.stderr and "5" in r.stderr

    clamped = manifest(EXAMPLES / "searchrun-simple.yaml", budget__maxParallel=50)
    clamped["metadata"]["name"] = "clamped"
    r = apply(cluster, run_ns, clamped)
    assert "spec.budget.maxParallel clamped from 50 to 4" in r.stderr
    assert get_run(cluster, run_ns, "clamped")["spec"]["budget"]["maxParallel"] == 4

    r = cluster.kubectl("-n", run_ns, "patch", "sr", "clamped", "--type", "merge", "-p", '{"spec":{"query":"something else"}}', check=False)
    assert r.returncode != 0 and "immutable" in r.stderr
    assert 'searchrun_admission_rejections_total{reason="cap"}' in operator.metrics()
    wait_finished(cluster, run_ns, "clamped", operator)


def test_operator_killed_mid_fanout_resumes_without_duplicate_jobs(cluster, operator, run_ns):
    doc = manifest(EXAMPLES / "searchrun.yaml", budget__maxParallel=2)
    apply(cluster, run_ns, doc)
    deadline = time.monotonic() + 180
    uid = None
    while time.monotonic() < deadline:
        run = get_run(cluster, run_ns, "quantum-ml")
        uid = run["metadata"]["uid"]
        if any(s["type"] == "traverse_node" and s["phase"] == "Running" for s in (run.get("status") or {}).get("steps", [])):
            break
        time.sleep(0.3)
    else:
        raise AssertionError(f"no traversal started: {operator.log_tail()}")
    operator.kill()
    time.sleep(3)  # Jobs finish while nobody watches
    operator.start()
    run = wait_finished(cluster, run_ns, "quantum-ml", operator)
    assert run["status"]["phase"] == "Succeeded", run["status"].get("message")
    assert_jobs_match_lineage(cluster, run_ns, run)
    assert all(s["phase"] in ("Succeeded", "Skipped") for s in run["status"]["steps"])
    assert len(run_jobs(cluster, run_ns, uid)) == len([s for s in run["status"]["steps"] if s["phase"] != "Skipped"])


def test_failing_step_is_retried_then_the_run_fails_with_the_reason(cluster, operator, run_ns, cluster_s3):
    key = f"corpora/{uuid.uuid4().hex}.json"
    cluster_s3.client().put_object(Bucket=BUCKET, Key=key, Body=b'{"documents": {"a": ')  # truncated JSON
    doc = manifest(EXAMPLES / "searchrun-simple.yaml", corpus__uri=f"s3://{BUCKET}/{key}", steps__retries=1)
    apply(cluster, run_ns, doc)
    run = wait_finished(cluster, run_ns, "what-is-bm25", operator)
    st = run["status"]
    assert st["phase"] == "Failed"
    steps = {s["id"]: s for s in st["steps"]}
    assert steps["detect"]["phase"] == "Failed" and steps["detect"]["attempts"] == 2
    assert st["fallback"] == "detect_intent failed"
    assert steps["simple"]["phase"] == "Failed"
    assert "simple_search failed" in st["message"] and "JSON" in st["message"]
    jobs = {j["metadata"]["labels"]["searchrun.dev/step-id"]: j for j in run_jobs(cluster, run_ns, run["metadata"]["uid"])}
    assert jobs["detect"]["status"]["failed"] == 2, "backoffLimit 1: two pods"
    story = cluster.kubectl("-n", run_ns, "describe", "sr", "what-is-bm25").stdout
    assert "StepFailed" in story and "FallbackToSimple" in story


def test_deleting_a_run_deletes_its_jobs_and_pods_but_keeps_artifacts(cluster, operator, run_ns, cluster_s3):
    apply(cluster, run_ns, manifest(EXAMPLES / "searchrun-simple.yaml"))
    run = wait_finished(cluster, run_ns, "what-is-bm25", operator)
    uid = run["metadata"]["uid"]
    assert run_jobs(cluster, run_ns, uid)
    cluster.kubectl("-n", run_ns, "delete", "sr", "what-is-bm25", "--wait=true", "--timeout=60s")
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        jobs = run_jobs(cluster, run_ns, uid)
        pods = cluster.kubectl_json("-n", run_ns, "get", "pods", "-l", f"searchrun.dev/run-uid={uid}")["items"]
        if not jobs and not pods:
            break
        time.sleep(1)
    else:
        raise AssertionError(f"Jobs or pods survived their SearchRun: {[j['metadata']['name'] for j in jobs]}")
    assert s3_object(cluster_s3, run["status"]["reportURI"]), "artifacts stay unless the run asked for cleanup"
