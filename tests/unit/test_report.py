"""HTML report and terminal summary."""

from __future__ import annotations

import copy
import re
import time
from html.parser import HTMLParser

import pytest

from searchrun.report import MAX_ROW_NODES, MAX_TABLE_STEPS, render_report, render_text_summary


def sample() -> dict:
    return {
        "run": {
            "name": "quantum-ml",
            "uid": "3f2a9c1e-0b7d-4e55-9a0c-1d2e3f405162",
            "query": "how is quantum computing used in machine learning?",
            "intent": "deep",
            "phase": "Succeeded",
            "stoppedBy": None,
            "limitsHit": ["maxDepth"],
            "fallback": None,
            "startedAt": "2025-01-01T00:00:00Z",
            "finishedAt": "2025-01-01T00:00:09Z",
        },
        "answers": [
            {"docId": "qml-overview", "title": "Quantum ML overview", "score": 0.82,
             "snippet": "Quantum machine learning combines ...", "stepId": "t0", "depth": 1},
            {"docId": "qml-kernels", "title": "Quantum kernels", "score": 0.61,
             "snippet": "Kernel methods on quantum hardware", "stepId": "t0-1", "depth": 2},
        ],
        "steps": [
            {"id": "intent", "type": "detect_intent", "parents": [], "depth": 0, "phase": "Succeeded",
             "tokens": 20, "costUSD": 0.0, "attempts": 1, "decision": "deep"},
            {"id": "plan", "type": "plan_search", "parents": ["intent"], "depth": 0, "phase": "Succeeded",
             "tokens": 40, "costUSD": 0.0, "attempts": 1, "decision": "3 seeds"},
            {"id": "t0", "type": "traverse_node", "parents": ["plan"], "depth": 1, "doc": "qml-overview",
             "docTitle": "Quantum ML overview", "phase": "Succeeded", "found": True, "deadEnd": False,
             "tokens": 300, "costUSD": 0.0006, "attempts": 1, "decision": "found; deeper: 2"},
            {"id": "t1", "type": "traverse_node", "parents": ["plan"], "depth": 1, "doc": "classical-ml",
             "phase": "Succeeded", "found": False, "deadEnd": True, "tokens": 280, "attempts": 1},
            {"id": "t2", "type": "traverse_node", "parents": ["plan"], "depth": 1, "doc": "hardware",
             "phase": "Failed", "found": None, "attempts": 3, "decision": "agent error"},
            {"id": "t0-1", "type": "traverse_node", "parents": ["t0"], "depth": 2, "doc": "qml-kernels",
             "docTitle": "Quantum kernels", "phase": "Succeeded", "found": True, "deadEnd": False,
             "tokens": 312, "costUSD": 0.0006, "attempts": 1, "decision": "found; deeper: 2"},
            {"id": "t0-2", "type": "traverse_node", "parents": ["t0"], "depth": 2, "doc": "qml-variational",
             "phase": "Skipped"},
            {"id": "t0-3", "type": "traverse_node", "parents": ["t0"], "depth": 2, "doc": "qml-other",
             "phase": "Succeeded", "found": False, "deadEnd": False},
            {"id": "agg", "type": "aggregate_results", "parents": ["t0", "t0-1"], "depth": 0, "phase": "Succeeded"},
            {"id": "report", "type": "create_report", "parents": ["agg"], "depth": 0, "phase": "Succeeded"},
        ],
        "budget": {
            "used": {"agents": 3, "depth": 2, "steps": 12, "parallel": 4, "tokens": 4100, "costUSD": 0.008,
                     "elapsedSeconds": 9.5},
            "limits": {"maxAgents": 3, "maxDepth": 2, "maxFanoutPerNode": 2, "maxSteps": 40, "maxParallel": 4,
                       "maxTokens": 200000, "maxCostUSD": 1.0, "deadlineSeconds": 900},
        },
    }


