"""Security: least privilege (a `kubectl auth can-i` matrix over the chart's RBAC), step pods
under the `restricted` Pod Security Standard, no secret value in status, events or logs, agent
endpoints only where the cluster's policy allows (the webhook refuses the metadata address; an
error body never reaches status or events), and artifact keys that cannot leave their run's
prefix."""

from __future__ import annotations

import json
import posixpath
import time
import uuid

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from searchrun.artifacts import FileStore, open_store, run_key, run_prefix, step_key, validate_key
from support.fake_openai import FakeOpenAI
from support.reliability import delete_namespace, figure, make_namespace
from support.runs import BUCKET, EXAMPLES, REPO, apply, assert_jobs_match_lineage, manifest, wait_finished
from support.session import WEBHOOK_CONFIG

CHART = REPO / "charts" / "searchrun-operator"
RBAC_KINDS = {"ServiceAccount", "Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding"}


# ------------------------------------------------------------------ RBAC: kubectl auth can-i


def render_rbac(cluster, release: str, release_ns: str, watch: list[str]) -> list[dict]:
    args = ["template", release, str(CHART), "--namespace", release_ns, "--set", f"fullnameOverride={release}"]
    if watch:
        args += ["--set", "watchNamespaces={" + ",".join(watch) + "}"]
    out = cluster.helm(*args).stdout
    return [d for d in yaml.safe_load_all(out) if d and d.get("kind") in RBAC_KINDS]


CAN_I_CALLS = [0]


def can_i(cluster, sa: str, verb: str, resource: str, ns: str | None, subresource: str | None = None) -> bool:
    CAN_I_CALLS[0] += 1
    args = ["auth", "can-i", verb, resource, f"--as={sa}"]
    args += ["-n", ns] if ns else ["--all-namespaces"]
    if subresource:
        args += [f"--subresource={subresource}"]
    r = cluster.kubectl(*args, check=False)
    assert r.stdout.strip() in ("yes", "no"), (args, r.stdout, r.stderr)
    return r.stdout.strip() == "yes"


# (verb, resource, subresource) the operator needs in a namespace it watches
OPERATOR_ALLOWED = [
    ("get", "searchruns.searchrun.dev", None), ("list", "searchruns.searchrun.dev", None),
    ("watch", "searchruns.searchrun.dev", None), ("patch", "searchruns.searchrun.dev", None),
    ("get", "searchruns.searchrun.dev", "status"), ("patch", "searchruns.searchrun.dev", "status"),
    ("create", "jobs.batch", None), ("get", "jobs.batch", None), ("list", "jobs.batch", None), ("watch", "jobs.batch", None),
    ("get", "pods", None), ("list", "pods", None),
    ("create", "events", None),
]
# what it must not do anywhere
OPERATOR_DENIED = [
    ("create", "searchruns.searchrun.dev", None), ("delete", "searchruns.searchrun.dev", None),
    ("update", "searchruns.searchrun.dev", None),
    ("delete", "jobs.batch", None), ("update", "jobs.batch", None), ("patch", "jobs.batch", None),
    ("create", "pods", None), ("delete", "pods", None), ("create", "pods", "exec"), ("get", "pods", "log"),
    ("get", "secrets", None), ("list", "secrets", None), ("watch", "secrets", None), ("create", "secrets", None),
    ("get", "configmaps", None), ("create", "serviceaccounts", "token"), ("create", "serviceaccounts", None),
    ("create", "roles.rbac.authorization.k8s.io", None), ("create", "rolebindings.rbac.authorization.k8s.io", None),
    ("create", "deployments.apps", None), ("create", "cronjobs.batch", None), ("delete", "events", None),
    ("create", "persistentvolumeclaims", None), ("create", "services", None),
]
CLUSTER_DENIED = [
    ("list", "secrets"), ("get", "nodes"), ("create", "clusterrolebindings.rbac.authorization.k8s.io"),
    ("escalate", "clusterroles.rbac.authorization.k8s.io"), ("bind", "clusterroles.rbac.authorization.k8s.io"),
    ("impersonate", "users"), ("impersonate", "serviceaccounts"), ("create", "customresourcedefinitions.apiextensions.k8s.io"),
    ("delete", "customresourcedefinitions.apiextensions.k8s.io"), ("create", "namespaces"), ("delete", "namespaces"),
    ("create", "validatingwebhookconfigurations.admissionregistration.k8s.io"),
    ("patch", "mutatingwebhookconfigurations.admissionregistration.k8s.io"),
    ("create", "certificatesigningrequests.certificates.k8s.io"),
]


