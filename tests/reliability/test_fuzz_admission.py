"""Bad input through the real admission path, and bad data on the cluster.

* hypothesis generates SearchRun manifests (out-of-range and mistyped values, huge and unicode
  queries, names near the length limits, hostile strings in every field) and sends each to the
  API server (server-side dry run: the CRD schema, CEL rules and the operator's mutating and
  validating webhooks all run; nothing is stored). Each is accepted within the caps, or
  rejected with a message that names a field it changed. The operator stays up.
* Accepted hostile manifests run for real: Job names, labels and S3 keys are built from the
  run's uid and the engine's step ids only, never from user text, and are valid.
* A corpus read from s3:// by step Jobs (a cycle; invalid UTF-8), and step results that are
  not valid: the run finishes or fails with the reason.
"""

from __future__ import annotations

import json
import os
import re
import time
import urllib.request
import uuid

import pytest
import urllib3
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from searchrun.admission import Policy, review
from searchrun.api import GROUP, PLURAL, VERSION, SearchRunSpec
from searchrun.artifacts import open_store
from searchrun.executors.kube.jobs import job_name
from support.reliability import DEFAULT_CONFIG, delete_namespace, figure, make_namespace
from support.runs import BUCKET

pytestmark = [pytest.mark.cluster, pytest.mark.s3,
              pytest.mark.filterwarnings("ignore:Generating overly large repr")]  # (huge generated strings)

CAPS = DEFAULT_CONFIG["policy"]["caps"]
POLICY = Policy.model_validate(DEFAULT_CONFIG["policy"])
EXAMPLES = int(os.environ.get("SEARCHRUN_FUZZ_EXAMPLES", "500"))

STEP_ID = r"(detect|plan|simple|aggregate|report|t\d+(-\d+)*)"
JOB_NAME_RE = re.compile(rf"^sr-[0-9a-f]{{10}}-{STEP_ID}$")
STEP_ID_RE = re.compile(rf"^{STEP_ID}$")
STEP_TYPES = {"detect-intent", "simple-search", "plan-search", "traverse-node", "aggregate-results", "create-report"}
# What the key builders make: a run's (or a resumed epoch's, <uid>-r<n>) lineage, its journal,
# report, retry record and PerFanout step documents; each step's files (log.txt, input.json: a
# step's copy for `searchrun logs`); and step cache entries under the namespace.
RUN_FILE = rf"lineage\.json|lineage-journal-[0-9]{{8}}\.json|report\.html|report\.json|retries\.json|g-{STEP_ID}(-a[0-9]+)?\.json"
STEP_FILE = rf"steps/{STEP_ID}/a[0-9]+/((output|result|input)\.json|log\.txt)"
KEY_RE = re.compile(rf"^(runs/[0-9a-f-]{{36}}(-r[0-9]+)?/({RUN_FILE}|{STEP_FILE})"
                    rf"|cache/[a-z0-9]([-a-z0-9]*[a-z0-9])?/(detect_intent|plan_search|traverse_node|simple_search)/[0-9a-f]{{64}}/entry\.json)$")
DNS_LABEL_RE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
LABEL_VALUE_RE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")

BASE_SPEC = {
    "query": "What is BM25?",
    "corpus": {"uri": "builtin:sample"},
    "budget": {"maxAgents": 2, "maxDepth": 2, "maxFanoutPerNode": 2, "maxSteps": 20, "maxParallel": 2,
               "maxTokens": 50000, "maxCostUSD": 0.5, "deadlineSeconds": 300},
    "steps": {"retries": 0, "timeoutSeconds": 60},
}