class _Collector(HTMLParser):
    """Parses the page; records tags, attributes and text (fails on nothing, just collects)."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_startendtag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)


def parse(page: str) -> _Collector:
    c = _Collector()
    c.feed(page)
    c.close()
    return c


def nodes(page: str) -> list[dict]:
    return [a for t, a in parse(page).tags if t == "g" and "node" in (a.get("class") or "").split()]


def test_contains_query_answers_and_svg():
    page = render_report(sample())
    assert page.startswith("<!DOCTYPE html>")
    assert "how is quantum computing used in machine learning?" in page
    for s in ("Quantum ML overview", "qml-overview", "Quantum kernels", "0.82", "Kernel methods on quantum hardware"):
        assert s in page
    assert "<svg" in page
    assert "deep" in page and "Succeeded" in page
    assert "maxDepth" in page  # limitsHit shown
    text = " ".join(parse(page).text)
    assert "found by step" in text and "t0-1" in text


def test_one_node_per_step_and_outcome_classes():
    data = sample()
    page = render_report(data)
    ns = nodes(page)
    assert sorted(n["data-step"] for n in ns) == sorted(s["id"] for s in data["steps"])
    cls = {n["data-step"]: n["class"] for n in ns}
    assert "n-found" in cls["t0"] and "n-found" in cls["t0-1"]
    assert "n-deadend" in cls["t1"]
    assert "n-failed" in cls["t2"]
    assert "n-skipped" in cls["t0-2"]
    assert "n-other" in cls["t0-3"] and "n-other" in cls["intent"]
    # edges: one per (parent, child) pair that exists
    edges = sum(len(s["parents"]) for s in data["steps"])
    assert page.count("<path d=") == edges
    # legend
    for label in ("found an answer", "dead end", "failed", "skipped"):
        assert label in page


def _node_y(page: str, step_id: str) -> float:
    m = re.search(r'data-step="%s"><title>.*?</title><rect x="[\d.]+" y="([\d.]+)"' % re.escape(step_id), page, re.S)
    assert m, step_id
    return float(m.group(1))


def test_layers_by_depth():
    page = render_report(sample())
    y = {sid: _node_y(page, sid) for sid in ("intent", "plan", "t0", "t1", "t0-1", "agg", "report")}
    assert y["intent"] < y["plan"] < y["t0"] == y["t1"] < y["t0-1"] < y["agg"] < y["report"]


def test_stopped_by_and_fallback_prominent():
    data = sample()
    data["run"].update(stoppedBy="maxSteps", fallback="deep search found nothing", phase="Succeeded")
    page = render_report(data)
    assert 'class="alert stop"' in page and "maxSteps" in page
    assert "deep search found nothing" in page
    # the budget row for the stopping budget is highlighted
    assert re.search(r'<tr class="hit"><td>steps \(Jobs\) <span class="muted">\(maxSteps\)', page)


def test_budget_table():
    page = render_report(sample())
    assert "4,100" in page and "200,000" in page
    assert "$0.0080" in page and "$1.00" in page
    assert "9.5 s" in page and "900 s" in page
    assert page.count('<div class="bar">') >= 7
    # only the budgets the run reports (limitsHit: maxDepth) are highlighted, not every full one
    assert re.findall(r'<tr class="hit"><td>[^<]*<span class="muted">\((\w+)\)', page) == ["maxDepth"]


HOSTILE = '<script>alert("x")</script>&<img src=x onerror=alert(1)>"\''


def _poison(obj, path=()):
    """Replace every string in the data (except structural type/phase/parents) with hostile text."""
    if isinstance(obj, dict):
        return {k: (_poison(v, path + (k,)) if k not in ("type", "phase") else v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_poison(v, path) for v in obj]
    if isinstance(obj, str):
        return obj + HOSTILE
    return obj


def test_escapes_everything():
    data = _poison(sample())
    data["run"]["stoppedBy"] = HOSTILE
    data["run"]["fallback"] = HOSTILE
    data["budget"]["limits"][HOSTILE] = 5  # unknown keys are shown too
    page = render_report(data)
    assert "<script" not in page.lower()
    assert "<img" not in page.lower()
    assert "onerror=alert" not in page.replace("onerror=alert(1)&gt;", "")  # only as escaped text
    tags = {t for t, _ in parse(page).tags}
    assert "script" not in tags and "img" not in tags
    for t, attrs in parse(page).tags:
        assert not any(k.startswith("on") for k in attrs), (t, attrs)
    text = "".join(parse(page).text)
    assert HOSTILE in text  # shown to the reader, as text
    # steps are still drawn (ids were poisoned too, parents still match)
    assert len(nodes(page)) == len(data["steps"])
    assert "Content-Security-Policy" in page


def test_tolerates_missing_and_malformed_fields():
    for data in (
        {},
        {"run": None, "answers": None, "steps": None, "budget": None},
        {"run": {"query": "q"}, "steps": [{"id": "a"}, {"no": "id"}, "junk", {"id": "a"}],
         "answers": [{"score": "high"}, None], "budget": {"used": {"steps": "x"}, "limits": {"maxSteps": 0}}},
        {"steps": [{"id": "x", "type": "traverse_node", "depth": float("nan"), "parents": "notalist", "tokens": float("inf")}]},
    ):
        page = render_report(data)
        assert page.startswith("<!DOCTYPE html>")
        summary = render_text_summary(data)
        assert summary.startswith("SearchRun")


def test_large_run_collapses_rows():
    data = sample()
    steps = data["steps"][:2]
    seeds = [f"t{i}" for i in range(40)]
    for s in seeds:
        steps.append({"id": s, "type": "traverse_node", "parents": ["plan"], "depth": 1, "doc": f"doc-{s}",
                      "phase": "Succeeded", "found": False, "deadEnd": False})
    n = len(steps)
    i = 0
    while n < 1500:
        depth = 2 + i % 6
        sid = f"x{i}"
        steps.append({"id": sid, "type": "traverse_node", "parents": [seeds[i % len(seeds)]], "depth": depth,
                      "doc": "a-very-long-document-identifier-" + "z" * 200, "phase": "Succeeded",
                      "found": i % 97 == 0, "deadEnd": i % 3 == 0, "tokens": 100, "costUSD": 0.0001})
        n += 1
        i += 1
    steps += data["steps"][-2:]
    data["steps"] = steps
    t0 = time.perf_counter()
    page = render_report(data)
    elapsed = time.perf_counter() - t0
    ns = nodes(page)
    rows = 2 + 1 + 6 + 2
    assert len(ns) <= rows * MAX_ROW_NODES
    assert "more" in page and re.search(r"\+\d+ more", page)
    # every found step is still drawn individually
    found = {s["id"] for s in steps if s.get("found")}
    assert found <= {n["data-step"] for n in ns}
    # labels are shortened, the full doc id is only in tooltips / the table
    assert "z" * 30 not in "".join(re.findall(r'<text class="l2"[^>]*>([^<]*)</text>', page))
    assert f"{len(steps) - MAX_TABLE_STEPS} more steps not listed" in page
    assert len(page) < 5_000_000
    print(f"1500-step report: {len(page)} bytes in {elapsed:.3f}s, {len(ns)} nodes drawn")


def test_small_rows_not_collapsed():
    data = sample()
    data["steps"] += [{"id": f"w{i}", "type": "traverse_node", "parents": ["plan"], "depth": 1,
                       "phase": "Succeeded"} for i in range(MAX_ROW_NODES - 3)]
    page = render_report(data)
    assert len(nodes(page)) == len(data["steps"])
    assert "+1 more" not in page


def test_text_summary():
    data = sample()
    data["run"]["stoppedBy"] = "maxTokens"
    out = render_text_summary(data)
    assert "quantum-ml" in out and "Succeeded" in out
    assert "Quantum ML overview" in out and "[qml-overview]" in out and "0.82" in out
    assert "stopped by maxTokens" in out and "maxDepth" in out
    assert "steps 12/40" in out and "tokens 4,100/200,000" in out
    assert "cost $0.0080/$1.00" in out and "elapsed 9.5 s/900 s" in out
    assert len(out.splitlines()) < 20


def test_text_summary_strips_terminal_escapes():
    data = sample()
    data["run"]["query"] = "evil\x1b[2J\x1b]0;title\x07 query\u202e\nsecond line"
    data["answers"][0]["title"] = "t\x1b[31mred"
    out = render_text_summary(data)
    assert "\x1b" not in out and "\x07" not in out and "\u202e" not in out
    assert "second line" in out.splitlines()[1]


def test_input_not_mutated():
    data = sample()
    before = copy.deepcopy(data)
    render_report(data)
    render_text_summary(data)
    assert data == before


@pytest.mark.parametrize("phase,cls", [("Succeeded", "b-ok"), ("Failed", "b-bad"), ("Weird<x>", "b-other")])
def test_phase_badge(phase, cls):
    data = sample()
    data["run"]["phase"] = phase
    page = render_report(data)
    assert f'class="badge {cls}"' in page


def test_control_characters_and_lone_surrogates_never_reach_the_page():
    """A NUL (or another control character) in the query or a title was written raw into
    report.html; a lone surrogate made the page impossible to encode. Each is shown as U+FFFD;
    newlines and tabs stay."""
    data = sample()
    data["run"]["query"] = "nul\x00 bell\x07 esc\x1b[31m c1\x85 tab\tnew\nline"
    data["answers"][0]["title"] = "half \ud800 a pair"
    page = render_report(data)
    page.encode("utf-8")  # no lone surrogate left
    assert not any(c in page for c in "\x00\x07\x1b\x85\ud800")
    assert "nul\ufffd bell\ufffd esc\ufffd[31m c1\ufffd tab\tnew\nline" in page
    assert "half \ufffd a pair" in page