SEARCHRUNS = "searchruns.searchrun.dev"


def check_aggregated_roles(cluster, release: str, ns: str, other: str) -> None:
    """The chart's aggregated ClusterRoles: a user bound to the built-in `edit` role in ``ns`` may
    create and delete SearchRuns there, but never write their status (the operator's record); one
    bound to `view` may read them; neither may anywhere else."""
    editor, viewer = f"{release}-editor", f"{release}-viewer"
    cluster.kubectl("-n", ns, "create", "rolebinding", editor, "--clusterrole=edit", f"--user={editor}")
    cluster.kubectl("-n", ns, "create", "rolebinding", viewer, "--clusterrole=view", f"--user={viewer}")
    deadline = time.monotonic() + 60  # the aggregation controller fills edit and view asynchronously
    while not (can_i(cluster, editor, "create", SEARCHRUNS, ns) and can_i(cluster, viewer, "list", SEARCHRUNS, ns)):
        assert time.monotonic() < deadline, "the aggregated roles never reached edit and view"
        time.sleep(0.5)
    for verb in ("create", "delete", "get", "list", "watch", "update", "patch"):
        assert can_i(cluster, editor, verb, SEARCHRUNS, ns), f"edit may {verb} searchruns"
    for verb in ("update", "patch"):
        assert not can_i(cluster, editor, verb, SEARCHRUNS, ns, "status"), f"edit must not {verb} searchruns/status"
        assert not can_i(cluster, viewer, verb, SEARCHRUNS, ns, "status"), f"view must not {verb} searchruns/status"
    for verb in ("get", "list", "watch"):
        assert can_i(cluster, viewer, verb, SEARCHRUNS, ns), f"view may {verb} searchruns"
    assert can_i(cluster, viewer, "get", SEARCHRUNS, ns, "status")
    for verb in ("create", "delete", "update", "patch"):
        assert not can_i(cluster, viewer, verb, SEARCHRUNS, ns), f"view must not {verb} searchruns"
    assert not can_i(cluster, editor, "create", SEARCHRUNS, other), "only where the user is an editor"


@pytest.mark.cluster
@pytest.mark.parametrize("scope", ["namespaced", "cluster-wide"])
def test_rbac_least_privilege_matrix(cluster, scope):
    if not cluster.helm_path:
        pytest.skip("helm is not available")
    tag = uuid.uuid4().hex[:6]
    release, release_ns, watched, other = f"srrbac-{tag}", f"srrbac-{tag}-op", f"srrbac-{tag}-w", f"srrbac-{tag}-o"
    for ns in (release_ns, watched, other):
        cluster.kubectl("create", "namespace", ns)
    objs = render_rbac(cluster, release, release_ns, [watched] if scope == "namespaced" else [])
    try:
        cluster.apply(objs)
        op = f"system:serviceaccount:{release_ns}:{release}"
        # The API server's RBAC authorizer learns new roles and bindings through its informers: a
        # check right after the apply may still see none of them. Wait until the first one holds.
        deadline = time.monotonic() + 60
        while not can_i(cluster, op, "get", SEARCHRUNS, watched):
            assert time.monotonic() < deadline, "the operator's role never took effect"
            time.sleep(0.5)
        calls_before = CAN_I_CALLS[0]
        rows = []
        for verb, res, sub in OPERATOR_ALLOWED:
            ok = can_i(cluster, op, verb, res, watched, sub)
            rows.append((verb, res + (f"/{sub}" if sub else ""), watched, ok))
            assert ok, f"the operator needs {verb} {res} {sub or ''} in {watched}"
        for verb, res, sub in OPERATOR_DENIED:
            for ns in (watched, other):
                ok = can_i(cluster, op, verb, res, ns, sub)
                rows.append((verb, res + (f"/{sub}" if sub else ""), ns, ok))
                assert not ok, f"the operator must not {verb} {res} {sub or ''} in {ns}"
        for verb, res in CLUSTER_DENIED:
            assert not can_i(cluster, op, verb, res, None), f"the operator must not {verb} {res} cluster-wide"
        assert can_i(cluster, op, "list", "customresourcedefinitions.apiextensions.k8s.io", None)
        if scope == "namespaced":
            for verb, res, sub in OPERATOR_ALLOWED:  # nothing outside the namespaces it watches
                assert not can_i(cluster, op, verb, res, other, sub), f"{verb} {res} allowed in an unwatched namespace"
            assert not can_i(cluster, op, "list", "jobs.batch", None), "no cluster-wide Job access"
            assert can_i(cluster, op, "watch", "namespaces", None), "kopf watches the namespaces it is given"

        steps = [o for o in objs if o["kind"] == "ServiceAccount" and o["metadata"].get("labels", {}).get("app.kubernetes.io/component") == "step"]
        if scope == "namespaced":
            assert [s["metadata"]["namespace"] for s in steps] == [watched]
            assert steps[0].get("automountServiceAccountToken") is False
            step_sa = f"system:serviceaccount:{watched}:{steps[0]['metadata']['name']}"
        else:
            assert not steps, "cluster-wide, step pods run as their namespace's default ServiceAccount"
            step_sa = f"system:serviceaccount:{watched}:default"
        for verb, res, sub in OPERATOR_ALLOWED + OPERATOR_DENIED:
            assert not can_i(cluster, step_sa, verb, res, watched, sub), f"a step may not {verb} {res} {sub or ''}"
        listed = cluster.kubectl("auth", "can-i", "--list", f"--as={step_sa}", "-n", watched).stdout
        resources = [line.split()[0] for line in listed.splitlines()[1:] if line.strip() and not line.startswith(" ")]
        extra = [r for r in resources if not r.startswith(("selfsubject", "[/")) and r != "Resources"]
        assert not extra, f"the step ServiceAccount can do more than ask what it may do: {extra}"
        check_aggregated_roles(cluster, release, watched, other)
        figure(f"rbac ({scope}): kubectl auth can-i checks", CAN_I_CALLS[0] - calls_before)
    finally:
        for o in objs:
            if o["kind"].startswith("Cluster"):
                cluster.kubectl("delete", o["kind"], o["metadata"]["name"], "--ignore-not-found", check=False)
        for ns in (release_ns, watched, other):
            cluster.kubectl("delete", "namespace", ns, "--wait=false", check=False)


