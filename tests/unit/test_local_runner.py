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


STEP_WRAPPER = """
import json, os, sys
ctx = json.loads(os.environ["SEARCHRUN_STEP"])
if ctx["step"]["stepId"] == "plan":
    print("step failed: plan failed (exit %s)" % os.environ["PLAN_EXIT"], file=sys.stderr)
    sys.exit(int(os.environ["PLAN_EXIT"]))
from searchrun.cli import main
sys.exit(main(["step"] + sys.argv[1:]))
"""


@pytest.mark.parametrize("code,attempts", [(3, 1), (1, 3)])
def test_the_local_runner_retries_transient_failures_only(tmp_path, monkeypatch, code, attempts):
    """A step that exits EXIT_PERMANENT is not retried (as a Job's podFailurePolicy does on a
    cluster); any other failure keeps its retries."""
    from searchrun.executors.local import LocalExecutor
    from searchrun.manifest import validate
    from searchrun.steps import EXIT_PERMANENT

    assert (code == EXIT_PERMANENT) == (attempts == 1)
    wrapper = tmp_path / "step.py"
    wrapper.write_text(STEP_WRAPPER)
    monkeypatch.setenv("PLAN_EXIT", str(code))
    run = validate({"apiVersion": "searchrun.dev/v1alpha1", "kind": "SearchRun", "metadata": {"name": "t"},
                    "spec": {"query": "How can quantum computing speed up machine learning, and what limits it?",
                             "steps": {"retries": 2, "backoffSeconds": 0.01}}})
    ex = LocalExecutor(run, f"file://{tmp_path}/store", "builtin:sample", step_command=[sys.executable, str(wrapper)])
    res = ex.execute()
    plan = next(s for s in res.status["steps"] if s["id"] == "plan")
    assert plan["phase"] == "Failed" and plan["attempts"] == attempts, plan
    assert f"exit {code}" in plan["message"]


def test_quiet_prints_the_one_line_outcome(tmp_path):
    r = searchrun("run", "--quiet", str(EXAMPLES / "searchrun-simple.yaml"), cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    lines = r.stdout.splitlines()
    assert len(lines) == 1 and lines[0].startswith("Run Succeeded: "), r.stdout
    m = write_manifest(tmp_path, {"query": "What is BM25?", "steps": {"retries": 0}})
    r = searchrun("run", "--quiet", str(m), cwd=tmp_path, env={"SEARCHRUN_FAIL_STEPS": "simple"})
    assert r.returncode == 1 and len(r.stdout.splitlines()) == 1
    assert r.stdout.startswith("Run Failed: simple_search failed")


BAD_METADATA = [
    ({"name": "n" * 254}, "metadata.name: must be at most 253 characters"),
    ({"name": "Not_A_Name"}, "metadata.name: String should match pattern"),
    ({"name": "a..b"}, "metadata.name: String should match pattern"),
    ({"name": "a.-b"}, "metadata.name: String should match pattern"),
    ({"name": "ok", "annotations": {"a": 1}}, "metadata.annotations.a: Input should be a valid string"),
    ({"name": "ok", "annotations": ["a"]}, "metadata.annotations: Input should be a valid dictionary"),
    ({"name": "ok", "labels": {"team": True}}, "metadata.labels.team: Input should be a valid string"),
    ({"name": "ok", "labels": {"team": "a b"}}, "label 'team': a value must be at most 63 characters"),
    ({"name": "ok", "labels": {"bad key!": "x"}}, "label key 'bad key!'"),
    ({"name": "ok", "annotations": {"x/" * 2 + "y": "v"}}, "annotation key"),
    ({"name": "ok", "namespace": "Team A"}, "metadata.namespace: String should match pattern"),
]


@pytest.mark.parametrize("meta,message", BAD_METADATA, ids=[m for _, m in BAD_METADATA])
def test_metadata_is_validated_as_the_api_server_does(meta, message):
    from searchrun.manifest import ManifestError, validate

    with pytest.raises(ManifestError) as e:
        validate({"apiVersion": "searchrun.dev/v1alpha1", "kind": "SearchRun", "metadata": meta, "spec": {"query": "q"}})
    assert message in str(e.value)


def test_good_metadata_is_accepted():
    from searchrun.manifest import validate

    run = validate({"apiVersion": "searchrun.dev/v1alpha1", "kind": "SearchRun",
                    "metadata": {"name": "a" * 253, "namespace": "team-a", "labels": {"app.kubernetes.io/name": "x", "e": ""},
                                 "annotations": {"example.com/note": "any text: ü \n"}}, "spec": {"query": "q"}})
    assert run.metadata.labels == {"app.kubernetes.io/name": "x", "e": ""}


def test_yaml_alias_expansion_is_bounded_anywhere_in_the_document(tmp_path):
    """A billion-laughs manifest: small on disk, huge once its aliases are expanded, in metadata
    (which the models keep as they are) as well as in spec."""
    bomb = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 9):
        bomb.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]")
    for where in ("metadata", "spec"):
        text = "apiVersion: searchrun.dev/v1alpha1\nkind: SearchRun\n"
        body = "\n".join("  " + line for line in bomb)
        if where == "metadata":
            text += f"metadata:\n  name: bomb\n  laughs:\n  {body.replace(chr(10), chr(10) + '  ')}\nspec:\n  query: q\n"
        else:
            text += f"metadata:\n  name: bomb\nspec:\n  query: q\n  laughs:\n  {body.replace(chr(10), chr(10) + '  ')}\n"
        p = tmp_path / f"{where}.yaml"
        p.write_text(text)
        r = searchrun("run", str(p), cwd=tmp_path, timeout=60)
        assert r.returncode == 2, r.stdout + r.stderr
        assert "expands to more than 100000 nodes" in r.stderr and "Traceback" not in r.stderr
    ok = tmp_path / "aliases.yaml"
    ok.write_text("apiVersion: searchrun.dev/v1alpha1\nkind: SearchRun\nmetadata:\n  name: ok\n"
                  "spec:\n  query: q\n  budget: &b {maxAgents: 2}\n")
    from searchrun.manifest import load_manifest

    assert load_manifest(ok).spec.budget.maxAgents == 2
