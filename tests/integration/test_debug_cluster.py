"""`searchrun get|logs|rerun-step` against runs on a real cluster: one whose lineage is in its
status and one whose lineage was offloaded to the store (this module's operator offloads past
4 KiB: the deep example's lineage is ~12 KiB, the simple one's ~1 KiB), a step's log from its live
pod and, once the pod is gone, from the store, and a cache hit's log from the run it came from."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from support.operator_process import Operator
from support.runs import (EXAMPLES, TEST_OPERATOR_CONFIG, apply, assert_jobs_match_lineage, manifest, run_jobs,
                          wait_finished)
from test_operator import BUCKET, NS_PREFIX, REPO, cluster_s3, run_ns  # noqa: F401 - the S3 server, the namespace

pytestmark = [pytest.mark.cluster, pytest.mark.s3]


@pytest.fixture(scope="module")
def operator(cluster, cluster_s3, tmp_path_factory):  # noqa: F811
    cluster.kubectl("apply", "-f", str(REPO / "crds"))
    cluster.kubectl("wait", "--for=condition=Established", "crd/searchruns.searchrun.dev", "--timeout=60s")
    config = {**TEST_OPERATOR_CONFIG, "lineageOffloadBytes": 4096}
    op = Operator(cluster, cluster_s3, config, tmp_path_factory.mktemp("operator"), namespaces=f"{NS_PREFIX}*", bucket=BUCKET)
    op.start()
    try:
        yield op
    finally:
        op.stop()
        op.delete_webhook_configurations()


def _cli(cluster, s3, cwd: Path, *args: str, via_kubectl: bool = False) -> subprocess.CompletedProcess:
    """The CLI as a user runs it, from a folder without local runs; S3 through the usual env."""
    env = {**os.environ, **s3.env(), "KUBECONFIG": cluster.kubeconfig}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    cmd = [cluster.kubectl_path, "searchrun", *args] if via_kubectl else [sys.executable, "-m", "searchrun", *args]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def _rows(tree: str) -> dict[str, str]:
    lines = tree.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("STEP "))
    return {re.sub(r"^[├└│─ ]+", "", line).split()[0]: line for line in lines[header + 1:]}


def test_get_logs_and_rerun_step_against_cluster_runs(cluster, operator, run_ns, cluster_s3, tmp_path):  # noqa: F811
    apply(cluster, run_ns, manifest(EXAMPLES / "searchrun-simple.yaml"))
    apply(cluster, run_ns, manifest(EXAMPLES / "searchrun.yaml", cache__mode="ReadWrite"))
    simple = wait_finished(cluster, run_ns, "what-is-bm25", operator)
    deep = wait_finished(cluster, run_ns, "quantum-ml", operator)
    assert simple["status"]["phase"] == deep["status"]["phase"] == "Succeeded"
    assert not simple["status"].get("lineageURI") and deep["status"].get("lineageURI"), "one in the status, one offloaded"
    cli = lambda *a, **kw: _cli(cluster, cluster_s3, tmp_path, *a, **kw)  # noqa: E731
    ns = ["-n", run_ns]

    # get: from the status
    r = cli("get", "what-is-bm25", *ns, "--kubeconfig", cluster.kubeconfig)
    assert r.returncode == 0, r.stderr
    assert "from the SearchRun's status" in r.stdout
    assert set(_rows(r.stdout)) == {"detect", "simple", "report"} and "found" in _rows(r.stdout)["simple"]
    # get: from the offloaded lineage (the status shows only the frontier)
    r = cli("get", "quantum-ml", *ns, "-o", "json")
    assert r.returncode == 0, r.stderr
    lineage = json.loads(r.stdout)
    steps = lineage["status"]["steps"]
    assert len(steps) == deep["status"]["lineageSummary"]["steps"] > len(deep["status"].get("steps") or [])
    assert_jobs_match_lineage(cluster, run_ns, {"metadata": deep["metadata"], "status": {"steps": steps}})
    assert lineage["spec"]["query"] == deep["spec"]["query"]
    assert yaml.safe_load(cli("get", "quantum-ml", *ns, "-o", "yaml").stdout)["status"]["steps"] == steps
    r = cli("get", "quantum-ml", *ns)
    assert r.returncode == 0 and "from the offloaded lineage" in r.stdout, r.stdout + r.stderr
    assert set(_rows(r.stdout)) == {s["id"] for s in steps}

    # logs: the live pod, then (the pods gone) the copy in the store
    live = cli("logs", "what-is-bm25", "simple", *ns)
    assert live.returncode == 0 and "(live)" in live.stderr, live.stderr
    payload = json.loads(live.stdout.strip().splitlines()[-1])
    assert payload["decision"] == next(s for s in simple["status"]["steps"] if s["id"] == "simple")["decision"]
    cluster.kubectl("-n", run_ns, "delete", "jobs", "-l", f"searchrun.dev/run-uid={simple['metadata']['uid']}",
                    "--cascade=foreground", "--wait=true", "--timeout=90s")
    cluster.kubectl("-n", run_ns, "wait", "--for=delete", "pods", "-l", f"searchrun.dev/run-uid={simple['metadata']['uid']}",
                    "--timeout=90s", check=False)
    stored = cli("logs", "what-is-bm25", "simple", *ns)
    assert stored.returncode == 0 and "the copy in the store" in stored.stderr, stored.stderr
    assert live.stdout.strip().splitlines()[-1] in stored.stdout

    # a second deep run: its steps are cache hits; a hit's log is its source's
    again = manifest(EXAMPLES / "searchrun.yaml", cache__mode="ReadWrite")
    again["metadata"]["name"] = "quantum-ml-again"
    apply(cluster, run_ns, again)
    second = wait_finished(cluster, run_ns, "quantum-ml-again", operator)
    uid1 = deep["metadata"]["uid"]
    assert not [j for j in run_jobs(cluster, run_ns, second["metadata"]["uid"])
                if j["metadata"]["labels"]["searchrun.dev/step-type"] == "traverse-node"]
    r = cli("get", "quantum-ml-again", *ns)
    assert r.returncode == 0 and f"[cached {uid1}/t0]" in _rows(r.stdout)["t0"], r.stdout + r.stderr
    r = cli("logs", "quantum-ml-again", "t0", *ns)
    assert r.returncode == 0 and f"the log of {uid1}/t0" in r.stdout and f"/runs/{uid1}/steps/t0/a1/" in r.stdout, r.stdout + r.stderr

    # rerun-step: locally, with the recorded input, next to the recorded decision
    r = cli("rerun-step", "quantum-ml", "t0", *ns)
    assert r.returncode == 0, r.stdout + r.stderr
    t0 = next(s for s in steps if s["id"] == "t0")
    decision = re.search(r"^\s+decision\s+(.*)$", r.stdout, re.M).group(1)
    assert decision.count(t0["decision"].split(";")[0]) == 2 and "≠" not in decision, r.stdout

    # the kubectl plugin
    r = cli("get", "what-is-bm25", *ns, via_kubectl=True)
    assert r.returncode == 0 and set(_rows(r.stdout)) == {"detect", "simple", "report"}, r.stdout + r.stderr

    # bad input: a clear error naming what is unknown
    r = cli("get", "no-such-run", *ns)
    assert r.returncode == 2 and f"no SearchRun 'no-such-run' in namespace {run_ns}" in r.stderr, r.stderr
    r = cli("logs", "quantum-ml", "t9-9", *ns)
    assert r.returncode == 2 and "has no step 't9-9'" in r.stderr, r.stderr
    r = cli("rerun-step", "what-is-bm25", "nope", *ns)
    assert r.returncode == 2 and "has no step 'nope'" in r.stderr, r.stderr
