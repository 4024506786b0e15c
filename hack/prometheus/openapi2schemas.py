#!/usr/bin/env python3
"""JSON schemas for kubeconform, made offline: from a real API server's OpenAPI v3 and from CRDs.

kubeconform downloads its schemas from the internet by default; build machines can't. This
writes one self-contained JSON schema per kind, named the way kubeconform looks them up with

    -schema-location '<out>/{{ .ResourceKind }}{{ .KindSuffix }}.json'

(``deployment-apps-v1.json``, ``service-v1.json``, ``searchrun-searchrun-v1alpha1.json``, ...).

Schemas are strict, as kubeconform's ``-strict`` schemas are: every object that lists its
properties gets ``additionalProperties: false`` (unless it says
``x-kubernetes-preserve-unknown-fields``), so an unknown or misspelt field is an error.

    openapi2schemas.py --out DIR [--kubectl PATH --kubeconfig FILE] [--crd FILE ...]

``--kubectl`` fetches ``/openapi/v3`` and each group-version from the API server; ``--crd``
adds the kinds of CustomResourceDefinitions in a YAML file (several documents allowed).
Prints the number of schemas written.
"""

from __future__ import annotations

import argparse
import copy
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml


def kind_suffix(group: str, version: str) -> str:
    """kubeconform's {{ .KindSuffix }}: -<first label of the group>-<version>, or -<version> for core."""
    if not group:
        return f"-{version}"
    return f"-{group.split('.')[0].lower()}-{version}"


MAPS_OF_SCHEMAS = ("properties", "patternProperties", "definitions", "$defs")


def strictify(node: Any) -> Any:
    """A schema made strict: additionalProperties false wherever properties are listed (and the
    schema doesn't preserve unknown fields); int-or-string as oneOf; OpenAPI's nullable as a type."""
    if isinstance(node, list):
        return [strictify(x) for x in node]
    if not isinstance(node, dict):
        return node
    out: dict = {}
    for k, v in node.items():
        if k in MAPS_OF_SCHEMAS and isinstance(v, dict):
            out[k] = {name: strictify(sub) for name, sub in v.items()}  # names are data, not keywords
        elif k in ("enum", "default", "example", "required", "x-kubernetes-group-version-kind", "x-kubernetes-list-map-keys"):
            out[k] = v
        else:
            out[k] = strictify(v)
    if "properties" in out and "additionalProperties" not in out and not out.get("x-kubernetes-preserve-unknown-fields"):
        out["additionalProperties"] = False
    if out.get("x-kubernetes-int-or-string") and "oneOf" not in out and "anyOf" not in out:
        out.pop("type", None)
        out["oneOf"] = [{"type": "integer"}, {"type": "string"}]
    if out.get("format") == "int-or-string":
        out.pop("format")
    if out.get("nullable") is True and isinstance(out.get("type"), str):
        out.pop("nullable")
        out["type"] = [out["type"], "null"]
    return out


def _refs(node: Any, found: set[str]) -> None:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/components/schemas/"):
            found.add(ref.rsplit("/", 1)[1])
        for v in node.values():
            _refs(v, found)
    elif isinstance(node, list):
        for v in node:
            _refs(v, found)


def _rewrite_refs(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: ("#/definitions/" + v.rsplit("/", 1)[1] if k == "$ref" and isinstance(v, str) else _rewrite_refs(v))
                for k, v in node.items()}
    if isinstance(node, list):
        return [_rewrite_refs(v) for v in node]
    return node


