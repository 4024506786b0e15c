"""Hostile input against the real cluster, with the operator and its webhooks running (issue 15):
a request body over 1 MiB, corpora no step can read, queries of control or invisible characters,
a forged status, a step that fails for good, a step Job deleted by hand."""

from __future__ import annotations

import json
import time

import pytest

from searchrun.api import GROUP, PLURAL, VERSION
from searchrun.steps import EXIT_PERMANENT
from support.fake_openai import FakeOpenAI
from support.reliability import figure
from support.runs import EXAMPLES, apply, get_run, manifest, run_jobs, wait_finished

pytestmark = [pytest.mark.cluster, pytest.mark.s3]


def _named(path, name: str, **overrides) -> dict:
    doc = manifest(path, **overrides)
    doc["metadata"]["name"] = name
    return doc


@pytest.fixture
def fake_llm(cluster):
    server = FakeOpenAI(cluster.host_ip or "127.0.0.1")
    yield server
    server.close()


@pytest.fixture(scope="module")
def custom_api(cluster):
    from kubernetes import client

    return client.CustomObjectsApi(cluster.api_client())


def _rejection(custom_api, ns: str, doc: dict) -> tuple[int, str]:
    """(HTTP status, message) of a server-side dry-run create that must be refused."""
    from kubernetes.client.rest import ApiException

    try:
        custom_api.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, doc, dry_run="All", _request_timeout=60)
    except ApiException as e:
        try:
            return e.status, json.loads(e.body)["message"]
        except (TypeError, ValueError, KeyError):
            return e.status, str(e.body)
    raise AssertionError(f"accepted: {json.dumps(doc)[:300]}")


def _events(cluster, ns: str, name: str, reason: str) -> list[dict]:
    items = cluster.kubectl_json("-n", ns, "get", "events", "--field-selector",
                                 f"involvedObject.name={name},reason={reason}")["items"]
    return items


def _wait(pred, what: str, timeout: float = 120):
    deadline = time.monotonic() + timeout
    while True:
        got = pred()
        if got:
            return got
        assert time.monotonic() < deadline, f"{what}: not within {timeout}s"
        time.sleep(0.5)


# ------------------------------------------------------------------ 2. request bodies over 1 MiB


def test_a_manifest_over_1_mib_gets_the_schemas_error_not_413(custom_api, operator, run_ns):
    """The mutating webhook sees the whole object before the schema's size checks: kopf's aiohttp
    server refused bodies over 1 MiB ("failed calling webhook ... 413"). Now the user sees the
    field's own limit."""
    doc = _named(EXAMPLES / "searchrun-simple.yaml", "huge-query", query="q" * (1200 * 1024))
    status, message = _rejection(custom_api, run_ns, doc)
    figure("1.2 MiB query: API answer", f"{status}: {message[:160]}")
    assert "413" not in message and "failed calling webhook" not in message, message[:500]
    assert status == 422 and "spec.query" in message and "Too long: may not be more than 2000" in message, message[:500]
    # and 2 MiB of annotations: the API server's own limit on them, not the webhook's 413
    doc = _named(EXAMPLES / "searchrun-simple.yaml", "huge-note")
    doc["metadata"]["annotations"] = {"example.com/note": "n" * (2 * 1024 * 1024)}
    status, message = _rejection(custom_api, run_ns, doc)
    assert "413" not in message and "failed calling webhook" not in message, message[:500]
    assert "metadata.annotations" in message and "Too long" in message, message[:500]


# ------------------------------------------------------------------ 3 and 4. unreadable corpora, blank queries