# ------------------------------------------------------------------ Pod Security Standard: restricted


@pytest.mark.cluster
@pytest.mark.s3
def test_step_pods_pass_the_restricted_pod_security_standard(cluster, operator, rel_s3):
    ns = make_namespace(cluster, rel_s3, labels={"pod-security.kubernetes.io/enforce": "restricted",
                                                 "pod-security.kubernetes.io/enforce-version": "latest",
                                                 "pod-security.kubernetes.io/warn": "restricted"})
    try:
        # the label is enforced here: a plain pod is refused
        plain = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "plain"},
                 "spec": {"containers": [{"name": "c", "image": cluster.image}]}}
        r = cluster.kubectl("-n", ns, "create", "--dry-run=server", "-f", "-", input=json.dumps(plain), check=False)
        assert r.returncode != 0 and "violates PodSecurity" in r.stderr, r.stderr
        apply(cluster, ns, manifest(EXAMPLES / "searchrun.yaml", budget__maxAgents=2, budget__maxFanoutPerNode=1))
        run = wait_finished(cluster, ns, "quantum-ml", operator)
        assert run["status"]["phase"] == "Succeeded", run["status"].get("message")
        assert_jobs_match_lineage(cluster, ns, run)
        events = cluster.kubectl_json("-n", ns, "get", "events")["items"]
        refused = [e["message"] for e in events if "PodSecurity" in e.get("message", "") or e.get("reason") == "FailedCreate"]
        assert not refused, refused
        pods = cluster.kubectl_json("-n", ns, "get", "pods")["items"]
        figure("restricted PSS: step pods admitted", len(pods))
        assert len(pods) == len([s for s in run["status"]["steps"] if s["phase"] != "Skipped"])
    finally:
        delete_namespace(cluster, ns)


# ------------------------------------------------------------------ no secret value anywhere


@pytest.fixture
def fake_llm(cluster):
    server = FakeOpenAI(cluster.host_ip or "127.0.0.1")
    yield server
    server.close()


