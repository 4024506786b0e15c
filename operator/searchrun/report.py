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

import html
import math
import unicodedata
from typing import Any, Callable, Iterable

from .api import BUDGET_FIELDS
from .clip import clip

from .steps import registry  # the module: the create_report step imports this one while it loads

__all__ = ["render_report", "render_text_summary", "MAX_ROW_NODES", "MAX_TABLE_STEPS"]

MAX_ROW_NODES = 60
MAX_TABLE_STEPS = 1000
MAX_ANSWERS = 200

NODE_W, NODE_H = 132, 40
HGAP, VGAP = 14, 58
LEFT, TOP, RIGHT, BOTTOM = 96, 24, 24, 24
LABEL_CHARS = 18


OUTCOMES = ("found", "deadend", "failed", "skipped", "other")
_OUTCOME_LABELS = {
    "found": "found an answer",
    "deadend": "dead end",
    "failed": "failed",
    "skipped": "skipped",
    "other": "other (no answer, not a dead end)",
}
_OUTCOME_PRIORITY = {"found": 0, "failed": 1, "other": 2, "deadend": 3, "skipped": 4}

_PHASE_CLASS = {"Succeeded": "ok", "Failed": "bad", "Running": "run", "Pending": "run"}

# (status.budgetUsed key or None, budget field, label), one row per api.Budget field.
_BUDGET_ROWS = [(meta.used, name, meta.label) for name, meta in BUDGET_FIELDS.items()]

# --------------------------------------------------------------------------- helpers


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


# --------------------------------------------------------------------------- graph layout


def _type_row(step: dict):
    kind = registry.STEP_KINDS.get(step.get("type")) if isinstance(step.get("type"), str) else None
    return kind.report_row if kind is not None else None


def _row_key(step: dict) -> tuple[int, int]:
    """(band, order): the step type's row (from the step registry: 0 above the traversal, 2 below
    it), else the traversal row of its depth."""
    row = step.get("row") or (list(_type_row(step)[:2]) if _type_row(step) else None)
    if isinstance(row, list) and len(row) == 2 and all(isinstance(x, int) and not isinstance(x, bool) for x in row) \
            and row[0] in (0, 2):
        return (row[0], max(0, row[1]))
    return (1, max(0, _int(step.get("depth"))))


def _row_labels(steps: list[dict]) -> dict[tuple[int, int], str]:
    labels: dict[tuple[int, int], str] = {}
    for s in steps:
        key = _row_key(s)
        if key[0] == 1:
            labels.setdefault(key, f"depth {key[1]}")
        elif isinstance(s.get("rowLabel"), str):
            labels.setdefault(key, s["rowLabel"][:20])
        elif _type_row(s):
            labels.setdefault(key, _type_row(s)[2])
    return labels


