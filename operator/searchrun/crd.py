"""Generate the SearchRun CRD from the pydantic models.

pydantic's JSON schema is turned into a structural OpenAPI v3 schema: ``$ref``s
inlined, ``Optional`` as ``nullable``, bounds, defaults, patterns and enums kept,
cross-field rules added as CEL ``x-kubernetes-validations``.
"""

from __future__ import annotations

import copy
from typing import Any

import yaml

from . import api

_KEEP = {"type", "format", "description", "default", "enum", "minimum", "maximum", "exclusiveMinimum",
         "exclusiveMaximum", "minLength", "maxLength", "pattern", "items", "properties", "required",
         "additionalProperties", "nullable", "maxItems", "minItems"}


def _structural(node: Any, defs: dict) -> Any:
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        target = copy.deepcopy(defs[node["$ref"].split("/")[-1]])
        extra = {k: v for k, v in node.items() if k != "$ref"}
        target.update(extra)
        return _structural(target, defs)
    if "anyOf" in node:
        variants = [v for v in node["anyOf"] if v.get("type") != "null"]
        nullable = len(variants) != len(node["anyOf"])
        if len(variants) != 1:
            raise ValueError(f"cannot make a structural schema of anyOf {node['anyOf']}")
        merged = dict(variants[0])
        merged.update({k: v for k, v in node.items() if k != "anyOf"})
        out = _structural(merged, defs)
        if nullable:
            out["nullable"] = True
        return out
    if "allOf" in node and len(node["allOf"]) == 1:
        merged = dict(node["allOf"][0])
        merged.update({k: v for k, v in node.items() if k != "allOf"})
        return _structural(merged, defs)
    if "const" in node:
        node = {**{k: v for k, v in node.items() if k != "const"}, "enum": [node["const"]]}
    out: dict[str, Any] = {}
    for k, v in node.items():
        if k not in _KEEP:
            continue
        if k == "properties":
            out[k] = {name: _structural(sub, defs) for name, sub in v.items()}
        elif k == "items":
            out[k] = _structural(v, defs)
        elif k == "additionalProperties":
            if v is False:
                continue  # unknown fields: the API server rejects them (kubectl --validate=strict) or prunes them
            out[k] = _structural(v, defs) if isinstance(v, dict) else v
        else:
            out[k] = v
    if "enum" in out and "type" not in out:
        out["type"] = "string"
    if out.get("type") == "object" and "properties" not in out and "additionalProperties" not in out:
        out["x-kubernetes-preserve-unknown-fields"] = True
    return out


def _schema_of(model) -> dict:
    raw = model.model_json_schema(mode="validation", ref_template="#/$defs/{model}")
    defs = raw.pop("$defs", {})
    return _structural(raw, defs)


def _immutable_but_budget() -> str:
    """Every spec field but the budget keeps its value (the admission webhook allows a budget
    change only with a new retry token on a finished run: ``searchrun.retry``)."""
    parts = []
    for name, info in api.SearchRunSpec.model_fields.items():
        if name == "budget":
            continue
        if info.is_required():
            parts.append(f"self.{name} == oldSelf.{name}")
        else:
            parts.append(f"has(self.{name}) == has(oldSelf.{name}) && (!has(self.{name}) || self.{name} == oldSelf.{name})")
    return " && ".join(f"({p})" for p in parts)


def spec_schema() -> dict:
    s = _schema_of(api.SearchRunSpec)
    props = s["properties"]
    props["budget"]["x-kubernetes-validations"] = api.CEL_BUDGET_RULES
    props["agent"]["x-kubernetes-validations"] = api.CEL_AGENT_RULES
    props["corpus"]["x-kubernetes-validations"] = api.CEL_CORPUS_RULES
    s["x-kubernetes-validations"] = [
        {"rule": _immutable_but_budget(), "message": "spec is immutable but for spec.budget, which a retry may raise "
                                                     "(searchrun retry): create a new SearchRun to change anything else"},
        *api.CEL_SPEC_RULES,
    ]
    # Nested defaults only apply when the parent object is present: default each parent to
    # its full default value (CEL rules are checked against defaults too).
    defaults = api.SearchRunSpec(query="x").model_dump(mode="json", exclude_none=True)
    for name in ("corpus", "agent", "budget", "steps", "artifacts"):
        props[name]["default"] = defaults[name]
    props["steps"]["properties"]["resources"]["default"] = defaults["steps"]["resources"]
    return s


def status_schema() -> dict:
    s = _schema_of(api.SearchRunStatus)
    # kopf keeps its own bookkeeping in status when a handler returns a value; allow it.
    s["x-kubernetes-preserve-unknown-fields"] = True
    return s


PRINTER_COLUMNS = [
    {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
    {"name": "Intent", "type": "string", "jsonPath": ".status.intent"},
    {"name": "Steps", "type": "integer", "jsonPath": ".status.stepCount"},
    {"name": "Depth", "type": "integer", "jsonPath": ".status.maxDepthReached"},
    {"name": "Tokens", "type": "integer", "jsonPath": ".status.tokens"},
    {"name": "Cost", "type": "number", "jsonPath": ".status.costUSD"},
    {"name": "Stopped-By", "type": "string", "jsonPath": ".status.stoppedBy", "priority": 1},
    {"name": "Report", "type": "string", "jsonPath": ".status.reportURI", "priority": 1},
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
]


def crd() -> dict:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{api.PLURAL}.{api.GROUP}"},
        "spec": {
            "group": api.GROUP,
            "scope": "Namespaced",
            "names": {"kind": api.KIND, "listKind": f"{api.KIND}List", "plural": api.PLURAL,
                      "singular": api.SINGULAR, "shortNames": api.SHORT_NAMES, "categories": ["all"]},
            "versions": [{
                "name": api.VERSION,
                "served": True,
                "storage": True,
                "subresources": {"status": {}},
                "additionalPrinterColumns": PRINTER_COLUMNS,
                "schema": {"openAPIV3Schema": {
                    "type": "object",
                    "description": "A search over a document graph by agents, one Kubernetes Job per step, within budgets.",
                    "required": ["spec"],
                    "properties": {
                        "apiVersion": {"type": "string"},
                        "kind": {"type": "string"},
                        "metadata": {"type": "object"},
                        "spec": spec_schema(),
                        "status": status_schema(),
                    },
                }},
            }],
        },
    }


def crd_yaml() -> str:
    header = "# Generated by `searchrun crd` from operator/searchrun/api/. Do not edit by hand.\n"
    return header + yaml.safe_dump(crd(), sort_keys=False, width=120)
