"""Run report: one self-contained HTML page (inline CSS and SVG, no scripts, no external
assets) and a short plain-text summary for the terminal.

``data`` is ``{"run": {...}, "answers": [...], "steps": [...], "budget": {"used": {...},
"limits": {...}}}`` (see ``render_report``). Everything in it is treated as untrusted: every
value is HTML-escaped, and the page carries a Content-Security-Policy that forbids scripts.
Missing or malformed fields are tolerated (shown as "—").

Large runs stay readable: each graph row shows at most ``MAX_ROW_NODES`` nodes (answers and
failures first) and collapses the rest into a "+N more" node; labels are shortened (the full
text is in each node's tooltip); the step table lists at most ``MAX_TABLE_STEPS`` steps.
"""

from __future__ import annotations

# values and layout first: layout imports the step registry (see the comment there)
from .values import _BUDGET_ROWS  # noqa: I001,F401  (tests read _BUDGET_ROWS and _USED_FROM_STEPS here)
from .layout import MAX_ROW_NODES
from .html import _USED_FROM_STEPS, MAX_TABLE_STEPS, render_report  # noqa: F401
from .text import evidence_path, path_text, render_text_summary

__all__ = ["render_report", "render_text_summary", "MAX_ROW_NODES", "MAX_TABLE_STEPS", "evidence_path", "path_text"]
