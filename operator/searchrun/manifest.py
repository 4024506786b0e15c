"""Reading SearchRun manifests, with errors that name the field and the limit."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from .api import SearchRun, parse_manifest


class ManifestError(ValueError):
    """A manifest that cannot run; the message lists every bad field."""


# YAML aliases let a small file stand for a huge tree ("billion laughs"): a document may expand to
# at most this many nodes, wherever its aliases are (metadata too, not only spec).
MAX_EXPANDED_NODES = 100_000


def _expanded_nodes(root: yaml.Node, limit: int) -> int:
    """Nodes of ``root`` with every alias expanded, counted up to just past ``limit`` (each distinct
    node once: an alias repeats the node's count; a recursive alias counts once)."""
    sizes: dict[int, int] = {}

    def size(node: yaml.Node) -> int:
        k = id(node)
        if k in sizes:
            return sizes[k]
        sizes[k] = 1
        n = 1
        if isinstance(node, yaml.MappingNode):
            children = [c for pair in node.value for c in pair]
        elif isinstance(node, yaml.SequenceNode):
            children = node.value
        else:
            children = []
        for c in children:
            n += size(c)
            if n > limit:
                break
        sizes[k] = n
        return n

    return size(root)


def load_yaml_documents(text: str, source: str) -> list:
    """``yaml.safe_load_all`` with the alias expansion of each document bounded."""
    loader = yaml.SafeLoader(text)
    docs = []
    try:
        while loader.check_node():
            node = loader.get_node()
            if node is None:
                continue
            n = _expanded_nodes(node, MAX_EXPANDED_NODES)
            if n > MAX_EXPANDED_NODES:
                raise ManifestError(f"{source}: a YAML document expands to more than {MAX_EXPANDED_NODES} nodes "
                                    "(aliases repeat what they point to); write it out without the aliases")
            docs.append(loader.construct_document(node))
    except RecursionError:
        raise ManifestError(f"{source}: the YAML is nested too deeply") from None
    finally:
        loader.dispose()
    return docs


def _loc(loc: tuple) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "(root)"


def describe_validation_error(e: ValidationError, limit: int = 20) -> list[str]:
    """One line per problem: ``spec.budget.maxAgents: must be <= 10 (got 20)``."""
    lines = []
    for err in e.errors()[:limit]:
        loc = _loc(tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-"))))
        msg = err["msg"]
        ctx = err.get("ctx") or {}
        if err["type"] == "extra_forbidden":
            msg = "unknown field"
        elif "le" in ctx:
            msg = f"must be <= {ctx['le']}"
        elif "ge" in ctx:
            msg = f"must be >= {ctx['ge']}"
        elif "max_length" in ctx:
            msg = f"must be at most {ctx['max_length']} characters"
        elif "min_length" in ctx:
            msg = f"must be at least {ctx['min_length']} character(s)"
        elif msg.startswith("Value error, "):
            msg = msg[len("Value error, "):]
        got = err.get("input")
        if err["type"] != "extra_forbidden" and not isinstance(got, (dict, list)) and got is not None:
            shown = repr(got)
            msg += f" (got {shown[:60]}{'...' if len(shown) > 60 else ''})"
        lines.append(f"{loc}: {msg}")
    if len(e.errors()) > limit:
        lines.append(f"... and {len(e.errors()) - limit} more")
    return lines


def validate(data: Any, source: str = "manifest") -> SearchRun:
    if not isinstance(data, dict):
        raise ManifestError(f"{source}: a SearchRun manifest must be a YAML mapping")
    try:
        return parse_manifest(data)
    except ValidationError as e:
        raise ManifestError(f"{source}: invalid SearchRun:\n  " + "\n  ".join(describe_validation_error(e))) from None


def load_manifest(path: str | Path) -> SearchRun:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ManifestError(f"{p}: no such file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ManifestError(f"{p}: cannot read: {e}") from None
    try:
        docs = [d for d in load_yaml_documents(text, str(p)) if d is not None]
    except yaml.YAMLError as e:
        raise ManifestError(f"{p}: not valid YAML: {e}") from None
    runs = [d for d in docs if isinstance(d, dict) and d.get("kind") == "SearchRun"]
    if not runs:
        raise ManifestError(f"{p}: no document with kind: SearchRun")
    return validate(runs[0], str(p))
