"""`searchrun get|logs|rerun-step` on a local store, including a cluster run's offloaded lineage."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import yaml

from searchrun.api import SearchRunSpec
from searchrun.executors.base import lineage_key

from test_local_runner import REPO, searchrun, write_manifest

QUERY = "How can quantum computing speed up machine learning, and what limits it?"


def _failed_run(tmp_path: Path) -> str:
    m = write_manifest(tmp_path, {"query": QUERY, "budget": {"maxAgents": 2, "maxDepth": 2, "maxSteps": 30},
                                  "steps": {"retries": 1, "backoffSeconds": 0.1}})
    r = searchrun("run", str(m), cwd=tmp_path, env={"SEARCHRUN_FAIL_STEPS": "t1"})
    assert r.returncode == 0, r.stdout + r.stderr
    return re.search(r"\(uid ([0-9a-f]+)\)", r.stdout).group(1)


def test_get_logs_and_rerun_step_of_a_local_run(tmp_path):
    uid = _failed_run(tmp_path)
    lineage = json.loads((tmp_path / "searchrun-runs" / "runs" / uid / "lineage.json").read_text())["status"]
    r = searchrun("get", uid, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("STEP "))
    rows = {re.sub(r"^[├└│─ ]+", "", line).split()[0]: line for line in lines[header + 1:]}
    assert set(rows) == {s["id"] for s in lineage["steps"]}
    assert "Failed" in rows["t1"] and "2 " in rows["t1"]  # two attempts
    assert "found" in rows["t0"] and "└─ plan" in r.stdout and "├─ t0" in r.stdout
    for fmt, parse in (("json", json.loads), ("yaml", yaml.safe_load)):
        r = searchrun("get", uid, "-o", fmt, cwd=tmp_path)
        assert parse(r.stdout)["status"]["steps"] == lineage["steps"]

    r = searchrun("logs", uid, "t1", "--attempt", "1", cwd=tmp_path)
    assert r.returncode == 0 and "forced failure of step t1" in r.stdout
    # each step's log is its own: parallel steps never interleave
    trav = [s["id"] for s in lineage["steps"] if s["type"] == "traverse_node" and s["phase"] == "Succeeded"]
    assert len(trav) >= 3
    for sid in trav:
        log = searchrun("logs", uid, sid, cwd=tmp_path).stdout
        paths = set(re.findall(r"/steps/([a-z0-9-]+)/a\d+/", log))
        assert paths == {sid}, (sid, log)

    r = searchrun("rerun-step", uid, "t0", cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    t0 = next(s for s in lineage["steps"] if s["id"] == "t0")
    decision = re.search(r"^\s+decision\s+(.*)$", r.stdout, re.M).group(1)
    assert decision.count(t0["decision"].split(";")[0]) == 2 and "≠" not in decision, r.stdout  # recorded == rerun
    # the rerun went to a scratch store, not the run's
    assert not [p for p in (tmp_path / "searchrun-runs" / "runs").iterdir() if p.name != uid]


def test_bad_input_to_the_debug_commands(tmp_path):
    uid = _failed_run(tmp_path)
    r = searchrun("rerun-step", uid, "t9-9", cwd=tmp_path)
    assert r.returncode == 2 and "has no step 't9-9'" in r.stderr
    r = searchrun("logs", uid, "nope", cwd=tmp_path)
    assert r.returncode == 2 and "has no step 'nope'" in r.stderr
    r = searchrun("get", "0123456789abcdef", cwd=tmp_path)
    assert r.returncode == 2 and "no run 0123456789abcdef" in r.stderr


def test_get_reads_an_offloaded_lineage_snapshot_and_journal(tmp_path):
    from searchrun.artifacts import read_uri  # noqa: F401
    from test_lineage_journal import _reconciler, _rounds
    from support.simulation import SyntheticGraph, graph_outcome

    spec = SearchRunSpec(query="q", budget=dict(maxAgents=10, maxDepth=4, maxFanoutPerNode=5, maxSteps=600, maxParallel=20,
                                                maxTokens=10_000_000, deadlineSeconds=86400))
    outcome = graph_outcome(SyntheticGraph(5000, branching=10, seed=5), fail_rate=0.05, seed=5)
    r = _reconciler(tmp_path, spec)
    for d, _ in _rounds(spec, outcome):
        r.status = d.status
        r._status_body(d)
    assert r.journal_seq > 0  # the store holds a snapshot plus journal entries
    snapshot = json.loads((tmp_path / lineage_key("abc")).read_text())
    final = d.status.model_dump(mode="json", exclude_none=True)
    assert snapshot["status"]["steps"] != final["steps"]  # the journal holds what came after the snapshot
    out = searchrun("get", "abc", "--store", f"file://{tmp_path}", "-o", "json", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["status"]["steps"] == final["steps"]
    tree = searchrun("get", "abc", "--store", f"file://{tmp_path}", cwd=tmp_path)
    lines = tree.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("STEP "))
    assert tree.returncode == 0 and len(lines) - header - 1 == len(d.status.steps)


def test_kubectl_plugin_is_a_console_script():
    text = (REPO / "pyproject.toml").read_text()
    assert 'kubectl-searchrun = "searchrun.cli:kubectl_main"' in text
    exe = shutil.which("kubectl-searchrun", path=str(Path(__import__("sys").executable).parent))
    assert exe, "reinstall the package (hack/setup-python.sh) to get the kubectl plugin"
    import subprocess

    r = subprocess.run([exe, "get", "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "RUN" in r.stdout


@pytest.mark.s3
def test_get_logs_and_rerun_step_against_an_s3_store(tmp_path, s3_bucket):
    m = write_manifest(tmp_path, {"query": QUERY, "budget": {"maxAgents": 2, "maxDepth": 1, "maxSteps": 10},
                                  "cache": {"mode": "ReadWrite"}})
    r = searchrun("run", str(m), "--store", s3_bucket, cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    uid = re.search(r"\(uid ([0-9a-f]+)\)", r.stdout).group(1)
    r2 = searchrun("run", str(m), "--store", s3_bucket, cwd=tmp_path)  # the cache lives in the same bucket
    uid2 = re.search(r"\(uid ([0-9a-f]+)\)", r2.stdout).group(1)
    tree = searchrun("get", uid2, "--store", s3_bucket, cwd=tmp_path)
    assert tree.returncode == 0 and f"[cached {uid}/t0]" in tree.stdout, tree.stdout + tree.stderr
    log = searchrun("logs", uid2, "t0", "--store", s3_bucket, cwd=tmp_path)
    assert log.returncode == 0 and f"the log of {uid}/t0" in log.stdout and f"/runs/{uid}/steps/t0/a1/" in log.stdout
    rerun = searchrun("rerun-step", uid2, "t0", "--store", s3_bucket, cwd=tmp_path)
    assert rerun.returncode == 0 and "≠" not in rerun.stdout.split("output:")[0], rerun.stdout + rerun.stderr
