"""The report's HTML page: its sections (header, answers, graph, budget, step table) and CSS."""

from __future__ import annotations

from typing import Any, Callable

from .layout import MAX_ROW_NODES, _svg_graph
from .text import path_text
from .values import (
    _BUDGET_ROWS, _OUTCOME_LABELS, OUTCOMES, _dict, _e, _fmt, _kind, _list, _num, _outcome, _short, _steps,
)

MAX_TABLE_STEPS = 1000
MAX_ANSWERS = 200

_PHASE_CLASS = {"Succeeded": "ok", "Failed": "bad", "Running": "run", "Pending": "run"}

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
    if run.get("escalated"):
        out.append(f'<div class="alert">Went on to a deep search: {_e(run.get("escalated"))}</div>')
    if run.get("message"):
        out.append(f'<div class="meta">{_e(run.get("message"))}</div>')
    out.append("</section>")
    return "\n".join(out)


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

    ``data``: ``{"run": {name, uid, query, intent, phase, stoppedBy, limitsHit, fallback, escalated,
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