HOSTILE = [
    "", " ", ".", "..", "../../etc/passwd", "/", "//", "\x00", "a\x00b", "$(id)", "`id`", "; rm -rf / #", "' OR 1=1 --",
    "{{ .Values.secret }}", "${HOME}", "%2e%2e%2f%2e%2e%2f", "<script>alert(1)</script>", "\u202egnp.exe", "\u200b",
    "\ufeff", "\n\r\t", "null", "true", "-1", "1e309", "NaN", "s3://searchrun/../other", "s3://searchrun/runs/../../x",
    "s3://Bad_Bucket/key", "file:///etc/shadow", "file:///tmp/x", "http://169.254.169.254/latest/meta-data/",
    "builtin:../../etc", "C:\\Windows\\system32", "\\\\server\\share", "ä" * 300, "🙂" * 60, "A" * 5000,
    "kube-system", "default/secret", "sr-0000000000-detect", "runs/other-uid/lineage.json",
]
TEXT = st.one_of(
    st.sampled_from(HOSTILE),
    st.text(max_size=80),
    st.builds(lambda c, n: c * n, st.characters(codec="utf-8"), st.integers(1990, 2010)),  # around the query limit
    st.builds(lambda c, n: c * n, st.characters(codec="utf-8"), st.integers(10_000, 60_000)),  # huge
    st.builds(lambda c, n: c * n, st.sampled_from(["<", "\U0010ffff", "a"]), st.integers(200_000, 400_000)),  # huger
)
MISTYPED = st.one_of(st.booleans(), st.none(), st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=8),
                     st.lists(st.integers(), max_size=2), st.dictionaries(st.text(max_size=4), st.integers(), max_size=2))


def ints(lo: int, hi: int):
    return st.one_of(st.integers(lo, hi), st.sampled_from([lo - 1, lo, hi, hi + 1, 0, -1]),
                     st.integers(-(2 ** 62), 2 ** 62), MISTYPED)


def floats(lo: float, hi: float):
    return st.one_of(st.floats(lo, hi), st.sampled_from([lo - 0.001, hi + 0.001, -1.0, 1e300]),
                     st.floats(allow_nan=False, allow_infinity=False), MISTYPED)


def enum(*values):
    return st.one_of(st.sampled_from(values), TEXT, MISTYPED)


FIELDS = {
    "spec.query": st.one_of(TEXT, MISTYPED),
    "spec.corpus.uri": st.one_of(TEXT, st.sampled_from(["builtin:sample", "builtin:nope", "s3://searchrun/x.json"]), MISTYPED),
    "spec.corpus.format": enum("json", "markdown"),
    "spec.agent.type": enum("offline", "openai"),
    "spec.agent.relevanceThreshold": floats(0, 1),
    "spec.agent.baseURL": st.one_of(TEXT, st.just("http://10.0.0.1:1/v1"), MISTYPED),
    "spec.agent.model": st.one_of(TEXT, MISTYPED),
    "spec.agent.apiKeySecretRef.name": st.one_of(TEXT, MISTYPED),
    "spec.agent.apiKeySecretRef.key": st.one_of(TEXT, MISTYPED),
    "spec.agent.apiKeyEnv": st.one_of(TEXT, st.just("MY_KEY"), MISTYPED),
    "spec.agent.costPer1kTokensUSD": floats(0, 1000),
    "spec.agent.requestTimeoutSeconds": ints(1, 600),
    "spec.budget.maxAgents": ints(1, 10),
    "spec.budget.maxDepth": ints(1, 5),
    "spec.budget.maxFanoutPerNode": ints(1, 10),
    "spec.budget.maxSteps": ints(5, 10000),
    "spec.budget.maxParallel": ints(1, 100),
    "spec.budget.maxTokens": ints(1000, 100_000_000),
    "spec.budget.maxCostUSD": floats(0, 10000),
    "spec.budget.deadlineSeconds": ints(10, 86400),
    "spec.steps.image": st.one_of(TEXT, MISTYPED),
    "spec.steps.imagePullPolicy": enum("Always", "IfNotPresent", "Never"),
    "spec.steps.retries": ints(0, 10),
    "spec.steps.backoffSeconds": floats(0, 300),
    "spec.steps.timeoutSeconds": ints(1, 86400),
    "spec.steps.resources.requests.cpu": st.one_of(TEXT, st.just("100m"), MISTYPED),
    "spec.steps.resources.limits.memory": st.one_of(TEXT, st.just("128Mi"), MISTYPED),
    "spec.artifacts.uri": st.one_of(TEXT, st.sampled_from(["s3://searchrun/fuzz", "s3://searchrun/a/../b", "s3://searchrun/./x"]), MISTYPED),
    "spec.artifacts.cleanup": st.one_of(st.booleans(), MISTYPED),
    "spec.budget": MISTYPED,
    "spec.agent": MISTYPED,
    "spec.steps": MISTYPED,
    "spec": st.one_of(st.text(max_size=5), st.integers(), st.lists(st.integers(), max_size=1)),
    "spec.budget.unknownField": st.integers(),
    "spec.extra\u00e9": st.text(max_size=5),
}
NAMES = st.one_of(
    st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-.", min_size=240, max_size=260).map(lambda s: "a" + s[:-1] + "z"),
    st.integers(1, 253).map(lambda n: "n" * n),
    st.integers(254, 400).map(lambda n: "n" * n),
    st.sampled_from(["", "UPPER", "under_score", "-lead", "trail-", "a..b", "ä", "🙂", "a/b", "a b", "a\x00b", "kube-system"]),
    st.text(max_size=30),
)
LABELS = st.dictionaries(st.one_of(st.sampled_from(["app", "searchrun.dev/run-uid", "searchrun.dev/step-id", "team"]), TEXT),
                         st.one_of(st.sampled_from(["x", "evil"]), TEXT), max_size=2)


