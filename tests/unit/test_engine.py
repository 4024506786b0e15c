"""The engine, without any I/O: the DAG, budgets, retries, fallbacks, and its invariants."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from searchrun.api import SearchRunSpec
from searchrun.engine import Observation, StepResult, reconcile
from searchrun.executors.kube.jobs import job_name
from support.simulation import SyntheticGraph, graph_outcome, simulate

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
UID = "5f0c2a9e-1b2c-4d3e-8f90-0123456789ab"


def spec(**budget) -> SearchRunSpec:
    return SearchRunSpec(query="how does x relate to y", budget=budget)


def by_id(status):
    return {s.id: s for s in status.steps}


def test_simple_intent_runs_detect_simple_report():
    r = simulate(spec(), graph_outcome(SyntheticGraph(50), intent="simple"))
    assert [s.id for s in r.status.steps] == ["detect", "simple", "report"]
    assert r.status.phase == "Succeeded"
    assert r.status.intent == "simple"
    assert by_id(r.status)["report"].parents == ["simple"]


def test_deep_run_fans_out_and_in_over_found_steps_only():
    r = simulate(spec(maxAgents=3, maxDepth=2, maxFanoutPerNode=2), graph_outcome(SyntheticGraph(100, answer_rate=0.5)))
    st = r.status
    steps = by_id(st)
    assert st.phase == "Succeeded" and st.intent == "deep"
    seeds = [s for s in st.steps if s.parents == ["plan"]]
    assert len(seeds) == 3 and all(s.depth == 1 for s in seeds)
    found = [s.id for s in st.steps if s.type == "traverse_node" and s.found]
    assert found, "the synthetic graph has answers at rate 0.5"
    assert steps["aggregate"].parents == found
    assert steps["report"].parents == ["aggregate"]
    assert "maxDepth" in st.limitsHit


def test_deep_search_that_finds_nothing_falls_back_to_simple():
    r = simulate(spec(), graph_outcome(SyntheticGraph(100, answer_rate=0.0)))
    st = r.status
    assert st.phase == "Succeeded"
    assert "simple" in by_id(st) and "aggregate" not in by_id(st)
    assert st.fallback == "the deep search found nothing"


def test_max_steps_stops_spawning_and_says_so():
    r = simulate(spec(maxAgents=3, maxDepth=5, maxFanoutPerNode=4, maxSteps=12), graph_outcome(SyntheticGraph(500, branching=8, answer_rate=0.3)))
    st = r.status
    assert st.stoppedBy == "maxSteps"
    assert st.budgetUsed.steps <= 12
    assert st.phase == "Succeeded"
    assert by_id(st)["report"].phase == "Succeeded"


def test_token_budget_stops_the_search():
    r = simulate(spec(maxAgents=3, maxDepth=5, maxFanoutPerNode=3, maxSteps=200, maxTokens=3000),
                 graph_outcome(SyntheticGraph(500, branching=6, answer_rate=0.3), tokens=400))
    st = r.status
    assert st.stoppedBy == "maxTokens"
    assert st.tokens <= 3000


def test_cost_budget_stops_the_search():
    s = SearchRunSpec(query="q", agent={"costPer1kTokensUSD": 10.0},
                      budget={"maxAgents": 3, "maxDepth": 5, "maxFanoutPerNode": 3, "maxSteps": 200, "maxCostUSD": 0.05})
    r = simulate(s, graph_outcome(SyntheticGraph(500, branching=6), tokens=400))
    # graph_outcome reports no cost itself: cost is what the steps report; check the allowance kept tokens within cost
    assert r.status.stoppedBy in ("maxCostUSD", "maxTokens")
    assert max(a.input["tokenAllowance"] for a in r.started) * 10.0 / 1000 <= 0.05 + 1e-9


def test_deadline_skips_queued_traversals_and_fans_in():
    r = simulate(spec(maxAgents=3, maxDepth=5, maxFanoutPerNode=3, maxSteps=300, maxParallel=1, deadlineSeconds=10),
                 graph_outcome(SyntheticGraph(500, branching=6, answer_rate=0.3)))
    st = r.status
    assert st.stoppedBy == "deadlineSeconds"
    assert any(s.phase == "Skipped" for s in st.steps)
    assert st.phase == "Succeeded"
    assert by_id(st)["report"].phase == "Succeeded"


def test_failed_step_is_retried_with_exponential_backoff_then_succeeds():
    s = SearchRunSpec(query="q", steps={"retries": 2, "backoffSeconds": 4, "backoffMaxSeconds": 60})
    d = reconcile(s, None, {}, T0, UID)
    assert [a.step_id for a in d.start] == ["detect"]
    st = d.status
    d = reconcile(s, st, {"detect": Observation("detect", 1, "failed", message="boom")}, T0, UID)
    detect = by_id(d.status)["detect"]
    assert detect.phase == "Backoff" and d.start == []
    assert d.wake_at == T0 + timedelta(seconds=4)
    # not before the backoff
    d = reconcile(s, d.status, {}, T0 + timedelta(seconds=3), UID)
    assert d.start == []
    d = reconcile(s, d.status, {}, T0 + timedelta(seconds=4), UID)
    assert [(a.step_id, a.attempt) for a in d.start] == [("detect", 2)]
    d = reconcile(s, d.status, {"detect": Observation("detect", 2, "failed", message="boom")}, T0 + timedelta(seconds=5), UID)
    assert d.wake_at == T0 + timedelta(seconds=5 + 8), "the second delay doubles"
    d = reconcile(s, d.status, {}, T0 + timedelta(seconds=13), UID)
    d = reconcile(s, d.status, {"detect": Observation("detect", 3, "succeeded", result=StepResult(intent="simple"))}, T0 + timedelta(seconds=14), UID)
    assert by_id(d.status)["detect"].attempts == 3
    assert [a.step_id for a in d.start] == ["simple"]


def test_a_step_retried_by_its_executor_says_why_the_earlier_attempt_failed():
    """On a cluster the Job retries the pod; the step still tells the story in its message."""
    s = SearchRunSpec(query="q", steps={"retries": 2})
    d = reconcile(s, None, {}, T0, UID)
    d = reconcile(s, d.status, {"detect": Observation("detect", 1, "succeeded", result=StepResult(intent="simple"), attempts=2,
                                                      message="ArtifactError: the store is unreachable")}, T0, UID)
    detect = by_id(d.status)["detect"]
    assert detect.phase == "Succeeded" and detect.attempts == 2
    assert detect.message == "succeeded on attempt 2; an earlier attempt failed: ArtifactError: the store is unreachable"
    d = reconcile(s, d.status, {"simple": Observation("simple", 1, "succeeded", result=StepResult(answers=1), attempts=1)}, T0, UID)
    assert by_id(d.status)["simple"].message is None


def test_detect_failing_for_good_falls_back_to_simple_search():
    s = SearchRunSpec(query="q", steps={"retries": 0})
    d = reconcile(s, None, {}, T0, UID)
    d = reconcile(s, d.status, {"detect": Observation("detect", 1, "failed", message="agent down")}, T0, UID)
    assert by_id(d.status)["detect"].phase == "Failed"
    assert "agent down" in by_id(d.status)["detect"].message
    assert [a.step_id for a in d.start] == ["simple"]
    assert d.status.fallback == "detect_intent failed"
    assert any(e.reason == "FallbackToSimple" for e in d.events)


def test_failing_fan_in_fails_the_run_with_the_reason():
    s = SearchRunSpec(query="q", steps={"retries": 0})
    d = reconcile(s, None, {}, T0, UID)
    d = reconcile(s, d.status, {"detect": Observation("detect", 1, "succeeded", result=StepResult(intent="simple"))}, T0, UID)
    d = reconcile(s, d.status, {"simple": Observation("simple", 1, "failed", message="corpus unreadable")}, T0, UID)
    assert d.done and d.status.phase == "Failed"
    assert "simple_search failed" in d.status.message and "corpus unreadable" in d.status.message
    assert any(c.type == "Failed" and c.status == "True" for c in d.status.conditions)


def test_executor_retries_are_final_for_the_engine():
    """A Job retries by its backoffLimit; when it fails, the engine does not retry it again."""
    s = SearchRunSpec(query="q", steps={"retries": 3})
    d = reconcile(s, None, {}, T0, UID)
    d = reconcile(s, d.status, {"detect": Observation("detect", 1, "failed", message="x", final=True, attempts=4)}, T0, UID)
    detect = by_id(d.status)["detect"]
    assert detect.phase == "Failed" and detect.attempts == 4


def test_level_triggered_inputs_are_idempotent_and_missing_jobs_restarted():
    s = spec()
    d = reconcile(s, None, {}, T0, UID, complete=True, job_namer=job_name)
    assert [a.job for a in d.start] == [job_name(UID, "detect")]
    # the Job was never created (crash): the next pass asks for it again, same name
    d2 = reconcile(s, d.status, {}, T0, UID, complete=True, job_namer=job_name)
    assert [a.job for a in d2.start] == [job_name(UID, "detect")]
    obs = {"detect": Observation("detect", 1, "succeeded", result=StepResult(intent="deep"))}
    d3 = reconcile(s, d2.status, obs, T0, UID, complete=True)
    n = len(d3.status.steps)
    d4 = reconcile(s, d3.status, obs, T0, UID, complete=True)
    assert len(d4.status.steps) == n
    assert [a.step_id for a in d4.start] == ["plan"], "only the missing plan Job, nothing new"


def test_job_names_are_valid_and_never_user_text():
    r = simulate(spec(maxAgents=10, maxDepth=5, maxFanoutPerNode=10, maxSteps=400, maxParallel=20),
                 graph_outcome(SyntheticGraph(2000, branching=12)), run_uid=UID, job_namer=job_name)
    dns = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    for a in r.started:
        assert dns.match(a.job) and len(a.job) <= 63, a.job
        assert a.job.startswith("sr-5f0c2a9e1b-")


@pytest.mark.parametrize("bad", [
    {"tokens": -1}, {"tokens": "3"}, {"costUSD": float("nan")}, {"found": "yes"}, {"next": "d1"},
    {"next": [""]}, {"intent": "maybe"}, {"decision": 5}, [],
])
def test_malformed_step_results_are_rejected_naming_the_field(bad):
    with pytest.raises(ValueError, match="step result"):
        StepResult.from_dict(bad)


def test_plans_a_10000_step_run():
    s = spec(maxAgents=10, maxDepth=5, maxFanoutPerNode=10, maxSteps=10000, maxParallel=50,
             maxTokens=100_000_000, maxCostUSD=10000, deadlineSeconds=86400)
    r = simulate(s, graph_outcome(SyntheticGraph(50000, branching=20)))
    assert r.status.phase == "Succeeded"
    assert r.status.budgetUsed.steps == 10000
    assert r.status.stoppedBy == "maxSteps"


# ------------------------------------------------------------- properties

budgets = st.builds(
    lambda agents, depth, fanout, extra, par, tokens, deadline: dict(
        maxAgents=agents, maxDepth=depth, maxFanoutPerNode=fanout, maxSteps=agents + 4 + extra,
        maxParallel=par, maxTokens=tokens, deadlineSeconds=deadline),
    st.integers(1, 10), st.integers(1, 5), st.integers(1, 10), st.integers(0, 150),
    st.integers(1, 12), st.integers(1000, 60000), st.integers(10, 400),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(budget=budgets, n_docs=st.integers(1, 300), branching=st.integers(0, 8), answer_rate=st.floats(0, 1),
       fail_rate=st.floats(0, 0.4), tokens=st.integers(0, 3000), intent=st.sampled_from(["simple", "deep"]),
       retries=st.integers(0, 3), seed=st.integers(0, 1000))
def test_invariants_hold_for_any_run(budget, n_docs, branching, answer_rate, fail_rate, tokens, intent, retries, seed):
    s = SearchRunSpec(query="q", budget=budget, steps={"retries": retries, "backoffSeconds": 1})
    g = SyntheticGraph(n_docs, branching=branching, answer_rate=answer_rate, seed=seed)
    r = simulate(s, graph_outcome(g, fail_rate=fail_rate, tokens=tokens, seed=seed, intent=intent), max_rounds=5000)
    st_ = r.status
    b = s.budget
    steps = by_id(st_)
    # every run terminates, with a reason
    assert st_.phase in ("Succeeded", "Failed") and st_.message
    # no budget is ever exceeded
    assert sum(1 for x in st_.steps if x.phase != "Skipped") <= b.maxSteps
    assert len({a.step_id for a in r.started}) <= b.maxSteps
    assert r.max_running <= b.maxParallel
    assert st_.budgetUsed.parallel <= b.maxParallel
    assert st_.tokens <= b.maxTokens
    traverse = [x for x in st_.steps if x.type == "traverse_node"]
    assert len([x for x in traverse if x.depth == 1]) <= b.maxAgents
    assert all(1 <= x.depth <= b.maxDepth for x in traverse)
    children: dict[str, int] = {}
    for x in traverse:
        for p in x.parents:
            children[p] = children.get(p, 0) + 1
    assert all(children.get(x.id, 0) <= b.maxFanoutPerNode for x in traverse)
    # no document is traversed twice in one run
    docs = [x.doc for x in traverse]
    assert len(docs) == len(set(docs))
    # every step's parents exist, and come before it
    seen: set[str] = set()
    for x in st_.steps:
        assert all(p in seen for p in x.parents), (x.id, x.parents)
        seen.add(x.id)
    # attempts never exceed the retry policy
    assert all(x.attempts <= retries + 1 for x in st_.steps)
    # a succeeded run has its report
    if st_.phase == "Succeeded":
        assert steps["report"].phase == "Succeeded"
    # deterministic: the same inputs plan the same lineage
    again = simulate(s, graph_outcome(g, fail_rate=fail_rate, tokens=tokens, seed=seed, intent=intent), max_rounds=5000)
    assert [(x.id, x.doc, x.phase) for x in again.status.steps] == [(x.id, x.doc, x.phase) for x in st_.steps]


def test_a_too_long_document_id_in_a_step_result_states_the_limit():
    from searchrun.engine.types import MAX_ID_CHARS as MAX_DOC_ID_CHARS

    assert MAX_DOC_ID_CHARS == 256
    StepResult.from_dict({"next": ["d" * 256]})
    for field in ("next", "seeds"):
        with pytest.raises(ValueError) as e:
            StepResult.from_dict({field: ["ok", "d" * 257]})
        assert f"step result field {field!r}" in str(e.value) and "256 characters" in str(e.value), str(e.value)
