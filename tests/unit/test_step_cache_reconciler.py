"""The step cache in the operator's reconciler: hits create no Job and spend no tokens, the
lineage says where they came from, and a damaged entry or an undigestable corpus is a miss.

The API server and the Job controller are the stand-in of test_reconciler_writes (a created Job
succeeds at once); the store is a real file store. The same on a real cluster is
tests/integration/test_operator_cache.py."""

from __future__ import annotations

import json

from searchrun import metrics
from searchrun.api import SearchRunSpec
from searchrun.artifacts import open_store
from searchrun.executors.kube import reconciler as rec
from searchrun.executors.kube.config import OperatorConfig
from searchrun.executors.kube.events import EventSink
from support.simulation import SyntheticGraph

from test_reconciler_writes import _FakeKube

TOKENS = 40


class _Kube(_FakeKube):
    """Each step spends TOKENS; the Jobs created are counted by step type."""

    def __init__(self, store, graph):
        super().__init__(store, graph)
        self.created: dict[str, int] = {}

    def create_job(self, ns, body):
        from searchrun.artifacts import step_key
        from searchrun.steps import STEP_ENV, StepContext

        env = {e["name"]: e.get("value") for e in body["spec"]["template"]["spec"]["containers"][0]["env"]}
        step = StepContext.from_json(env[STEP_ENV]).step
        self.created[step["type"]] = self.created.get(step["type"], 0) + 1
        job = super().create_job(ns, body)
        key = step_key(body["metadata"]["labels"]["searchrun.dev/run-uid"], step["stepId"], step["attempt"], "result.json")
        r = json.loads(self.store.get_bytes(key))
        self.store.put_json(key, {**r, "tokens": TOKENS}, overwrite=True)
        return job


class _Events(EventSink):
    def __init__(self):
        self.posted: list[tuple[str, str]] = []

    def post(self, run, type, reason, message):
        self.posted.append((reason, message))


def _spec(root, mode="ReadWrite", corpus="builtin:sample") -> SearchRunSpec:
    return SearchRunSpec(query="q", corpus={"uri": corpus}, cache={"mode": mode},
                         budget=dict(maxAgents=3, maxDepth=2, maxFanoutPerNode=2, maxSteps=30, maxParallel=4),
                         artifacts={"uri": f"file://{root}"})


def _run(root, uid: str, spec: SearchRunSpec):
    store = open_store(f"file://{root}")
    kube = _Kube(store, SyntheticGraph(200, branching=3, seed=2))
    events = _Events()
    r = rec.RunReconciler(kube, kube, OperatorConfig(), "team-a", "run", uid, events=events)
    r.spec, r.store, r.store_uri = spec, store, f"file://{root}"
    for _ in range(200):
        d = r.reconcile_once()
        if d.done:
            return d.status, kube.created, events.posted
    raise AssertionError("the run did not finish")


def _hits(step_type: str) -> float:
    return metrics.REGISTRY.get_sample_value("searchrun_cache_hits_total", {"step_type": step_type}) or 0.0


def test_an_identical_second_run_creates_no_search_jobs_and_says_where_its_steps_came_from(tmp_path):
    first, jobs1, _ = _run(tmp_path, "run1", _spec(tmp_path))
    assert first.phase == "Succeeded" and jobs1["traverse_node"] >= 3
    hits_before = _hits("traverse_node")
    second, jobs2, events = _run(tmp_path, "run2", _spec(tmp_path))
    assert second.phase == "Succeeded"
    assert set(jobs2) == {"aggregate_results", "create_report"}, jobs2  # no detect, plan or traverse Job
    assert [(s.id, s.found, s.next) for s in second.steps] == [(s.id, s.found, s.next) for s in first.steps]
    cached = [s for s in second.steps if s.type in ("detect_intent", "plan_search", "traverse_node")]
    assert all(s.cachedFrom is not None and s.cachedFrom.run == "run1" and s.cachedFrom.step == s.id for s in cached)
    assert all(s.tokens == 0 and s.tokensSaved == TOKENS for s in cached)
    assert second.budgetUsed.steps == first.budgetUsed.steps  # the budget counts the steps...
    assert second.tokens == first.tokens - TOKENS * len(cached)  # ...but not their tokens
    assert _hits("traverse_node") - hits_before == jobs1["traverse_node"]
    assert any(reason == "StepsCached" for reason, _ in events)
    assert list((tmp_path / "cache" / "team-a" / "traverse_node").iterdir())  # under the namespace's prefix