@st.composite
def manifests(draw):
    spec = json.loads(json.dumps(BASE_SPEC))
    changed: list[str] = []
    for path in draw(st.lists(st.sampled_from(sorted(FIELDS)), min_size=1, max_size=3, unique=True)):
        value = draw(FIELDS[path])
        keys = path.split(".")[1:]
        node = spec
        if not keys:
            spec = value
        else:
            ok = True
            for k in keys[:-1]:
                if not isinstance(node, dict):
                    ok = False
                    break
                node = node.setdefault(k, {})
            if not ok or not isinstance(node, dict):
                continue
            node[keys[-1]] = value
        changed.append(path)
    meta: dict = {"name": draw(st.one_of(st.just("fuzz"), NAMES))}
    if meta["name"] != "fuzz":
        changed.append("metadata.name")
    if draw(st.booleans()):
        meta["labels"] = draw(LABELS)
        changed.append("metadata.labels")
    if draw(st.booleans()):
        meta["annotations"] = {"note": draw(TEXT)}
        changed.append("metadata.annotations")
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "SearchRun", "metadata": meta, "spec": spec}, changed


def named_fields(changed: list[str]) -> list[str]:
    """A rejection must name a changed field, or one of its parents below spec/metadata."""
    out = set()
    for p in changed:
        parts = p.split(".")
        for i in range(2, len(parts) + 1):
            out.add(".".join(parts[:i]))
        if p == "spec":
            out.add("spec")
        if p == "metadata.name":
            out.update(["metadata.name", "name or generateName is required"])
        if p in ("metadata.labels", "metadata.annotations"):
            out.add(p)
    # unknown fields are named without the escapes the message applies to non-ASCII names
    out.update(x.encode("unicode_escape").decode() for x in list(out))
    return sorted(out)


# ------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def fuzz_ns(cluster, rel_s3, operator):
    ns = make_namespace(cluster, rel_s3)
    yield ns
    delete_namespace(cluster, ns)


@pytest.fixture(scope="module")
def custom_api(cluster):
    from kubernetes import client

    return client.CustomObjectsApi(cluster.api_client())


ACCEPTED: list[dict] = []
STATS = {"accepted": 0, "rejected": 0, "refused: over the API server's request limit": 0}