class _Layout:
    """Nodes placed in rows; hidden steps map to their row's '+N more' node."""

    def __init__(self, steps: list[dict], max_row_nodes: int = MAX_ROW_NODES):
        rows: dict[tuple[int, int], list[int]] = {}
        for i, s in enumerate(steps):
            rows.setdefault(_row_key(s), []).append(i)
        self.row_keys = sorted(rows)
        self.steps = steps
        cap = max(2, max_row_nodes)
        widest = max((min(len(v), cap) for v in rows.values()), default=1)
        self.width = LEFT + widest * (NODE_W + HGAP) - HGAP + RIGHT
        self.height = TOP + len(self.row_keys) * (NODE_H + VGAP) - VGAP + BOTTOM
        self.center = LEFT + (widest * (NODE_W + HGAP) - HGAP) / 2
        # step id -> (x, y) of the node drawn for it (its own, or its row's "+N more")
        self.pos: dict[str, tuple[float, float]] = {}
        self.nodes: list[tuple[dict, float, float]] = []  # visible steps
        self.more: list[tuple[int, dict[str, int], float, float]] = []  # hidden count, by outcome, x, y
        self.row_y: list[tuple[str, float]] = []
        labels = _row_labels(steps)

        for r, key in enumerate(self.row_keys):
            y = TOP + r * (NODE_H + VGAP)
            self.row_y.append((labels.get(key, ""), y))
            members = rows[key]
            if len(members) > cap:
                ranked = sorted(members, key=lambda i: (_OUTCOME_PRIORITY[_outcome(steps[i])], i))
                visible, hidden = ranked[: cap - 1], ranked[cap - 1 :]
            else:
                visible, hidden = members, []
            visible.sort(key=lambda i: (self._barycenter(steps[i]), i))
            slots = len(visible) + (1 if hidden else 0)
            x0 = self.center - (slots * (NODE_W + HGAP) - HGAP) / 2
            for j, i in enumerate(visible):
                x = x0 + j * (NODE_W + HGAP)
                self.nodes.append((steps[i], x, y))
                self.pos[str(steps[i]["id"])] = (x, y)
            if hidden:
                x = x0 + len(visible) * (NODE_W + HGAP)
                counts: dict[str, int] = {}
                for i in hidden:
                    o = _outcome(steps[i])
                    counts[o] = counts.get(o, 0) + 1
                    self.pos[str(steps[i]["id"])] = (x, y)
                self.more.append((len(hidden), counts, x, y))

    def _barycenter(self, step: dict) -> float:
        xs = [self.pos[str(p)][0] for p in _list(step.get("parents")) if str(p) in self.pos]
        return sum(xs) / len(xs) if xs else math.inf

    def edges(self, on_path: frozenset = frozenset()) -> list[tuple[float, float, float, float, bool]]:
        """Parent-to-child edges; the flag says the edge lies on an answer's evidence path."""
        seen: set[tuple[float, float, float, float]] = set()
        out = []
        for s in self.steps:
            child = self.pos.get(str(s["id"]))
            if child is None:
                continue
            for p in _list(s.get("parents")):
                parent = self.pos.get(str(p))
                if parent is None or parent == child:
                    continue
                e = (parent[0] + NODE_W / 2, parent[1] + NODE_H, child[0] + NODE_W / 2, child[1])
                if e not in seen:
                    seen.add(e)
                    out.append(e + (str(s["id"]) in on_path and str(p) in on_path,))
        return out


def _node_title(step: dict) -> str:
    parts = [f"step {step.get('id')}", f"type: {step.get('type') or '—'}"]
    if step.get("doc") is not None:
        parts.append(f"doc: {step.get('doc')}")
    if step.get("docTitle"):
        parts.append(f"title: {_short(step.get('docTitle'), 200)}")
    parts.append(f"depth: {step.get('depth', '—')}  phase: {step.get('phase') or '—'}  attempts: {step.get('attempts', '—')}")
    parts.append(f"tokens: {_fmt(step.get('tokens'))}  cost: {_fmt(step.get('costUSD'), 'usd')}")
    if step.get("decision"):
        parts.append(f"decision: {_short(step.get('decision'), 300)}")
    if step.get("parents"):
        parts.append("parents: " + _short(", ".join(str(p) for p in _list(step.get("parents"))), 300))
    return "\n".join(parts)


def _on_answer_paths(steps: list[dict], answers: list) -> frozenset:
    """Ids of the steps on an answer's evidence path: the step that found it and its ancestors
    among the traversal steps (they share a row band)."""
    by_id = {str(s["id"]): s for s in steps}
    out: set[str] = set()
    for a in answers:
        sid = str(_dict(a).get("stepId") or "")
        while sid in by_id and sid not in out and _row_key(by_id[sid])[0] == 1:
            out.add(sid)
            parents = _list(by_id[sid].get("parents"))
            sid = str(parents[0]) if len(parents) == 1 else ""
    return frozenset(out)