@pytest.mark.cluster
@pytest.mark.s3
def test_no_secret_value_in_status_events_or_logs(cluster, operator, run_ns, rel_s3, fake_llm):
    """An openai agent whose key comes from a Secret: one run against a cooperative endpoint,
    one against an endpoint that quotes the key back in its 401 error. The key reaches the
    endpoint, and appears nowhere we look: run status, events, Job and pod objects, pod logs,
    the operator's log, and the run's artifacts."""
    key = f"sk-canary-{uuid.uuid4().hex}"
    cluster.kubectl("-n", run_ns, "create", "secret", "generic", "llm", f"--from-literal=api-key={key}")
    fake_llm.echo_key_models = {"leaky-model"}
    names = {"good-model": "llm-ok", "leaky-model": "llm-leaky"}
    for model, name in names.items():
        doc = manifest(EXAMPLES / "searchrun-simple.yaml", steps__retries=0,
                       agent={"type": "openai", "baseURL": fake_llm.base_url, "model": model,
                              "apiKeySecretRef": {"name": "llm", "key": "api-key"}, "requestTimeoutSeconds": 20})
        doc["metadata"]["name"] = name
        apply(cluster, run_ns, doc)
    ok = wait_finished(cluster, run_ns, "llm-ok", operator)
    leaky = wait_finished(cluster, run_ns, "llm-leaky", operator)
    assert ok["status"]["phase"] == "Succeeded", ok["status"].get("message")
    assert leaky["status"]["phase"] == "Failed" and "401" in leaky["status"]["message"], leaky["status"].get("message")
    assert {r["auth"] for r in fake_llm.requests} == {f"Bearer {key}"}, "the key came from the Secret to the endpoint"

    places: dict[str, str] = {
        "status": json.dumps([ok, leaky]),
        "events": cluster.kubectl("-n", run_ns, "get", "events", "-o", "json").stdout,
        "jobs": cluster.kubectl("-n", run_ns, "get", "jobs", "-o", "json").stdout,
        "pods": cluster.kubectl("-n", run_ns, "get", "pods", "-o", "json").stdout,  # termination messages too
        "describe": cluster.kubectl("-n", run_ns, "describe", "sr").stdout,
        "operator log": operator.log_path.read_text(errors="replace"),
    }
    for pod in json.loads(places["pods"])["items"]:
        name = pod["metadata"]["name"]
        places[f"log {name}"] = cluster.kubectl("-n", run_ns, "logs", name, "--all-containers", check=False).stdout
    for run in (ok, leaky):
        for k in rel_s3.keys(f"runs/{run['metadata']['uid']}/"):
            places[f"s3 {k}"] = rel_s3.client().get_object(Bucket=BUCKET, Key=k)["Body"].read().decode(errors="replace")
    # the 401's body (which quoted the key) is not in the message at all: only the status and its reason
    assert "HTTP 401 (Unauthorized)" in leaky["status"]["message"] and "Incorrect API key" not in places["status"]
    leaks = [where for where, text in places.items() if key in text or key[len("sk-canary-"):] in text]
    figure("secret scan: places searched", len(places))
    assert not leaks, f"the secret appears in: {leaks}"


# ------------------------------------------------------------------ agent endpoints (SSRF) and error bodies

LEAK = "AKIAIOSFODNN7EXAMPLE-leak"


@pytest.mark.cluster
@pytest.mark.s3
@pytest.mark.parametrize("base_url,rule", [
    ("http://169.254.169.254/latest/meta-data", "host 169.254.169.254 is link-local"),
    ("http://2852039166/latest/meta-data", "host 2852039166 (169.254.169.254) is link-local"),
    ("https://10.96.0.1:443/api", "host 10.96.0.1 is in the cluster's service range 10.96.0.0/12"),
])
def test_the_webhook_refuses_agent_endpoints_outside_the_policy(cluster, operator, run_ns, base_url, rule):
    doc = manifest(EXAMPLES / "searchrun-simple.yaml", agent={"type": "openai", "baseURL": base_url, "model": "m"})
    r = apply(cluster, run_ns, doc, check=False)
    assert r.returncode != 0, r.stdout
    assert f'admission webhook "validate.{WEBHOOK_CONFIG}" denied the request' in r.stderr, r.stderr
    assert f"spec.agent.baseURL: {rule}, refused by the cluster's agent endpoint policy (policy.agentEndpoints)" in r.stderr, r.stderr
    assert cluster.kubectl("-n", run_ns, "get", "jobs", "-o", "name").stdout.strip() == "", "no step was started"