REJECTED = [
    ({"corpus": {"uri": "builtin:../../x"}}, "spec.corpus.uri"),
    ({"corpus": {"uri": "builtin:nope"}}, "spec.corpus.uri"),
    ({"corpus": {"uri": "s3://searchrun/../other-run"}}, "spec.corpus.uri"),
    ({"corpus": {"uri": "s3://searchrun/a/./corpus.json"}}, "spec.corpus.uri"),
    ({"corpus": {"uri": "builtin:sample", "format": "markdown"}}, "corpus.format: markdown"),
    ({"query": "\u200b"}, "spec.query must not be blank"),
    ({"query": "\u200b\ufeff \u3000"}, "spec.query must not be blank"),
    ({"query": "\x00"}, "spec.query must not hold control characters"),
    ({"query": "What is\x1b[2J BM25?"}, "spec.query must not hold control characters"),
]


@pytest.mark.parametrize("change,named", REJECTED, ids=[repr(c)[:40] for c, _ in REJECTED])
def test_corpora_no_step_can_read_and_blank_queries_are_rejected_naming_the_field(custom_api, operator, run_ns, change, named):
    """Each was admitted, created Jobs that failed (or wrote a NUL into report.html), and failed the run."""
    doc = _named(EXAMPLES / "searchrun-simple.yaml", "hostile")
    doc["spec"].update(change)
    status, message = _rejection(custom_api, run_ns, doc)
    assert status in (400, 422) and named in message, message[:500]


def test_the_same_queries_with_newlines_and_tabs_are_accepted(custom_api, operator, run_ns):
    doc = _named(EXAMPLES / "searchrun-simple.yaml", "multiline", query="What is BM25?\n\tAnd \u200bTF-IDF?")
    obj = custom_api.create_namespaced_custom_object(GROUP, VERSION, run_ns, PLURAL, doc, dry_run="All", _request_timeout=60)
    assert obj["spec"]["query"] == doc["spec"]["query"]


# ------------------------------------------------------------------ 5. a forged status


def test_a_forged_status_of_a_finished_run_is_restored_with_an_event(cluster, operator, run_ns):
    """Anyone who may write searchruns/status could set a finished run to Failed or back to Running,
    for good. The operator notices the change, restores the status from its record, and says so."""
    apply(cluster, run_ns, _named(EXAMPLES / "searchrun-simple.yaml", "forged"))
    run = wait_finished(cluster, run_ns, "forged", operator)
    good = run["status"]
    assert good["phase"] == "Succeeded", good.get("message")
    for n, forged in enumerate(({"phase": "Failed", "message": "forged by user"},
                                {"phase": "Running", "finishedAt": None, "answers": 0})):
        t0 = time.monotonic()
        cluster.kubectl("-n", run_ns, "patch", "searchrun", "forged", "--subresource=status", "--type=merge",
                        "-p", json.dumps({"status": forged}))
        restored = _wait(lambda: (lambda st: st if st.get("phase") == "Succeeded" and st.get("message") == good["message"] else None)(
            get_run(cluster, run_ns, "forged").get("status") or {}), "the forged status restored")
        figure(f"forged status {n + 1}: restored after (s)", round(time.monotonic() - t0, 2))
        for k in ("phase", "message", "finishedAt", "answers", "reportURI", "tokens", "steps"):
            assert restored.get(k) == good.get(k), k
        events = _wait(lambda: len(_events(cluster, run_ns, "forged", "StatusRestored")) > n and
                       _events(cluster, run_ns, "forged", "StatusRestored"), "a StatusRestored event")
        assert any("status.phase" in e["message"] for e in events), [e["message"] for e in events]
    assert "Traceback" not in operator.log_path.read_text(errors="replace")


# ------------------------------------------------------------------ 6. a step that fails for good