def _svg_graph(steps: list[dict], answers: list = ()) -> tuple[str, int, int]:
    """The lineage as an inline SVG; returns (svg, visible nodes, collapsed steps)."""
    if not steps:
        return '<p class="muted">No steps recorded.</p>', 0, 0
    lay = _Layout(steps)
    on_path = _on_answer_paths(steps, list(answers))
    w, h = int(math.ceil(lay.width)), int(math.ceil(lay.height))
    out = [
        f'<svg class="graph" xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" '
        f'viewBox="0 0 {w} {h}" role="img" aria-label="explored step graph">'
    ]
    for label, y in lay.row_y:
        out.append(f'<text class="rowlabel" x="8" y="{y + NODE_H / 2 + 4:.1f}">{_e(label)}</text>')
    out.append('<g class="edges">')
    for x1, y1, x2, y2, evidence in lay.edges(on_path):
        dy = (y2 - y1) / 2
        cls = ' class="evidence"' if evidence else ""
        out.append(f'<path d="M{x1:.1f} {y1:.1f}C{x1:.1f} {y1 + dy:.1f} {x2:.1f} {y2 - dy:.1f} {x2:.1f} {y2:.1f}"{cls}/>')
    out.append("</g>")
    for step, x, y in lay.nodes:
        o = _outcome(step)
        line1 = _short(step.get("id"), LABEL_CHARS)
        t = str(step.get("type") or "")
        line2 = _short(step.get("doc") if step.get("doc") is not None else t, LABEL_CHARS)
        out.append(
            f'<g class="node n-{o}" data-step="{_e(step.get("id"))}"><title>{_e(_node_title(step))}</title>'
            f'<rect x="{x:.1f}" y="{y:.1f}" width="{NODE_W}" height="{NODE_H}" rx="6"/>'
            f'<text class="l1" x="{x + NODE_W / 2:.1f}" y="{y + 16:.1f}">{_e(line1)}</text>'
            f'<text class="l2" x="{x + NODE_W / 2:.1f}" y="{y + 31:.1f}">{_e(line2)}</text></g>'
        )
    hidden_total = 0
    for n, counts, x, y in lay.more:
        hidden_total += n
        detail = ", ".join(f"{counts[o]} {_OUTCOME_LABELS[o]}" for o in OUTCOMES if counts.get(o))
        out.append(
            f'<g class="more"><title>{_e(f"{n} more steps in this row: {detail}")}</title>'
            f'<rect x="{x:.1f}" y="{y:.1f}" width="{NODE_W}" height="{NODE_H}" rx="6"/>'
            f'<text class="l1" x="{x + NODE_W / 2:.1f}" y="{y + 24:.1f}">+{n} more</text></g>'
        )
    out.append("</svg>")
    return "".join(out), len(lay.nodes), hidden_total


# --------------------------------------------------------------------------- page sections

_CSS = """
:root{--found:#1e8a44;--found-bg:#dcf3e3;--dead:#7a7f87;--dead-bg:#eceef0;--fail:#c62828;
--fail-bg:#fbe3e3;--other:#2c6fbb;--other-bg:#e2edf9;--skip:#8a6d00;--skip-bg:#fff;}
*{box-sizing:border-box}
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1d232b;background:#f6f7f9}
main{max-width:1200px;margin:0 auto;padding:20px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 10px}
section,.card{background:#fff;border:1px solid #dde1e6;border-radius:8px;padding:14px 16px}
.query{font-size:17px;margin:8px 0;white-space:pre-wrap;word-break:break-word}
.meta{color:#56606c;font-size:13px}.meta span{margin-right:14px}
.badge{display:inline-block;padding:1px 9px;border-radius:10px;font-size:12px;font-weight:600;vertical-align:middle}
.b-ok{background:var(--found-bg);color:var(--found)}.b-bad{background:var(--fail-bg);color:var(--fail)}
.b-run,.b-other{background:var(--other-bg);color:var(--other)}
.alert{margin:10px 0 0;padding:8px 12px;border-radius:6px;border-left:4px solid #d08a00;background:#fff6e0}
.alert.stop{border-color:var(--fail);background:var(--fail-bg)}
.answers{list-style:none;margin:0;padding:0}
.answers li{background:#fff;border:1px solid #dde1e6;border-left:4px solid var(--found);border-radius:6px;padding:10px 14px;margin:0 0 10px}
.answers .t{font-weight:600;font-size:15px}.answers code{font-size:12px;color:#56606c}
.path{margin:4px 0;color:#1a7f37;font-size:13px}
.snippet{margin:6px 0;color:#38414c;white-space:pre-wrap;word-break:break-word}
.score{display:inline-block;width:80px;height:8px;background:#eceef0;border-radius:4px;vertical-align:middle;margin-left:6px}
.score span{display:block;height:100%;background:var(--found);border-radius:4px}
.graphbox{overflow:auto;max-height:80vh;background:#fff;border:1px solid #dde1e6;border-radius:8px}
svg.graph .edges path{fill:none;stroke:#9aa3ad;stroke-width:1.2}
svg.graph .edges path.evidence{stroke:#1a7f37;stroke-width:3}
svg.graph .node rect,svg.graph .more rect{stroke-width:1.6}
svg.graph text{font:11px system-ui,sans-serif;text-anchor:middle;fill:#1d232b}
svg.graph .l1{font-weight:600}svg.graph .rowlabel{text-anchor:start;fill:#56606c;font-size:12px}
.n-found rect{fill:var(--found-bg);stroke:var(--found)}.n-deadend rect{fill:var(--dead-bg);stroke:var(--dead)}
.n-failed rect{fill:var(--fail-bg);stroke:var(--fail)}.n-other rect{fill:var(--other-bg);stroke:var(--other)}
.n-skipped rect{fill:var(--skip-bg);stroke:var(--skip);stroke-dasharray:5 3}
.more rect{fill:#fff;stroke:#56606c;stroke-dasharray:2 2}
.legend{margin:8px 0;font-size:13px;color:#38414c}.legend span{margin-right:16px;white-space:nowrap}
.sw{display:inline-block;width:16px;height:11px;border-radius:3px;border:1.6px solid;vertical-align:middle;margin-right:5px}
.sw.n-found{background:var(--found-bg);border-color:var(--found)}.sw.n-deadend{background:var(--dead-bg);border-color:var(--dead)}
.sw.n-failed{background:var(--fail-bg);border-color:var(--fail)}.sw.n-other{background:var(--other-bg);border-color:var(--other)}
.sw.n-skipped{background:#fff;border-color:var(--skip);border-style:dashed}
table{border-collapse:collapse;width:100%;background:#fff}
th,td{text-align:left;padding:5px 10px;border-bottom:1px solid #e6e9ed;vertical-align:top}
th{font-size:12px;color:#56606c;font-weight:600}td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.bar{width:180px;height:10px;background:#eceef0;border-radius:5px;overflow:hidden}
.bar span{display:block;height:100%;background:var(--other)}.hit .bar span{background:var(--fail)}
tr.hit td:first-child{font-weight:600;color:var(--fail)}
.muted{color:#56606c}details summary{cursor:pointer;margin:6px 0}
.steps td{font-size:12.5px;overflow-wrap:break-word}
"""


