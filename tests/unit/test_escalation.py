"""A lookup whose simple search finds nothing goes on to a deep search; a deep search that then
finds nothing reports the empty simple search (engine only: synthetic step results, no I/O)."""

from __future__ import annotations

from searchrun.engine import Observation, StepResult
from support.simulation import simulate

from test_weak_match_waves import GRAPH, _by_doc, _spec


def _escalating(simple_found: bool, deep_found: bool):
    def outcome(a):
        if a.step_type == "detect_intent":
            r = StepResult(tokens=5, intent="simple")
        elif a.step_type == "simple_search":
            r = StepResult(tokens=5, found=simple_found, answers=int(simple_found))
        elif a.step_type == "plan_search":
            r = StepResult(tokens=5, seeds=("system", "site"))
        elif a.step_type == "traverse_node":
            score, _, nxt = GRAPH[a.input["doc"]]
            r = StepResult(tokens=10, score=score, found=deep_found and a.input["doc"] == "lead", next=tuple(nxt))
        else:
            r = StepResult(found=True, answers=1)
        return Observation(a.step_id, a.attempt, "succeeded", result=r)

    return outcome


def test_a_simple_search_that_finds_nothing_goes_on_to_a_deep_search():
    st = simulate(_spec(), _escalating(False, True)).status
    steps = {s.id: s for s in st.steps}
    assert st.phase == "Succeeded" and st.intent == "simple"
    assert st.escalated == "the simple search found nothing" and st.fallback is None
    assert steps["plan"].parents == ["simple"]
    assert steps["aggregate"].parents == [_by_doc(st)["lead"].id] and steps["report"].parents == ["aggregate"]
    assert "went on to a deep search" in st.message


def test_a_deep_search_after_an_empty_simple_one_that_finds_nothing_reports_the_simple_one():
    st = simulate(_spec(), _escalating(False, False)).status
    steps = {s.id: s for s in st.steps}
    assert st.phase == "Succeeded" and st.escalated and st.fallback is None
    assert "aggregate" not in steps and steps["report"].parents == ["simple"]
    assert [s.id for s in st.steps].count("simple") == 1


def test_a_simple_search_that_finds_something_reports_it_at_once():
    st = simulate(_spec(), _escalating(True, True)).status
    assert st.escalated is None and "plan" not in {s.id for s in st.steps}
