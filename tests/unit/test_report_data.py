"""What the create_report step puts in its report: real finders, its own final state, cut texts."""

from __future__ import annotations

import re

from searchrun.report import render_report
from searchrun.steps import report_data


def lineage(report_phase: str = "Running") -> dict:
    steps = [
        {"id": "detect", "type": "detect_intent", "parents": [], "phase": "Succeeded",
         "decision": "deep: the query spans 6 content terms: quantum, computing, speed, machine, learning, limits" * 3},
        {"id": "plan", "type": "plan_search", "parents": ["detect"], "phase": "Succeeded", "decision": "2 seed(s)"},
        {"id": "t0", "type": "traverse_node", "parents": ["plan"], "depth": 1, "doc": "a", "phase": "Succeeded",
         "found": True, "decision": "found (0.90)"},
        {"id": "t1", "type": "traverse_node", "parents": ["plan"], "depth": 1, "doc": "b", "phase": "Succeeded",
         "found": False, "decision": "dead end"},
        {"id": "aggregate", "type": "aggregate_results", "parents": ["t0"], "phase": "Succeeded", "found": True,
         "decision": "1 answer(s)"},
        {"id": "report", "type": "create_report", "parents": ["aggregate"], "phase": report_phase},
    ]
    return {"run": {"name": "r", "uid": "u", "query": "q", "budget": {}},
            "status": {"phase": "Running", "intent": "deep", "steps": steps, "budgetUsed": {}}}


ANSWERS = [{"docId": "a", "title": "A", "score": 0.9, "stepId": "t0", "depth": 1}]


def steps_by_id(data: dict) -> dict:
    return {s["id"]: s for s in data["steps"]}


def test_the_fan_in_is_not_counted_as_a_finder():
    data = report_data(lineage(), ANSWERS)
    s = steps_by_id(data)
    assert s["t0"]["found"] is True
    assert not s["aggregate"]["found"]
    page = render_report(data)
    assert re.search(r"\b1 found an answer\b", page), re.findall(r"\d+ found an answer", page)
    assert 'data-step="aggregate"' in page
    assert re.search(r'class="node n-other[^"]*" data-step="aggregate"', page)


def test_the_report_step_shows_its_own_final_state():
    data = report_data(lineage("Running"), ANSWERS)
    rep = steps_by_id(data)["report"]
    assert rep["phase"] == "Succeeded"
    assert rep["decision"] == "report with 1 answer(s)"
    assert data["run"]["phase"] == "Succeeded"
    assert ">Running<" not in render_report(data)


def test_a_finished_report_step_is_left_as_recorded():
    assert steps_by_id(report_data(lineage("Failed"), ANSWERS))["report"]["phase"] == "Failed"


def test_decisions_in_the_step_table_end_on_a_word_boundary():
    page = render_report(report_data(lineage(), ANSWERS))
    cut = re.findall(r"<td>(deep: the query[^<]*)</td>", page)
    assert cut and all(c.endswith("…") for c in cut), cut
    kept = cut[0][:-1]
    assert kept.split()[-1].strip(",:;") in {"quantum", "computing", "speed", "machine", "learning", "limits",
                                              "deep", "the", "query", "spans", "6", "content", "terms"}
