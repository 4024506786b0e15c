"""`searchrun run`: the local executor end to end (real subprocesses, a local folder as the store)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"


def searchrun(*args, cwd, env=None, timeout=180):
    full_env = dict(os.environ)
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "searchrun", *args], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=timeout)


def write_manifest(tmp_path: Path, spec: dict, name: str = "t") -> Path:
    p = tmp_path / f"{name}.yaml"
    p.write_text(yaml.safe_dump({"apiVersion": "searchrun.dev/v1alpha1", "kind": "SearchRun",
                                 "metadata": {"name": name}, "spec": spec}))
    return p


def only_run_dir(tmp_path: Path) -> Path:
    runs = list((tmp_path / "searchrun-runs" / "runs").iterdir())
    assert len(runs) == 1
    return runs[0]


def test_deep_example_runs_end_to_end(tmp_path):
    r = searchrun("run", str(EXAMPLES / "searchrun.yaml"), cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    run_dir = only_run_dir(tmp_path)
    assert f"report:  {run_dir / 'report.html'}" in r.stdout
    assert f"lineage: {run_dir / 'lineage.json'}" in r.stdout
    assert "▶ t0" in r.stdout and "✓ report" in r.stdout
    lineage = json.loads((run_dir / "lineage.json").read_text())
    st = lineage["status"]
    assert st["phase"] == "Succeeded" and st["intent"] == "deep"
    budget = yaml.safe_load((EXAMPLES / "searchrun.yaml").read_text())["spec"]["budget"]
    assert st["budgetUsed"]["steps"] <= budget["maxSteps"]
    assert st["budgetUsed"]["parallel"] <= budget["maxParallel"]
    assert st["maxDepthReached"] == 2
    docs = [s["doc"] for s in st["steps"] if s["type"] == "traverse_node"]
    assert len(docs) == len(set(docs))
    # every step that ran wrote its output once, under the run's prefix
    for s in st["steps"]:
        if s["phase"] == "Succeeded":
            assert s["output"].startswith(f"file://{run_dir}/")
    html = (run_dir / "report.html").read_text()
    assert "How can quantum computing speed up machine learning" in html and "<svg" in html
    report = json.loads((run_dir / "report.json").read_text())
    assert report["answers"], "the sample corpus answers the deep example"
    assert {a["depth"] for a in report["answers"]} >= {1, 2}


def test_simple_example_runs_three_steps(tmp_path):
    r = searchrun("run", str(EXAMPLES / "searchrun-simple.yaml"), cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    st = json.loads((only_run_dir(tmp_path) / "lineage.json").read_text())["status"]
    assert [s["type"] for s in st["steps"]] == ["detect_intent", "simple_search", "create_report"]
    report = json.loads((only_run_dir(tmp_path) / "report.json").read_text())
    assert report["answers"][0]["docId"].startswith("bm25")


def test_a_failing_step_is_retried_then_falls_back_visibly(tmp_path):
    m = write_manifest(tmp_path, {"query": "How can quantum computing speed up machine learning, and what limits it?",
                                  "steps": {"retries": 1, "backoffSeconds": 0.1}})
    r = searchrun("run", str(m), cwd=tmp_path, env={"SEARCHRUN_FAIL_STEPS": "plan"})
    assert r.returncode == 0, r.stdout + r.stderr
    assert "plan_search failed: falling back to simple search" in r.stdout
    st = json.loads((only_run_dir(tmp_path) / "lineage.json").read_text())["status"]
    plan = next(s for s in st["steps"] if s["id"] == "plan")
    assert plan["phase"] == "Failed" and plan["attempts"] == 2 and "forced failure" in plan["message"]
    assert st["fallback"] == "plan_search failed" and st["phase"] == "Succeeded"


def test_a_run_whose_fan_in_fails_exits_non_zero_with_the_reason(tmp_path):
    m = write_manifest(tmp_path, {"query": "What is BM25?", "steps": {"retries": 0}})
    r = searchrun("run", str(m), cwd=tmp_path, env={"SEARCHRUN_FAIL_STEPS": "simple"})
    assert r.returncode == 1
    assert "Run Failed: simple_search failed" in r.stdout


BAD = [
    ({"query": "q", "bogus": 1}, "spec.bogus: unknown field"),
    ({"query": "q", "budget": {"maxAgents": 11}}, "spec.budget.maxAgents: must be <= 10 (got 11)"),
    ({"query": "q", "budget": {"maxDepth": 0}}, "spec.budget.maxDepth: must be >= 1 (got 0)"),
    ({"query": "q", "budget": {"maxAgents": 8, "maxSteps": 10}}, "budget.maxSteps (10) must be at least budget.maxAgents + 4 = 12"),
    ({"query": ""}, "spec.query: must be at least 1 character(s)"),
    ({"query": "   "}, "spec.query must not be blank"),
    ({"query": "x" * 2001}, "spec.query: must be at most 2000 characters"),
    ({"query": "q", "corpus": {"uri": "missing.json"}}, "missing.json"),
]


@pytest.mark.parametrize("spec,message", BAD, ids=[m for _, m in BAD])
def test_bad_input_is_rejected_naming_the_field_and_nothing_is_written(tmp_path, spec, message):
    m = write_manifest(tmp_path, spec)
    r = searchrun("run", str(m), cwd=tmp_path)
    assert r.returncode == 2, r.stdout + r.stderr
    assert message in r.stderr
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "searchrun-runs").exists(), "nothing half-written"


def test_a_corpus_that_does_not_parse_is_rejected(tmp_path):
    (tmp_path / "corpus.json").write_bytes(b'{"documents": {"a": \xff')
    m = write_manifest(tmp_path, {"query": "q", "corpus": {"uri": "corpus.json"}})
    r = searchrun("run", str(m), cwd=tmp_path)
    assert r.returncode == 2 and "corpus" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "searchrun-runs").exists()


def test_markdown_corpus_import_then_run(tmp_path):
    out = tmp_path / "coffee.json"
    r = searchrun("corpus", "import", str(EXAMPLES / "corpus" / "markdown"), "-o", str(out), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    graph = json.loads(out.read_text())
    assert len(graph["documents"]) >= 5
    assert any(d["relationships"] for d in graph["documents"].values())
    m = write_manifest(tmp_path, {"query": "espresso grind size", "corpus": {"uri": "coffee.json"}})
    r = searchrun("run", str(m), cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr


def test_crd_and_validate_commands(tmp_path):
    r = searchrun("crd", cwd=tmp_path)
    assert r.returncode == 0 and "kind: CustomResourceDefinition" in r.stdout
    r = searchrun("validate", str(EXAMPLES / "searchrun.yaml"), cwd=tmp_path)
    assert r.returncode == 0 and "valid SearchRun 'quantum-ml'" in r.stdout