def check_accepted(obj: dict) -> None:
    spec = obj["spec"]
    parsed = SearchRunSpec.model_validate(spec)  # the operator can load it
    b = parsed.budget.model_dump()
    for name, cap in CAPS.items():
        assert b[name] <= cap, f"{name}={b[name]} over the cap {cap}"
    verdict = review(spec, POLICY)
    assert verdict.allowed, verdict.message  # admission is idempotent
    assert parsed.corpus.uri.split(":", 1)[0] in ("builtin", "s3"), "step Jobs can read the corpus"
    if parsed.artifacts.uri:
        assert parsed.artifacts.uri.startswith("s3://"), "step Jobs and the operator share the store"
        open_store(parsed.artifacts.uri)  # raises when the URI cannot be a store (e.g. a '..' prefix)


@settings(max_examples=EXAMPLES, deadline=None, derandomize=bool(os.environ.get("CI")),
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example])
@given(case=manifests())
def test_fuzzed_manifests_through_real_admission(custom_api, fuzz_ns, operator, case):
    from kubernetes.client.rest import ApiException

    doc, changed = case
    size = len(json.dumps(doc).encode())  # as the client sends it (non-ASCII escaped)
    try:
        obj = custom_api.create_namespaced_custom_object(GROUP, VERSION, fuzz_ns, PLURAL, doc, dry_run="All",
                                                         field_validation="Strict", _request_timeout=60)
    except urllib3.exceptions.HTTPError:
        # Over its 3 MiB request limit the API server may answer 413 and close the connection
        # before the client has sent it all: the client then sees the connection drop.
        assert size > 3 * 1024 * 1024, f"a {size}-byte request broke the connection"
        STATS["refused: over the API server's request limit"] += 1
        return
    except ApiException as e:
        # (kopf's webhook server took bodies up to aiohttp's 1 MiB: bigger ones got "failed calling
        # webhook ... 413", naming no field. The operator's server reads what the API server sends.)
        assert "status code 413" not in (e.body or ""), e.body[:500]
        if e.status == 413:  # the API server's own limit on a request (3 MiB): refused before admission
            assert "Request entity too large" in e.body, e.body[:500]
            STATS["refused: over the API server's request limit"] += 1
            return
        assert e.status in (400, 422), f"{e.status} {e.reason}: {e.body[:500]}"
        try:
            msg = json.loads(e.body)["message"]
        except (TypeError, ValueError, KeyError):
            msg = str(e.body)
        assert any(f in msg for f in named_fields(changed)), f"message names none of {changed}: {msg[:1500]}"
        STATS["rejected"] += 1
        return
    check_accepted(obj)
    STATS["accepted"] += 1
    if len(ACCEPTED) < 200:
        ACCEPTED.append(doc)


def test_the_operator_survived_the_fuzz(operator):
    figure("fuzz: manifests", STATS)
    assert STATS["accepted"] + STATS["rejected"] > 0, "the fuzz test ran first"
    assert operator.proc.poll() is None and operator.starts == 1, "never crashed, never restarted"
    with urllib.request.urlopen(f"http://127.0.0.1:{operator.liveness_port}/healthz", timeout=5) as r:
        assert r.status == 200
    log = operator.log_path.read_text(errors="replace")
    assert "Traceback" not in log, log[log.index("Traceback") - 2000:][:5000]


# ------------------------------------------------------------------ accepted hostile runs, for real

HOSTILE_RUNS = [
    # (name, spec changes, metadata extras): valid manifests full of user text the operator must not reuse
    ("n" * 253, {"query": "What is BM25? " + "🙂" * 10}, {"labels": {"searchrun.dev/step-id": "evil", "app": "x"}}),
    ("x.y.z", {"query": "../../etc/passwd $(id) `id` ; rm -rf / {{ .Values }} \u202e \u200b \t\n"},
     {"annotations": {"searchrun.dev/attempt": "99", "note": "\x00../../"}}),
    ("unicode-query", {"query": "ä" * 1999 + "?"}, {}),
    ("missing-corpus", {"query": "What is BM25?", "corpus": {"uri": "s3://searchrun/no/such/corpus.json"}}, {}),
]