def test_a_permanent_failure_fails_the_job_without_pod_retries(cluster, operator, run_ns, fake_llm):
    """A model that never answers with a JSON object (after the agent's own retries): the step exits
    EXIT_PERMANENT and the Job's podFailurePolicy fails the Job at once, instead of burning
    `retries + 1` pods on a question that gets the same answer."""
    fake_llm.prose_models = {"prose-model"}
    doc = _named(EXAMPLES / "searchrun-simple.yaml", "permanent", steps__retries=2,
                 agent={"type": "openai", "baseURL": fake_llm.base_url, "model": "prose-model", "requestTimeoutSeconds": 20})
    apply(cluster, run_ns, doc)
    run = wait_finished(cluster, run_ns, "permanent", operator)
    st = run["status"]
    assert st["phase"] == "Failed", st.get("message")
    failed = [s for s in st["steps"] if s["phase"] == "Failed"]
    assert failed and failed[0]["id"] == "detect"
    pods_per_job, transient = {}, {}
    for j in run_jobs(cluster, run_ns, run["metadata"]["uid"]):
        name = j["metadata"]["name"]
        pods = cluster.kubectl_json("-n", run_ns, "get", "pods", "-l", f"job-name={name}")["items"]
        pods.sort(key=lambda p: p["metadata"]["creationTimestamp"])
        pods_per_job[name] = len(pods)
        reasons = {c["reason"] for c in j["status"].get("conditions") or [] if c["status"] == "True"}
        assert "PodFailurePolicy" in reasons, (name, j["status"])
        exit_codes = [cs["state"]["terminated"]["exitCode"] for p in pods for cs in p["status"].get("containerStatuses", [])
                      if (cs.get("state") or {}).get("terminated")]
        # The subject: no pod after the one that exited EXIT_PERMANENT. A pod before it that failed
        # for another reason (a timeout on a loaded machine: exit 1) was rightly retried; it is shown.
        assert exit_codes and exit_codes[-1] == EXIT_PERMANENT and exit_codes.count(EXIT_PERMANENT) == 1, (name, exit_codes)
        if len(exit_codes) > 1:
            transient[name] = exit_codes[:-1]
    figure("permanent failure: pods per Job (retries 2)", pods_per_job)
    figure("permanent failure: transient exits retried before it", transient or "none")
    assert pods_per_job and all(n == 1 + len(transient.get(j, [])) for j, n in pods_per_job.items()), pods_per_job
    assert "no JSON object" in failed[0]["message"], failed[0]["message"]


# ------------------------------------------------------------------ 7e. a step Job deleted by hand


def _recreated_total(operator) -> float:
    for line in operator.metrics().splitlines():
        if line.startswith("searchrun_step_jobs_recreated_total "):
            return float(line.split()[1])
    raise AssertionError("no searchrun_step_jobs_recreated_total")


def test_a_step_job_deleted_by_hand_is_recreated_with_an_event_and_a_metric(cluster, operator, run_ns, fake_llm):
    fake_llm.delay_seconds = 8  # keeps detect_intent's Job running while we delete it
    before = _recreated_total(operator)
    doc = _named(EXAMPLES / "searchrun-simple.yaml", "job-deleted",
                 agent={"type": "openai", "baseURL": fake_llm.base_url, "model": "fake-model", "requestTimeoutSeconds": 60})
    obj = json.loads(cluster.kubectl("-n", run_ns, "create", "-o", "json", "-f", "-", input=json.dumps(doc)).stdout)
    job = f"sr-{obj['metadata']['uid'].replace('-', '')[:10]}-detect"
    first = _wait(lambda: cluster.kubectl("-n", run_ns, "get", "job", job, "-o", "json", check=False).stdout, "the detect Job")
    uid1 = json.loads(first)["metadata"]["uid"]
    cluster.kubectl("-n", run_ns, "delete", "job", job, "--wait=false")
    fake_llm.delay_seconds = 0
    run = wait_finished(cluster, run_ns, "job-deleted", operator)
    assert run["status"]["phase"] == "Succeeded", run["status"].get("message")
    uid2 = cluster.kubectl_json("-n", run_ns, "get", "job", job)["metadata"]["uid"]
    assert uid2 != uid1, "the Job was created again"
    events = _wait(lambda: _events(cluster, run_ns, "job-deleted", "StepJobRecreated"), "a StepJobRecreated event")
    assert job in events[0]["message"] and events[0]["type"] == "Warning", events[0]
    after = _recreated_total(operator)
    figure("step Job deleted by hand: searchrun_step_jobs_recreated_total", f"{before} -> {after}")
    assert after >= before + 1
