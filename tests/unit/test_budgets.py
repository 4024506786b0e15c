"""Every budget is declared once, on api.Budget: the admission caps, the metric labels and the
report rows are built from it (the chart's caps: test_chart_budgets.py)."""

from __future__ import annotations

import re

import pytest
from pydantic import ValidationError

from searchrun import admission, api, metrics, report
from searchrun.admission import Caps, Policy, review
from searchrun.crd import crd

BUDGETS = list(api.Budget.model_fields)


def _lower_bound(name: str):
    return next(m.ge for m in api.Budget.model_fields[name].metadata if hasattr(m, "ge"))


def test_every_budget_field_has_its_metadata():
    assert list(api.BUDGET_FIELDS) == BUDGETS
    usage = set(api.BudgetUsage.model_fields)
    for name, meta in api.BUDGET_FIELDS.items():
        assert meta.used is None or meta.used in usage, f"{name}: budgetUsed has no field {meta.used!r}"
        assert meta.label and meta.cap >= _lower_bound(name), name
    # the one budget status.budgetUsed does not measure
    assert [n for n, m in api.BUDGET_FIELDS.items() if m.used is None] == ["maxFanoutPerNode"]


def test_the_metadata_stays_out_of_the_crd():
    budget = crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["budget"]
    for name in BUDGETS:
        assert set(budget["properties"][name]) == {"type", "default", "minimum", "maximum", "description"}, name


def test_caps_are_the_budget_fields_with_the_cluster_defaults():
    assert list(Caps.model_fields) == BUDGETS
    assert Caps().model_dump() == {
        "maxAgents": 10, "maxDepth": 5, "maxFanoutPerNode": 10, "maxSteps": 1000, "maxParallel": 20,
        "maxTokens": 2_000_000, "maxCostUSD": 50.0, "deadlineSeconds": 7200,
    }
    for name in BUDGETS:
        assert Caps.model_fields[name].annotation is api.Budget.model_fields[name].annotation, name
        bad = _lower_bound(name) - 1
        with pytest.raises(ValidationError, match=name):
            Caps(**{name: bad})
    with pytest.raises(ValidationError, match="maxWidgets"):
        Caps(maxWidgets=3)


def test_policy_clamps_only_clampable_budgets():
    assert admission.CLAMPABLE == tuple(BUDGETS)  # today every budget may be clamped
    with pytest.raises(ValidationError, match=r"clamp\.0"):
        Policy(clamp=["maxWidgets"])


def test_a_budget_that_may_not_be_clamped_is_rejected_even_in_clamp_mode(monkeypatch):
    monkeypatch.setattr(admission, "CLAMPABLE", tuple(n for n in BUDGETS if n != "maxParallel"))
    p = Policy(mode="clamp", caps=Caps(maxParallel=4, maxTokens=5000))
    v = review({"query": "q", "budget": {"maxParallel": 9, "maxTokens": 8000}}, p, clamp=True)
    assert not v.allowed and v.message == "spec.budget.maxParallel: 9 exceeds the cluster's limit of 4"


def test_budget_exhaustion_metric_has_a_series_per_budget_from_the_start():
    labels = [s.labels["budget"] for m in metrics.REGISTRY.collect() if m.name == "searchrun_budget_exhaustions"
              for s in m.samples if s.name == "searchrun_budget_exhaustions_total"]
    assert sorted(labels) == sorted(BUDGETS)


def _rows(page: str) -> list[tuple[str, str, str]]:
    """(budget field, used, limit) of each budget table row."""
    table = page.split('<table class="budget">', 1)[1].split("</table>", 1)[0]
    return re.findall(r'<tr[^>]*><td>[^<]*<span class="muted">\((\w+)\)</span></td><td class="num">([^<]*)</td>'
                      r'<td class="num">([^<]*)</td>', table)


def _data(steps: list[dict], limits_hit: list[str]) -> dict:
    return {
        "run": {"name": "r", "phase": "Succeeded", "limitsHit": limits_hit},
        "steps": steps,
        "budget": {"used": {"agents": 1, "depth": 2, "steps": 7, "parallel": 2, "tokens": 1000, "costUSD": 0.0,
                            "elapsedSeconds": 3.0},
                   "limits": api.Budget(maxFanoutPerNode=3).model_dump()},
    }


def _step(sid: str, parents: list[str], t: str = "traverse_node", **kw) -> dict:
    return {"id": sid, "type": t, "parents": parents, "phase": "Succeeded", **kw}


def test_report_has_a_row_per_budget_with_its_label():
    assert report._BUDGET_ROWS == [(m.used, n, m.label) for n, m in api.BUDGET_FIELDS.items()]
    page = report.render_report(_data([], []))
    assert [r[0] for r in _rows(page)] == BUDGETS
    for name, meta in api.BUDGET_FIELDS.items():
        assert f"<td>{meta.label} <span class=\"muted\">({name})</span></td>" in page
    # every budget budgetUsed does not measure is measured from the steps
    assert {n for n, m in api.BUDGET_FIELDS.items() if m.used is None} == set(report._USED_FROM_STEPS)


def test_report_fanout_row_shows_the_largest_fanout_used():
    steps = [
        _step("plan", ["intent"], "plan_search"),
        _step("t0", ["plan"]), _step("t1", ["plan"]), _step("t2", ["plan"]), _step("t3", ["plan"]),  # 4 seeds: maxAgents'
        _step("t0-0", ["t0"]), _step("t0-1", ["t0"], phase="Skipped"),  # spawned, then skipped: still fan-out
        _step("t1-0", ["t1"]),
        _step("agg", ["t0-0", "t0-1", "t1-0"], "aggregate_results"),
    ]
    page = report.render_report(_data(steps, ["maxFanoutPerNode"]))
    rows = {r[0]: r for r in _rows(page)}
    assert rows["maxFanoutPerNode"] == ("maxFanoutPerNode", "2", "3")
    assert re.search(r'<tr class="hit"><td>fan-out per node <span class="muted">\(maxFanoutPerNode\)', page)
    # a run that never went below its seeds used a fan-out of 0
    rows = {r[0]: r for r in _rows(report.render_report(_data(steps[:5], [])))}
    assert rows["maxFanoutPerNode"] == ("maxFanoutPerNode", "0", "3")
