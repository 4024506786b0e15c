"""The chart's budget caps are api.Budget's, as the CRD is: a test fails when they drift.

hack/gen-chart-budgets.py writes them; these tests read the chart's files (no helm needed).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import yaml

from searchrun import api

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "searchrun-operator"
FIX = "run `.venv/bin/python hack/gen-chart-budgets.py`"


def _bounds(name: str) -> dict:
    meta = api.Budget.model_fields[name].metadata
    return {"minimum": next(m.ge for m in meta if hasattr(m, "ge"))}


def _json_type(name: str) -> str:
    return {int: "integer", float: "number"}[api.Budget.model_fields[name].annotation]


def _policy_schema() -> dict:
    return json.loads((CHART / "values.schema.json").read_text())["properties"]["policy"]["properties"]


def test_values_yaml_caps_are_the_budget_caps():
    caps = yaml.safe_load((CHART / "values.yaml").read_text())["policy"]["caps"]
    assert list(caps) == list(api.BUDGET_FIELDS), f"policy.caps fields differ from api.Budget's: {FIX}"
    for name, meta in api.BUDGET_FIELDS.items():
        assert caps[name] == meta.cap, f"policy.caps.{name} is {caps[name]}, api.Budget says {meta.cap}: {FIX}"
        assert isinstance(caps[name], (int, float)) and not isinstance(caps[name], bool), name


def test_values_schema_caps_have_the_budget_types_and_bounds():
    caps = _policy_schema()["caps"]
    assert caps["additionalProperties"] is False
    assert list(caps["properties"]) == list(api.BUDGET_FIELDS), f"policy.caps in values.schema.json: {FIX}"
    for name in api.BUDGET_FIELDS:
        want = {"type": _json_type(name), **_bounds(name)}
        assert caps["properties"][name] == want, f"values.schema.json policy.caps.{name}: {FIX}"


def test_values_schema_clamp_enum_is_the_clampable_budgets():
    enum = _policy_schema()["clamp"]["items"]["enum"]
    assert enum == [n for n, m in api.BUDGET_FIELDS.items() if m.clampable], f"policy.clamp enum: {FIX}"


def test_operator_config_template_passes_the_caps_whole():
    tpl = (CHART / "templates" / "_helpers.tpl").read_text()
    assert re.search(r"(?m)^  caps: \{\{ \.Values\.policy\.caps \| toJson \}\}$", tpl), (
        "the operator config should pass policy.caps whole, so that the schema alone names its fields")
    assert not re.search(r"caps\.\w+", tpl.replace(".Values.policy.caps |", "")), "a cap is named field by field"


def test_generator_leaves_the_checked_in_chart_unchanged():
    r = subprocess.run([sys.executable, str(REPO / "hack" / "gen-chart-budgets.py"), "--check"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