def _header(run: dict, steps: list[dict], answers: list) -> str:
    phase = run.get("phase")
    pcls = _PHASE_CLASS.get(str(phase), "other")
    out = [
        '<section class="card">',
        f'<h1>SearchRun {_e(run.get("name") or "(unnamed)")} '
        f'<span class="badge b-{pcls}">{_e(phase or "Unknown")}</span></h1>',
        f'<div class="query">{_e(run.get("query") or "")}</div>',
        '<div class="meta">',
        f'<span>intent: <b>{_e(run.get("intent") or "—")}</b></span>',
        f"<span>answers: <b>{len(answers)}</b></span>",
        f"<span>steps: <b>{len(steps)}</b></span>",
    ]
    for label, key in (("uid", "uid"), ("started", "startedAt"), ("finished", "finishedAt")):
        if run.get(key):
            out.append(f"<span>{label}: {_e(run.get(key))}</span>")
    out.append("</div>")
    if run.get("stoppedBy"):
        out.append(f'<div class="alert stop">Stopped by budget: <b>{_e(run.get("stoppedBy"))}</b> '
                   "— the run stopped spawning steps and fanned in what it had.</div>")
    hits = [h for h in _list(run.get("limitsHit")) if h is not None]
    if hits:
        out.append('<div class="alert">Limits hit: ' + ", ".join(f"<b>{_e(h)}</b>" for h in hits) + "</div>")
    if run.get("fallback"):
        out.append(f'<div class="alert">Fell back to simple search: {_e(run.get("fallback"))}</div>')
    if run.get("message"):
        out.append(f'<div class="meta">{_e(run.get("message"))}</div>')
    out.append("</section>")
    return "\n".join(out)


def evidence_path(answer: dict, limit: int = 8) -> list[tuple[str, str, str]]:
    """An answer's evidence path, seed first: (doc id, title, link followed into it)."""
    out = []
    for hop in _list(answer.get("path"))[:limit]:
        if isinstance(hop, dict) and hop.get("doc") is not None:
            out.append((str(hop.get("doc")), str(hop.get("title") or ""), str(hop.get("via") or "")))
    return out


