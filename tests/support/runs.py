"""Helpers for tests that apply SearchRuns to a cluster and check what the operator did.

Shared by tests/integration/test_operator.py and tests/reliability/. ``cluster`` is the
``Cluster`` of tests/integration/conftest.py (``kubectl``, ``kubectl_json``).
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
BUCKET = "searchrun"

# The operator-as-a-process of the integration and reliability tests: reject over the caps,
# clamp maxParallel and maxTokens, resync often.
TEST_OPERATOR_CONFIG = {
    "policy": {
        "mode": "reject",
        "clamp": ["maxParallel", "maxTokens"],
        "caps": {"maxAgents": 5, "maxDepth": 3, "maxSteps": 60, "maxParallel": 4, "maxTokens": 150000, "maxCostUSD": 5},
    },
    "resyncSeconds": 5,
}


def with_test_agent_endpoints(config: dict, host_ip: str | None) -> dict:
    """The test peers that play agent endpoints (support/fake_openai.py) listen on the host's
    bridge address, which lies in the cluster's pod range: a test operator lists that one
    address in policy.agentEndpoints.cidrs, as an admin lists an in-cluster model server."""
    policy = config.get("policy") or {}
    if not host_ip or "agentEndpoints" in policy:
        return config
    return {**config, "policy": {**policy, "agentEndpoints": {"cidrs": [f"{host_ip}/32"]}}}


def manifest(path: Path, **spec_overrides) -> dict:
    """A manifest from a file, with ``a__b=value`` overriding ``spec.a.b``."""
    doc = yaml.safe_load(path.read_text())
    for dotted, value in spec_overrides.items():
        node = doc["spec"]
        keys = dotted.split("__")
        for k in keys[:-1]:
            node = node.setdefault(k, {})
        node[keys[-1]] = value
    return doc


def apply(cluster, ns: str, doc: dict, check: bool = True) -> subprocess.CompletedProcess:
    return cluster.kubectl("-n", ns, "apply", "-f", "-", input=yaml.safe_dump(doc), check=check)


def get_run(cluster, ns: str, name: str) -> dict:
    return cluster.kubectl_json("-n", ns, "get", "searchrun", name)


def wait_finished(cluster, ns: str, name: str, op, timeout: float = 300) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = get_run(cluster, ns, name)
        if (run.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
            return run
        time.sleep(1)
    run = get_run(cluster, ns, name)
    pods = cluster.kubectl("-n", ns, "get", "pods,jobs", "-o", "wide", check=False).stdout
    raise AssertionError(f"{name} not finished in {timeout}s: {json.dumps(run.get('status'), indent=1)[:3000]}\n{pods}\n{op.log_tail()}")


def run_jobs(cluster, ns: str, uid: str) -> list[dict]:
    return cluster.kubectl_json("-n", ns, "get", "jobs", "-l", f"searchrun.dev/run-uid={uid}")["items"]


def assert_jobs_match_lineage(cluster, ns: str, run: dict) -> None:
    steps = [s for s in run["status"]["steps"] if s["phase"] != "Skipped"]
    jobs = run_jobs(cluster, ns, run["metadata"]["uid"])
    names = [j["metadata"]["name"] for j in jobs]
    assert sorted(names) == sorted(s["job"] for s in steps), "one Job per step, and one step per Job"
    for j in jobs:
        owner = j["metadata"]["ownerReferences"][0]
        assert owner["uid"] == run["metadata"]["uid"] and owner["kind"] == "SearchRun"
        pod = j["spec"]["template"]["spec"]
        assert pod["automountServiceAccountToken"] is False
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["containers"][0]["securityContext"]["allowPrivilegeEscalation"] is False


def assert_budgets_hold(run: dict) -> None:
    b, st = run["spec"]["budget"], run["status"]
    assert st["budgetUsed"]["steps"] <= b["maxSteps"]
    assert st["maxDepthReached"] <= b["maxDepth"]
    assert st["tokens"] <= b["maxTokens"]
    assert st["costUSD"] <= b["maxCostUSD"]
    assert st["budgetUsed"]["parallel"] <= b["maxParallel"]
    traverse = [s for s in st["steps"] if s["type"] == "traverse_node"]
    assert len([s for s in traverse if s["depth"] == 1]) <= b["maxAgents"]
    docs = [s["doc"] for s in traverse]
    assert len(docs) == len(set(docs)), "no document traversed twice"


def s3_object(s3, uri: str, bucket: str = BUCKET) -> bytes:
    assert uri.startswith(f"s3://{bucket}/"), uri
    return s3.client().get_object(Bucket=bucket, Key=uri[len(f"s3://{bucket}/"):])["Body"].read()
