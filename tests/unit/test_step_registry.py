"""A step type is one module plus one registry line: a toy type runs through the engine and the
local executor without any other change to the package."""

from __future__ import annotations

import importlib
import io
import json
import sys
from pathlib import Path

import pytest

from searchrun import metrics, report
from searchrun.api import SearchRunSpec
from searchrun.steps import registry
from searchrun.steps.registry import STEP_MODULES_ENV, kind_of, step_types

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
from tests.support.simulation import SyntheticGraph, graph_outcome, simulate  # noqa: E402


@pytest.fixture
def toy_registered(monkeypatch):
    saved = dict(registry.STEP_KINDS)
    import tests.support.toy_step as toy

    importlib.reload(toy)  # registers its kinds (again, if an earlier test imported it)
    monkeypatch.setenv(STEP_MODULES_ENV, "tests.support.toy_step")
    monkeypatch.setenv("PYTHONPATH", f"{REPO}:{REPO / 'operator'}")
    yield toy
    registry.STEP_KINDS.clear()
    registry.STEP_KINDS.update(saved)


def test_the_built_in_types_are_the_registry():
    assert step_types() == ("detect_intent", "plan_search", "traverse_node", "simple_search", "aggregate_results",
                            "create_report")
    assert [kind_of(t).search for t in step_types()] == [False, False, True, False, False, False]
    with pytest.raises(ValueError, match="unknown step type 'nope'"):
        kind_of("nope")


def test_metrics_have_a_series_for_every_registered_type():
    created = {s.labels["step_type"] for m in metrics.STEPS_CREATED.collect() for s in m.samples}
    assert created == set(step_types())


def test_a_toy_step_type_runs_through_the_engine(toy_registered):
    spec = SearchRunSpec(query="q", budget=dict(maxAgents=3, maxDepth=2, maxSteps=40))
    r = simulate(spec, graph_outcome(SyntheticGraph(200, seed=1, answer_rate=0.5)))
    by_id = {s.id: s for s in r.status.steps}
    assert r.status.phase == "Succeeded"
    assert by_id["rerank"].type == "rerank_results" and by_id["rerank"].parents == ["aggregate"]
    assert by_id["report"].parents == ["rerank"]


def test_a_toy_step_type_runs_through_the_local_executor(toy_registered, tmp_path):
    from searchrun.cli_run import run_manifest

    manifest = tmp_path / "run.yaml"
    manifest.write_text(json.dumps({"apiVersion": "searchrun.dev/v1alpha1", "kind": "SearchRun", "metadata": {"name": "toy"},
                                    "spec": {"query": (REPO / "examples" / "searchrun.yaml").read_text().split('query: "')[1].split('"')[0],
                                             "corpus": {"uri": "builtin:sample"}}}))
    out = io.StringIO()
    rc = run_manifest(str(manifest), store=f"file://{tmp_path / 'store'}", out=out)
    assert rc == 0, out.getvalue()
    run_dir = next((tmp_path / "store" / "runs").iterdir())
    lineage = json.loads((run_dir / "lineage.json").read_text())
    steps = {s["id"]: s for s in lineage["status"]["steps"]}
    assert steps["rerank"]["type"] == "rerank_results" and steps["rerank"]["phase"] == "Succeeded"
    assert steps["report"]["parents"] == ["rerank"]
    data = json.loads((run_dir / "report.json").read_text())
    assert [s["rowLabel"] for s in data["steps"] if s["id"] == "rerank"] == ["rerank"]
    assert "rerank" in report.render_report(data)
