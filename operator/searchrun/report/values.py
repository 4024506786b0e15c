"""Tolerant reading of the report's untrusted data: accessors that turn a missing or malformed
field into a default, number formatting, escaping, and each step's outcome."""

from __future__ import annotations

import html
import math
import unicodedata
from typing import Any

from ..api import BUDGET_FIELDS
from ..clip import clip


OUTCOMES = ("found", "deadend", "failed", "skipped", "other")
_OUTCOME_LABELS = {
    "found": "found an answer",
    "deadend": "dead end",
    "failed": "failed",
    "skipped": "skipped",
    "other": "other (no answer, not a dead end)",
}
_OUTCOME_PRIORITY = {"found": 0, "failed": 1, "other": 2, "deadend": 3, "skipped": 4}

# (status.budgetUsed key or None, budget field, label), one row per api.Budget field.
_BUDGET_ROWS = [(meta.used, name, meta.label) for name, meta in BUDGET_FIELDS.items()]


def _safe_char(c: str) -> str:
    # NUL and other control characters are parse errors in HTML (and a NUL ends strings in many
    # tools); a lone surrogate cannot be encoded at all: each becomes U+FFFD. Tab and newlines stay.
    if c in "\t\n\r":
        return c
    return "\ufffd" if unicodedata.category(c) in ("Cc", "Cs") else c


def _e(value: Any) -> str:
    """HTML-escape anything (None -> empty), control characters and lone surrogates replaced."""
    if value is None:
        return ""
    s = str(value)
    if not s.isprintable():
        s = "".join(_safe_char(c) for c in s)
    return html.escape(s, quote=True)


def _short(value: Any, n: int) -> str:
    return clip(value, max(n, 2))


def _dict(value: Any) -> dict:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list:
    return value if isinstance(value, list) else []


def _num(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _int(value: Any, default: int = 0) -> int:
    f = _num(value)
    return int(f) if f is not None else default


def _fmt(value: Any, kind: str = "") -> str:
    """Format a number for display (plain text, not escaped)."""
    f = _num(value)
    if f is None:
        return "—" if value is None else _short(value, 40)
    if kind == "usd":
        return f"${f:,.2f}" if round(f, 2) == f or f >= 10 else f"${f:,.4f}"
    if kind == "seconds":
        return f"{int(f):,} s" if f == int(f) else f"{f:,.1f} s"
    if f == int(f) and abs(f) < 1e15:
        return f"{int(f):,}"
    return f"{f:,.3f}".rstrip("0").rstrip(".")


def _kind(name: str) -> str:
    n = name.lower()
    if "cost" in n or "usd" in n:
        return "usd"
    if "second" in n:
        return "seconds"
    return ""


def _outcome(step: dict) -> str:
    phase = str(step.get("phase") or "")
    if phase == "Failed":
        return "failed"
    if phase == "Skipped":
        return "skipped"
    if step.get("found") is True:
        return "found"
    if step.get("deadEnd") is True:
        return "deadend"
    return "other"


def _steps(data: dict) -> list[dict]:
    """The steps as dicts with a string id (duplicates and id-less steps dropped)."""
    seen: set[str] = set()
    out = []
    for s in _list(data.get("steps")):
        if not isinstance(s, dict) or s.get("id") is None:
            continue
        sid = str(s["id"])
        if sid in seen:
            continue
        seen.add(sid)
        out.append(s)
    return out


_BIDI = {"\u202a", "\u202b", "\u202c", "\u202d", "\u202e", "\u2066", "\u2067", "\u2068", "\u2069", "\u200e", "\u200f"}


def _plain(value: Any, n: int = 120) -> str:
    """One line of terminal-safe text: no control characters, escapes or bidi overrides."""
    s = "" if value is None else str(value)
    s = "".join(
        " " if c in "\t\n\r\v\f" else ("?" if unicodedata.category(c) == "Cc" or c in _BIDI else c) for c in s
    )
    return _short(" ".join(s.split()), n)