def path_text(answer: dict, width: int = 40) -> str:
    """``seed —[via]→ doc —[via]→ answer`` in plain text (empty for an answer without a path)."""
    hops = evidence_path(answer)
    if len(hops) < 2:
        return ""
    parts = [_plain(hops[0][0], width)]
    for doc, _title, via in hops[1:]:
        parts.append(f"—{_plain(via, 30) or 'link'}→ {_plain(doc, width)}")
    return " ".join(parts)


def _answers(answers: list) -> str:
    out = [f"<h2>Answers ({len(answers)})</h2>"]
    if not answers:
        out.append('<p class="muted">No answers were found.</p>')
        return "\n".join(out)
    out.append('<ol class="answers">')
    for a in answers[:MAX_ANSWERS]:
        a = _dict(a)
        title = a.get("title") or a.get("docId") or "(untitled)"
        score = _num(a.get("score"))
        bar = ""
        if score is not None:
            bar = f'<span class="score"><span style="width:{max(0.0, min(1.0, score)) * 100:.0f}%"></span></span>'
        found_by = ""
        if a.get("stepId") is not None:
            found_by = f' · found by step <code>{_e(a.get("stepId"))}</code>'
            if a.get("depth") is not None:
                found_by += f" at depth {_e(_fmt(a.get('depth')))}"
        out.append(
            f'<li><div class="t">{_e(title)}</div>'
            f'<div class="meta"><code>{_e(a.get("docId") or "—")}</code> · score {_e(_fmt(score) if score is not None else "—")}'
            f"{bar}{found_by}</div>"
            + (f'<div class="path">path: {_e(path_text(a))}</div>' if path_text(a) else "")
            + (f'<div class="snippet">{_e(_short(a.get("snippet"), 2000))}</div>' if a.get("snippet") else "")
            + "</li>"
        )
    out.append("</ol>")
    if len(answers) > MAX_ANSWERS:
        out.append(f'<p class="muted">… and {len(answers) - MAX_ANSWERS} more answers not shown.</p>')
    return "\n".join(out)


def _legend() -> str:
    return '<div class="legend">' + "".join(
        f'<span><i class="sw n-{o}"></i>{_e(_OUTCOME_LABELS[o])}</span>' for o in OUTCOMES
    ) + "</div>"


def _graph(steps: list[dict], answers: list = ()) -> str:
    svg, shown, hidden = _svg_graph(steps, answers)
    counts: dict[str, int] = {}
    for s in steps:
        o = _outcome(s)
        counts[o] = counts.get(o, 0) + 1
    summary = ", ".join(f"{counts[o]} {_OUTCOME_LABELS[o]}" for o in OUTCOMES if counts.get(o))
    if counts.get("found", 0) != len(answers):  # one document found twice, weaker findings dropped
        summary += f"; the fan-in kept {len(answers)} answer{'s' if len(answers) != 1 else ''}"
    summary = f"Steps: {summary}" if summary else ""
    note = ""
    if hidden:
        note = (f'<p class="muted">Showing {shown} of {len(steps)} steps; rows with more than '
                f"{MAX_ROW_NODES} steps are collapsed into a “+N more” node (answers and failures shown first).</p>")
    return (
        "<h2>Explored graph</h2>" + _legend()
        + (f'<p class="muted">{_e(summary)}</p>' if summary else "")
        + note + f'<div class="graphbox">{svg}</div>'
    )


def _largest_fanout(steps: list[dict]) -> int:
    """Most traversal children of one traversal step: what maxFanoutPerNode bounds (the plan's
    seeds count against maxAgents instead)."""
    traverse = {str(s["id"]) for s in steps if s.get("type") == "traverse_node"}
    children: dict[str, int] = {}
    for s in steps:
        parents = _list(s.get("parents"))
        if s.get("type") == "traverse_node" and len(parents) == 1 and str(parents[0]) in traverse:
            children[str(parents[0])] = children.get(str(parents[0]), 0) + 1
    return max(children.values(), default=0)


# Budgets that status.budgetUsed does not measure (BudgetMeta.used is None): measured from the steps.
_USED_FROM_STEPS: dict[str, Callable[[list[dict]], Any]] = {"maxFanoutPerNode": _largest_fanout}