@pytest.mark.cluster
@pytest.mark.s3
def test_an_error_body_with_a_secret_reaches_no_status_or_event(cluster, operator, run_ns, rel_s3, fake_llm):
    """An allowed endpoint (the scripted server on the host bridge) answers every request with
    a 500 page holding a secret-looking string: the run fails, saying HTTP 500 and the request
    id, and the string is nowhere in the SearchRun, its events, its pods or the operator's log."""
    marker = f"page-{uuid.uuid4().hex}"  # any other part of the page
    fake_llm.error_reply = (500, f"<html><body><h1>Internal error {marker}</h1><p>key {LEAK}</p></body></html>")
    doc = manifest(EXAMPLES / "searchrun-simple.yaml", steps__retries=0,
                   agent={"type": "openai", "baseURL": fake_llm.base_url, "model": "m", "requestTimeoutSeconds": 10})
    doc["metadata"]["name"] = "llm-error-page"
    apply(cluster, run_ns, doc)
    run = wait_finished(cluster, run_ns, "llm-error-page", operator)
    assert run["status"]["phase"] == "Failed", run["status"].get("message")
    assert fake_llm.requests, "the step pods reached the allowed endpoint"
    messages = [run["status"].get("message", "")] + [st.get("message", "") for st in run["status"]["steps"]]
    assert any("HTTP 500 (Internal Server Error), request id req-fake-0001" in m for m in messages), messages
    places = {
        "kubectl get sr -o yaml": cluster.kubectl("-n", run_ns, "get", "sr", "-o", "yaml").stdout,
        "kubectl get events": cluster.kubectl("-n", run_ns, "get", "events", "-o", "yaml").stdout,
        "pods": cluster.kubectl("-n", run_ns, "get", "pods", "-o", "json").stdout,  # termination messages
        "operator log": operator.log_path.read_text(errors="replace"),
    }
    leaks = [where for where, text in places.items() if LEAK in text or marker in text]
    figure("error-body scan: places searched", len(places))
    assert not leaks, f"the error body appears in: {leaks}"


# ------------------------------------------------------------------ artifact keys stay in their run's prefix

IDS = st.one_of(st.text(max_size=70), st.sampled_from(["..", ".", "", "a/..", "../b", "a/b", "x" * 64, "0", "-a", "A"]),
                st.from_regex(r"[a-z0-9][a-z0-9-]{0,62}", fullmatch=True))


@settings(max_examples=500, deadline=None)
@given(uid=IDS, step=IDS, attempt=st.one_of(st.integers(-5, 200), st.text(max_size=3), st.booleans()), name=IDS)
def test_artifact_keys_cannot_escape_the_run_prefix(uid, step, attempt, name):
    for build in (lambda: step_key(uid, step, attempt, name), lambda: run_key(uid, name)):
        try:
            key = build()
        except ValueError:
            continue
        prefix = run_prefix(uid)
        assert key.startswith(prefix) and posixpath.normpath(key) == key, key
        assert not any(seg in ("", ".", "..") for seg in key.split("/")), key
        assert validate_key(key) == key


@settings(max_examples=300, deadline=None)
@given(key=st.one_of(st.text(max_size=40), st.sampled_from(["../x", "a/../../x", "/etc/passwd", "a//b", "./a", "a/./b", "..",
                                                            "a/..", "%2e%2e/x", "a\x00b", "a\\..\\b"])))
def test_stores_refuse_keys_that_leave_their_root(tmp_path_factory, key):
    root = tmp_path_factory.mktemp("store")
    store = FileStore(root / "base")
    try:
        store.put_bytes(key, b"x")
    except ValueError:
        return
    written = [p for p in root.rglob("*") if p.is_file()]
    assert written and all((root / "base") in p.parents for p in written), written


@pytest.mark.parametrize("uri", ["s3://searchrun/../x", "s3://searchrun/a/../../b", "s3://searchrun/./a",
                                 "s3://user:pass@searchrun/a", "s3://searchrun/a?x=1", "file://host/etc"])
def test_store_uris_that_could_escape_are_refused(uri):
    with pytest.raises(ValueError):
        open_store(uri)


@pytest.mark.parametrize("uri,ok", [("s3://searchrun/../other", False), ("s3://searchrun/a/./b", False),
                                    ("file:///tmp/x", False), ("s3://searchrun/team-a/runs", True), ("s3://searchrun", True)])
def test_admission_refuses_artifact_stores_a_run_cannot_share(uri, ok):
    """The CRD pattern lets these through; admission refuses them naming the field."""
    from searchrun.admission import Policy, review

    v = review({"query": "q", "artifacts": {"uri": uri}}, Policy())
    assert v.allowed == ok, v.message
    if not ok:
        assert v.message.startswith("spec.artifacts.uri: "), v.message