def test_accepted_hostile_manifests_run_with_safe_names_labels_and_keys(cluster, operator, fuzz_ns, rel_s3, custom_api):
    from kubernetes.client.rest import ApiException

    docs = []
    for name, changes, meta in HOSTILE_RUNS:
        spec = {**json.loads(json.dumps(BASE_SPEC)), **changes}
        docs.append({"apiVersion": f"{GROUP}/{VERSION}", "kind": "SearchRun", "metadata": {"name": name, **meta}, "spec": spec})
    # and a few the fuzzer got accepted (with small budgets and the offline agent, to keep them quick)
    for i, d in enumerate(ACCEPTED[-3:]):
        spec = {**d["spec"], "budget": BASE_SPEC["budget"], "agent": {"type": "offline"},
                "steps": {**BASE_SPEC["steps"], "image": cluster.image}}
        spec.pop("artifacts", None)
        docs.append({**d, "metadata": {**d["metadata"], "name": f"fuzzed-{i}"}, "spec": spec})
    created = []
    for d in docs:
        try:
            created.append(custom_api.create_namespaced_custom_object(GROUP, VERSION, fuzz_ns, PLURAL, d))
        except ApiException as e:  # a fuzzed one may only have passed with the budget or agent we replaced
            assert d["metadata"]["name"].startswith("fuzzed-"), e.body
    deadline = time.monotonic() + 300
    while True:
        runs = [custom_api.get_namespaced_custom_object(GROUP, VERSION, fuzz_ns, PLURAL, c["metadata"]["name"]) for c in created]
        if all((r.get("status") or {}).get("phase") in ("Succeeded", "Failed") for r in runs):
            break
        assert time.monotonic() < deadline, [(r["metadata"]["name"][:40], (r.get("status") or {}).get("phase")) for r in runs]
        time.sleep(2)
    outcomes = {r["metadata"]["name"][:30]: r["status"]["phase"] for r in runs}
    figure("hostile runs: outcomes", outcomes)
    for r in runs:
        uid, st_ = r["metadata"]["uid"], r["status"]
        if st_["phase"] == "Failed":
            assert st_.get("message"), "a failed run says why"
        jobs = cluster.kubectl_json("-n", fuzz_ns, "get", "jobs", "-l", f"searchrun.dev/run-uid={uid}")["items"]
        assert jobs, r["metadata"]["name"]
        for j in jobs:
            name, labels = j["metadata"]["name"], j["metadata"]["labels"]
            assert JOB_NAME_RE.match(name) and len(name) <= 63 and DNS_LABEL_RE.match(name), name
            assert name == job_name(uid, labels["searchrun.dev/step-id"])
            pod_labels = j["spec"]["template"]["metadata"]["labels"]
            assert all(pod_labels[k] == v for k, v in labels.items()), pod_labels  # (plus the Job controller's own)
            assert set(labels) == {"app.kubernetes.io/managed-by", "app.kubernetes.io/name", "searchrun.dev/run-uid",
                                   "searchrun.dev/step-id", "searchrun.dev/step-type"}, labels
            assert labels["searchrun.dev/run-uid"] == uid and STEP_ID_RE.match(labels["searchrun.dev/step-id"])
            assert labels["searchrun.dev/step-type"] in STEP_TYPES
            assert all(len(v) <= 63 and LABEL_VALUE_RE.match(v) for v in labels.values())
            ann = j["metadata"].get("annotations") or {}
            assert ann.get("searchrun.dev/attempt") in {"1", "2", "3"} and "note" not in ann
        keys = rel_s3.keys(f"runs/{uid}/")
        if st_["phase"] == "Succeeded":
            assert keys, "the run wrote its artifacts under its own prefix"
        bad = [k for k in keys if not KEY_RE.match(k)]
        assert not bad, bad


def test_every_key_in_the_bucket_is_under_a_run_prefix(rel_s3, cluster, fuzz_ns):
    """After all the runs of the session so far: no object outside runs/<uid>/ (or the test's
    own corpora), and every key has the shape the key builders make."""
    keys = rel_s3.keys()
    stray = [k for k in keys if not (KEY_RE.match(k) or k.startswith("test-corpora/"))]
    figure("bucket: keys checked", len(keys))
    assert not stray, stray[:20]


