"""A weak match's children wait one wave, so that a document two parents propose goes to the
stronger one even when it is a link deeper (engine only: synthetic step results, no I/O)."""

from __future__ import annotations

import random

import pytest

from searchrun.api import SearchRunSpec
from datetime import datetime, timedelta, timezone

from searchrun.engine import Observation, StepResult, reconcile
from searchrun.engine.index import LineageIndex, index_of
from support.simulation import simulate

# seed "system" (strong) -> "team" -> "lead"; seed "site" (weak) -> "lead" directly
GRAPH = {
    "system": (0.9, False, ["team"]),
    "site": (0.2, False, ["lead"]),
    "team": (0.8, False, ["lead"]),
    "lead": (0.95, True, []),
}


def _outcome(graph):
    def outcome(a):
        if a.step_type == "detect_intent":
            return Observation(a.step_id, a.attempt, "succeeded", result=StepResult(tokens=5, intent="deep"))
        if a.step_type == "plan_search":
            return Observation(a.step_id, a.attempt, "succeeded", result=StepResult(tokens=5, seeds=("system", "site")))
        if a.step_type == "traverse_node":
            score, found, nxt = graph[a.input["doc"]]
            return Observation(a.step_id, a.attempt, "succeeded",
                               result=StepResult(tokens=10, score=score, found=found, next=tuple(nxt)))
        return Observation(a.step_id, a.attempt, "succeeded", result=StepResult(found=True, answers=1))

    return outcome


def _spec(**budget):
    return SearchRunSpec(query="who leads the team that runs the system?", budget={"maxAgents": 2, **budget})


def _by_doc(status):
    return {s.doc: s for s in status.steps if s.type == "traverse_node"}


def test_a_document_two_parents_propose_goes_to_the_stronger_one_a_link_deeper():
    r = simulate(_spec(), _outcome(GRAPH))
    lead = _by_doc(r.status)["lead"]
    assert lead.parents == ["t0-0"] and lead.depth == 3, "the team's lead, not the lead the weak seed links to first"
    assert _by_doc(r.status)["site"].score == 0.2


def test_without_a_weak_match_the_first_parent_in_the_wave_order_gets_it():
    graph = dict(GRAPH, site=(0.8, False, ["lead"]))  # as strong as the best: no delay
    r = simulate(_spec(), _outcome(graph))
    assert _by_doc(r.status)["lead"].parents == ["t1"]


def test_an_answer_is_never_a_weak_match():
    graph = dict(GRAPH, site=(0.2, True, ["lead"]))
    r = simulate(_spec(), _outcome(graph))
    assert _by_doc(r.status)["lead"].parents == ["t1"]


def _run_out_of_order(spec, outcome, seed):
    """Like ``simulate``, but each step finishes 1 to 4 rounds after it starts (seeded)."""
    rnd = random.Random(seed)
    now = datetime(2026, 1, 1, tzinfo=timezone.utc)
    status, running, obs = None, {}, {}
    for _ in range(10_000):
        d = reconcile(spec, status, obs, now, "0123456789abcdef")
        status = d.status
        if d.done:
            return status
        for a in d.start:
            running[a.step_id] = (a, rnd.randint(1, 4))
        obs = {}
        for sid, (a, left) in list(running.items()):
            if left <= 1:
                obs[sid] = outcome(a)
                del running[sid]
            else:
                running[sid] = (a, left - 1)
                obs[sid] = Observation(sid, a.attempt, "running")
        now += timedelta(seconds=1)
    raise AssertionError("the run did not finish")


@pytest.mark.parametrize("order_seed", [1, 2, 3])
@pytest.mark.parametrize("parallel", [1, 8])
def test_the_lineage_does_not_depend_on_the_order_steps_finish_in(order_seed, parallel):
    base = simulate(_spec(maxParallel=1), _outcome(GRAPH))
    st = _run_out_of_order(_spec(maxParallel=parallel), _outcome(GRAPH), order_seed)
    shape = lambda st: [(s.id, s.doc, s.parents) for s in st.steps]  # noqa: E731
    assert shape(st) == shape(base.status)
    assert _by_doc(st)["lead"].parents == ["t0-0"]


def test_a_rebuilt_index_gives_every_step_the_same_wave():
    r = simulate(_spec(), _outcome(GRAPH))
    live = index_of(r.status)
    rebuilt = LineageIndex(r.status)  # as after an operator restart
    assert rebuilt.wave == live.wave
    assert rebuilt.wave[_by_doc(r.status)["lead"].id] == 3  # the team's wave (2) plus one
    assert rebuilt.delay(_by_doc(r.status)["site"].id) == 1


def test_a_step_result_score_outside_zero_to_one_is_rejected_naming_the_field():
    with pytest.raises(ValueError, match="'score'"):
        StepResult.from_dict({"score": 1.5})
    with pytest.raises(ValueError, match="'score'"):
        StepResult.from_dict({"score": "high"})
    assert StepResult.from_dict({"score": 0.25}).score == 0.25
    assert StepResult.from_dict(StepResult(score=0.5).to_dict()).score == 0.5