def schemas_from_openapi_v3(doc: dict) -> dict[str, dict]:
    """{file name: schema} for every kind with x-kubernetes-group-version-kind in one v3 document."""
    defs = doc.get("components", {}).get("schemas", {})
    out: dict[str, dict] = {}
    for name, schema in defs.items():
        for gvk in schema.get("x-kubernetes-group-version-kind") or []:
            if not gvk.get("kind") or gvk["kind"].endswith("List") or gvk["kind"] in ("WatchEvent", "DeleteOptions", "Status"):
                continue
            needed: set[str] = {name}
            todo = [name]
            while todo:
                found: set[str] = set()
                _refs(defs[todo.pop()], found)
                for f in found - needed:
                    if f in defs:
                        needed.add(f)
                        todo.append(f)
            definitions = {n: strictify(_rewrite_refs(defs[n])) for n in sorted(needed)}
            file = f"{gvk['kind'].lower()}{kind_suffix(gvk.get('group', ''), gvk['version'])}.json"
            out[file] = {
                "$schema": "https://json-schema.org/draft/2020-12/schema",
                "description": f"{gvk.get('group') or 'core'}/{gvk['version']} {gvk['kind']} (from the API server's OpenAPI v3)",
                "$ref": f"#/definitions/{name}",
                "definitions": definitions,
            }
    return out


def schemas_from_crd(crd: dict) -> dict[str, dict]:
    spec = crd["spec"]
    group, kind = spec["group"], spec["names"]["kind"]
    out: dict[str, dict] = {}
    for v in spec["versions"]:
        body = copy.deepcopy((v.get("schema") or {}).get("openAPIV3Schema") or {"type": "object"})
        props = body.setdefault("properties", {})
        props["apiVersion"] = {"type": "string", "enum": [f"{group}/{v['name']}"]}
        props["kind"] = {"type": "string", "enum": [kind]}
        props["metadata"] = {"type": "object"}  # ObjectMeta: checked by the API server
        body["required"] = sorted(set(body.get("required") or []) | {"apiVersion", "kind"})
        file = f"{kind.lower()}{kind_suffix(group, v['name'])}.json"
        out[file] = dict(strictify(body), **{"$schema": "https://json-schema.org/draft/2020-12/schema",
                                              "description": f"{group}/{v['name']} {kind} (from its CRD)"})
    return out


def fetch_openapi_v3(kubectl: str, kubeconfig: str | None) -> list[dict]:
    base = [kubectl] + (["--kubeconfig", kubeconfig] if kubeconfig else [])

    def raw(path: str) -> dict:
        r = subprocess.run(base + ["get", "--raw", path], capture_output=True, text=True, timeout=60)
        if r.returncode != 0:
            raise SystemExit(f"kubectl get --raw {path}: {r.stderr.strip()}")
        return json.loads(r.stdout)

    index = raw("/openapi/v3")
    docs = []
    for path, ref in sorted(index.get("paths", {}).items()):
        if path == "api/v1" or (path.startswith("apis/") and path.count("/") == 2):
            docs.append(raw(ref["serverRelativeURL"]))
    return docs


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="folder for the JSON schemas")
    ap.add_argument("--kubectl", help="kubectl to fetch the OpenAPI v3 documents of the API server")
    ap.add_argument("--kubeconfig")
    ap.add_argument("--openapi", action="append", default=[], help="an OpenAPI v3 JSON document (instead of fetching)")
    ap.add_argument("--crd", action="append", default=[], help="a YAML file with CustomResourceDefinition(s)")
    args = ap.parse_args(argv)

    docs = [json.loads(Path(p).read_text()) for p in args.openapi]
    if args.kubectl:
        docs += fetch_openapi_v3(args.kubectl, args.kubeconfig)
    schemas: dict[str, dict] = {}
    for d in docs:
        schemas.update(schemas_from_openapi_v3(d))
    for f in args.crd:
        for crd in yaml.safe_load_all(Path(f).read_text()):
            if crd and crd.get("kind") == "CustomResourceDefinition":
                schemas.update(schemas_from_crd(crd))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name, schema in schemas.items():
        (out / name).write_text(json.dumps(schema, indent=1, sort_keys=True) + "\n")
    print(len(schemas))
    return 0


if __name__ == "__main__":
    sys.exit(main())