# ------------------------------------------------------------------ bad corpora read by Jobs from s3://


def test_corpora_from_s3_on_the_cluster_finish_or_fail_clearly(cluster, operator, fuzz_ns, rel_s3):
    from support.corpora import CORPORA, QUERY

    prefix = f"test-corpora/{uuid.uuid4().hex[:8]}"
    runs = {}
    for name in ("cycle", "invalid-utf8"):
        rel_s3.client().put_object(Bucket=BUCKET, Key=f"{prefix}/{name}.json", Body=CORPORA[name][0])
        spec = {**json.loads(json.dumps(BASE_SPEC)), "query": QUERY, "corpus": {"uri": f"s3://{BUCKET}/{prefix}/{name}.json"}}
        spec["budget"].update(maxAgents=1, maxDepth=3)
        doc = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "SearchRun", "metadata": {"name": f"corpus-{name}"}, "spec": spec}
        cluster.kubectl("-n", fuzz_ns, "apply", "-f", "-", input=json.dumps(doc))
        runs[name] = doc["metadata"]["name"]
    from support.runs import wait_finished

    cyc = wait_finished(cluster, fuzz_ns, runs["cycle"], operator)
    utf = wait_finished(cluster, fuzz_ns, runs["invalid-utf8"], operator)
    assert cyc["status"]["phase"] == "Succeeded", cyc["status"].get("message")
    docs = [s["doc"] for s in cyc["status"]["steps"] if s["type"] == "traverse_node"]
    assert sorted(docs) == ["a", "b", "c"], "the ring is walked once and stops where it closes"
    assert utf["status"]["phase"] == "Failed"
    assert "not valid UTF-8" in utf["status"]["message"], utf["status"]["message"]
    figure("s3 corpus, invalid UTF-8: message", utf["status"]["message"][:200])


# ------------------------------------------------------------------ malformed step results on the cluster


def test_a_corrupt_committed_result_is_redone_by_the_step(cluster, operator, fuzz_ns, rel_s3):
    """A result.json that is not JSON, or JSON of the wrong shape, is in the store before the
    step runs (as if a pod of its Job had died writing it). It is no commit: the step's pod does
    the step again and commits a whole result (a corrupt commit used to be re-read by every
    retried pod, which then failed the same way)."""
    from searchrun.artifacts import step_key
    from support.runs import wait_finished

    bad = {"not-json": b"{this is not json", "wrong-shape": json.dumps({"tokens": -5, "intent": "deep"}).encode(),
           "not-an-object": b"[1, 2, 3]"}
    for name, body in bad.items():
        doc = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "SearchRun", "metadata": {"name": f"result-{name}"},
               "spec": json.loads(json.dumps(BASE_SPEC))}
        obj = json.loads(cluster.kubectl("-n", fuzz_ns, "create", "-o", "json", "-f", "-", input=json.dumps(doc)).stdout)
        rel_s3.client().put_object(Bucket=BUCKET, Key=step_key(obj["metadata"]["uid"], "detect", 1, "result.json"), Body=body)
    for name in bad:
        run = wait_finished(cluster, fuzz_ns, f"result-{name}", operator)
        detect = next(s for s in run["status"]["steps"] if s["id"] == "detect")
        assert run["status"]["phase"] == "Succeeded" and detect["phase"] == "Succeeded", detect
        assert not run["status"].get("fallback"), run["status"]["fallback"]
        key = step_key(run["metadata"]["uid"], "detect", 1, "result.json")
        committed = json.loads(rel_s3.client().get_object(Bucket=BUCKET, Key=key)["Body"].read())
        assert committed["intent"] in ("simple", "deep") and committed["tokens"] >= 0, committed
        figure(f"corrupt commit ({name}): detect redone", detect.get("decision", "")[:80])