def _budget(budget: dict, run: dict, steps: list[dict]) -> str:
    used, limits = _dict(budget.get("used")), _dict(budget.get("limits"))
    hit = {str(h) for h in _list(run.get("limitsHit"))}
    if run.get("stoppedBy"):
        hit.add(str(run.get("stoppedBy")))
    rows = list(_BUDGET_ROWS)
    known = {u for u, _, _ in rows if u} | {lim for _, lim, _ in rows}
    rows += [(None, k, k) for k in limits if k not in known]
    rows += [(k, None, k) for k in used if k not in known]
    out = ["<h2>Budget</h2>", '<table class="budget"><thead><tr><th>budget</th><th>used</th><th>limit</th>'
           "<th></th><th>%</th></tr></thead><tbody>"]
    for ukey, lkey, label in rows:
        u = used.get(ukey) if ukey else None
        lim = limits.get(lkey) if lkey else None
        if not ukey and lim is not None and lkey in _USED_FROM_STEPS:
            u = _USED_FROM_STEPS[lkey](steps)
        if u is None and lim is None:
            continue
        kind = _kind(str(ukey or lkey))
        uf, lf = _num(u), _num(lim)
        pct = None
        if uf is not None and lf is not None and lf > 0:
            pct = uf / lf * 100
        is_hit = bool(lkey) and lkey in hit  # only budgets the run reports as hit
        bar = f'<div class="bar"><span style="width:{min(100.0, max(0.0, pct)):.1f}%"></span></div>' if pct is not None else ""
        name = f"{_e(label)} <span class=\"muted\">({_e(lkey)})</span>" if lkey and lkey != label else _e(label)
        out.append(
            f'<tr class="{"hit" if is_hit else ""}"><td>{name}</td>'
            f'<td class="num">{_e(_fmt(u, kind))}</td>'
            f'<td class="num">{_e(_fmt(lim, kind)) if lkey else "—"}</td>'
            f"<td>{bar}</td><td class=\"num\">{f'{pct:.0f}%' if pct is not None else ''}</td></tr>"
        )
    out.append("</tbody></table>")
    return "\n".join(out)


def _step_table(steps: list[dict]) -> str:
    if not steps:
        return ""
    out = [f"<h2>Steps</h2><details><summary>All steps ({len(steps)})</summary>",
           '<table class="steps"><thead><tr><th>step</th><th>type</th><th>depth</th><th>document</th>'
           "<th>phase</th><th>outcome</th><th>tokens</th><th>cost</th><th>attempts</th><th>decision</th></tr></thead><tbody>"]
    for s in steps[:MAX_TABLE_STEPS]:
        doc = s.get("doc")
        doc_html = ""
        if doc is not None:
            doc_html = f"<code>{_e(_short(doc, 80))}</code>"
            if s.get("docTitle"):
                doc_html += f"<br>{_e(_short(s.get('docTitle'), 120))}"
        out.append(
            f"<tr><td><code>{_e(_short(s.get('id'), 80))}</code></td><td>{_e(s.get('type') or '—')}</td>"
            f'<td class="num">{_e(_fmt(s.get("depth")))}</td><td>{doc_html}</td><td>{_e(s.get("phase") or "—")}</td>'
            f'<td><i class="sw n-{_outcome(s)}"></i>{_e(_OUTCOME_LABELS[_outcome(s)].split(" (")[0])}</td>'
            f'<td class="num">{_e(_fmt(s.get("tokens")))}</td><td class="num">{_e(_fmt(s.get("costUSD"), "usd"))}</td>'
            f'<td class="num">{_e(_fmt(s.get("attempts")))}</td><td>{_e(_short(s.get("decision"), 200))}</td></tr>'
        )
    out.append("</tbody></table>")
    if len(steps) > MAX_TABLE_STEPS:
        out.append(f'<p class="muted">… {len(steps) - MAX_TABLE_STEPS} more steps not listed (see the lineage artifact).</p>')
    out.append("</details>")
    return "\n".join(out)


