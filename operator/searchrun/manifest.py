"""Reading SearchRun manifests, with errors that name the field and the limit."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from .api import SearchRun, parse_manifest


class ManifestError(ValueError):
    """A manifest that cannot run; the message lists every bad field."""


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
        docs = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as e:
        raise ManifestError(f"{p}: not valid YAML: {e}") from None
    runs = [d for d in docs if isinstance(d, dict) and d.get("kind") == "SearchRun"]
    if not runs:
        raise ManifestError(f"{p}: no document with kind: SearchRun")
    return validate(runs[0], str(p))
