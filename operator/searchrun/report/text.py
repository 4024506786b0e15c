"""The report's plain-text summary for the terminal, and an answer's evidence path as text."""

from __future__ import annotations

from typing import Any, Iterable

from .values import _BUDGET_ROWS, _dict, _fmt, _kind, _list, _num, _plain, _steps


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
    if run.get("escalated"):
        notes.append(f"went deep: {_plain(run.get('escalated'), 120)}")
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