def render_report(data: dict) -> str:
    """One self-contained HTML page for a finished run.

    ``data``: ``{"run": {name, uid, query, intent, phase, stoppedBy, limitsHit, fallback,
    startedAt, finishedAt}, "answers": [{docId, title, score, snippet, stepId, depth, path}],
    "steps": [{id, type, parents, depth, doc, docTitle, phase, found, deadEnd, tokens, costUSD,
    attempts, decision}], "budget": {"used": {...}, "limits": {...}}}``.
    """
    data = _dict(data)
    run = _dict(data.get("run"))
    answers = [a for a in _list(data.get("answers")) if isinstance(a, dict)]
    steps = _steps(data)
    body = [
        _header(run, steps, answers),
        _answers(answers),
        _graph(steps, answers),
        _budget(_dict(data.get("budget")), run, steps),
        _step_table(steps),
    ]
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; img-src data:\">"
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>SearchRun {_e(run.get('name') or '')} — report</title><style>{_CSS}</style></head>\n"
        "<body><main>\n" + "\n".join(body)
        + '\n<p class="muted">Generated by searchrun.</p></main></body></html>\n'
    )


# --------------------------------------------------------------------------- text summary

_BIDI = {"\u202a", "\u202b", "\u202c", "\u202d", "\u202e", "\u2066", "\u2067", "\u2068", "\u2069", "\u200e", "\u200f"}


def _plain(value: Any, n: int = 120) -> str:
    """One line of terminal-safe text: no control characters, escapes or bidi overrides."""
    s = "" if value is None else str(value)
    s = "".join(
        " " if c in "\t\n\r\v\f" else ("?" if unicodedata.category(c) == "Cc" or c in _BIDI else c) for c in s
    )
    return _short(" ".join(s.split()), n)


def _pairs(items: Iterable[tuple[str, Any, Any, str]]) -> str:
    parts = []
    for label, u, lim, kind in items:
        if u is None and lim is None:
            continue
        parts.append(_plain(f"{label} {_fmt(u, kind)}/{_fmt(lim, kind)}", 80))
    return ", ".join(parts)


_TERM_LABELS = {"costUSD": "cost", "elapsedSeconds": "elapsed"}


def render_text_summary(data: dict) -> str:
    """A few plain lines for the terminal: status, answers with titles, budget used."""
    data = _dict(data)
    run = _dict(data.get("run"))
    answers = [a for a in _list(data.get("answers")) if isinstance(a, dict)]
    steps = _steps(data)
    budget = _dict(data.get("budget"))
    used, limits = _dict(budget.get("used")), _dict(budget.get("limits"))
    lines = [
        f"SearchRun {_plain(run.get('name') or '(unnamed)', 80)}: {_plain(run.get('phase') or 'Unknown', 20)}"
        f" (intent: {_plain(run.get('intent') or '-', 20)}, {len(steps)} steps)",
        f"  query: {_plain(run.get('query'), 200)}",
    ]
    notes = []
    if run.get("stoppedBy"):
        notes.append(f"stopped by {_plain(run.get('stoppedBy'), 40)}")
    hits = [_plain(h, 40) for h in _list(run.get("limitsHit")) if h is not None]
    if hits:
        notes.append("limits hit: " + ", ".join(hits))
    if run.get("fallback"):
        notes.append(f"fallback: {_plain(run.get('fallback'), 120)}")
    if notes:
        lines.append("  " + "; ".join(notes))
    if answers:
        lines.append(f"  answers ({len(answers)}):")
        for i, a in enumerate(answers[:10], 1):
            score = _num(a.get("score"))
            where = ""
            if a.get("stepId") is not None:
                where = f" (step {_plain(a.get('stepId'), 40)}"
                where += f", depth {_plain(_fmt(a.get('depth')), 20)})" if a.get("depth") is not None else ")"
            lines.append(
                f"    {i}. {_plain(a.get('title') or a.get('docId') or '(untitled)', 80)}"
                f" [{_plain(a.get('docId'), 60)}]" + (f" score {score:.2f}" if score is not None else "") + where
            )
            if path_text(a):
                lines.append(f"       path: {path_text(a)}")
        if len(answers) > 10:
            lines.append(f"    ... and {len(answers) - 10} more")
    else:
        lines.append("  answers: none")
    budget_line = _pairs(
        (_TERM_LABELS.get(u, u), used.get(u), limits.get(lim), _kind(u))
        for u, lim, _label in _BUDGET_ROWS
        if u
    )
    if budget_line:
        lines.append(f"  budget used: {budget_line}")
    return "\n".join(lines) + "\n"
