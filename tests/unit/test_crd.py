"""The CRD in crds/ is generated from the models: they cannot drift apart."""

from pathlib import Path

import yaml

from searchrun import api
from searchrun.crd import crd, crd_yaml

CRD_FILE = Path(__file__).resolve().parents[2] / "crds" / "searchrun.dev_searchruns.yaml"


def test_checked_in_crd_matches_the_models():
    assert CRD_FILE.read_text() == crd_yaml(), "crds/ is stale: run `searchrun crd -o crds/searchrun.dev_searchruns.yaml`"


def _walk(node, path="$"):
    if isinstance(node, dict):
        yield path, node
        for k, v in node.items():
            yield from _walk(v, f"{path}.{k}")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _walk(v, f"{path}[{i}]")


def test_schema_is_structural():
    schema = crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    for path, node in _walk(schema):
        for bad in ("$ref", "anyOf", "allOf", "oneOf", "title", "$defs", "const"):
            assert bad not in node, f"{path} has {bad}"
        if "properties" in node:
            assert node.get("type") == "object", path


def test_bounds_defaults_enums_and_cel_come_from_the_models():
    spec = crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    budget = spec["properties"]["budget"]
    agents = budget["properties"]["maxAgents"]
    assert (agents["minimum"], agents["maximum"], agents["default"]) == (1, 10, 3)
    depth = budget["properties"]["maxDepth"]
    assert (depth["minimum"], depth["maximum"], depth["default"]) == (1, 5, 3)
    assert budget["properties"]["maxFanoutPerNode"]["default"] == 2
    assert spec["properties"]["query"]["maxLength"] == api.MAX_QUERY_CHARS
    assert spec["properties"]["agent"]["properties"]["type"]["enum"] == ["offline", "openai"]
    assert budget["x-kubernetes-validations"] == api.CEL_BUDGET_RULES
    # immutable but for the budget, which a retry may raise (the webhook allows it only with a new token)
    rule = next(r["rule"] for r in spec["x-kubernetes-validations"] if "oldSelf" in r["rule"])
    for name in api.SearchRunSpec.model_fields:
        assert (f"self.{name} == oldSelf.{name}" in rule) == (name != "budget"), name
    assert spec["required"] == ["query"]


def test_names_subresource_and_printer_columns():
    c = crd()
    names = c["spec"]["names"]
    assert (c["spec"]["group"], names["kind"], names["plural"], names["shortNames"]) == ("searchrun.dev", "SearchRun", "searchruns", ["sr"])
    v = c["spec"]["versions"][0]
    assert v["name"] == "v1alpha1" and v["subresources"] == {"status": {}}
    cols = [col["name"] for col in v["additionalPrinterColumns"] if "priority" not in col]
    assert cols == ["Phase", "Intent", "Steps", "Depth", "Tokens", "Cost", "Age"]
    assert yaml.safe_load(crd_yaml()) == c