def test_a_corrupt_entry_is_a_miss_and_read_only_adds_nothing(tmp_path):
    _, jobs1, _ = _run(tmp_path, "run1", _spec(tmp_path))
    entries = sorted((tmp_path / "cache" / "team-a" / "traverse_node").glob("*/entry.json"))
    entries[0].write_text('{"v": 1, "key": ')  # truncated
    _, jobs2, _ = _run(tmp_path, "run2", _spec(tmp_path, mode="ReadOnly"))
    assert jobs2.get("traverse_node") == 1  # the damaged one ran; the others were hits
    assert entries[0].read_text() == '{"v": 1, "key": '  # ReadOnly: not replaced
    _, jobs3, _ = _run(tmp_path, "run3", _spec(tmp_path))
    assert jobs3.get("traverse_node") == 1  # ReadWrite replaces it...
    _, jobs4, _ = _run(tmp_path, "run4", _spec(tmp_path))
    assert "traverse_node" not in jobs4  # ...and it is a hit from then on
    assert json.loads(entries[0].read_text())["from"]["run"] == "run3"


def test_a_corpus_the_operator_may_not_read_turns_the_cache_off_not_the_run(tmp_path):
    """A file:// corpus (admission refuses it; the webhooks may be off) is never read by the
    operator: every step runs as a Job."""
    corpus = tmp_path / "corpus.json"
    corpus.write_text(json.dumps({"documents": {"d0": {"title": "t", "content": "c"}}}))
    for uid in ("run1", "run2"):
        status, jobs, _ = _run(tmp_path, uid, _spec(tmp_path, corpus=f"file://{corpus}"))
        assert status.phase == "Succeeded" and "detect_intent" in jobs
    assert not (tmp_path / "cache").exists()


def test_cache_off_costs_no_lookup(tmp_path, monkeypatch):
    from searchrun.executors.kube import step_cache

    monkeypatch.setattr(step_cache, "make_cache", lambda *a, **k: (_ for _ in ()).throw(AssertionError("looked up")))
    status, jobs, _ = _run(tmp_path, "run1", _spec(tmp_path, mode="Off"))
    assert status.phase == "Succeeded" and jobs["traverse_node"] >= 3


def test_an_operator_that_crashed_after_a_hit_finds_the_same_hit_and_creates_no_job(tmp_path):
    """The hit's result is written and the status says the step is Running; the operator dies before
    the next pass. The new one (loading that status) is answered by the cache again, no Job: the
    hit writes the same result.json bytes again, which both stores accept as the same commit."""
    from searchrun.executors.kube.lineage_store import StepDumps

    _run(tmp_path, "run1", _spec(tmp_path))
    store = open_store(f"file://{tmp_path}")
    kube = _Kube(store, SyntheticGraph(200, branching=3, seed=2))
    spec = _spec(tmp_path)

    def reconciler():
        r = rec.RunReconciler(kube, kube, OperatorConfig(), "team-a", "run", "run2", events=_Events())
        r.spec, r.store, r.store_uri = spec, store, f"file://{tmp_path}"
        return r

    a = reconciler()
    while not (a.step_recall and a.step_recall.answered):
        a.reconcile_once()
    crashed_with = set(a.step_recall.answered)
    b = reconciler()  # a restart: the status as last patched, nothing in memory
    b.status = a.status.model_copy(deep=True)
    b.dumps = StepDumps(b.status)
    assert all(s.phase == "Running" for s in b.status.steps if s.id in crashed_with)
    for _ in range(200):
        d = b.reconcile_once()
        if d.done:
            break
    assert d.status.phase == "Succeeded"
    assert set(kube.created) == {"aggregate_results", "create_report"}, kube.created
    assert all(s.cachedFrom is not None and s.cachedFrom.run == "run1" for s in d.status.steps if s.id in crashed_with)
