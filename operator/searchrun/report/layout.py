"""The lineage graph of the report: steps placed in rows (at most ``MAX_ROW_NODES`` a row) and
drawn as an inline SVG."""

from __future__ import annotations

import math

from ..steps import registry  # the module: the create_report step imports the report while it loads
from .values import OUTCOMES, _OUTCOME_LABELS, _OUTCOME_PRIORITY, _dict, _e, _fmt, _int, _list, _outcome, _short

MAX_ROW_NODES = 60

NODE_W, NODE_H = 132, 40
HGAP, VGAP = 14, 58
LEFT, TOP, RIGHT, BOTTOM = 96, 24, 24, 24
LABEL_CHARS = 18


def _type_row(step: dict):
    kind = registry.STEP_KINDS.get(step.get("type")) if isinstance(step.get("type"), str) else None
    return kind.report_row if kind is not None else None


def _row_key(step: dict) -> tuple[int, int]:
    """(band, order): the step type's row (from the step registry: 0 above the traversal, 2 below
    it), else the traversal row of its depth."""
    typed = _type_row(step)
    row = step.get("row") or (list(typed[:2]) if typed else None)
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
        elif (typed := _type_row(s)) is not None:
            labels.setdefault(key, typed[2])
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
