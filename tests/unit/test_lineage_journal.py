"""A pass costs what changed: the engine's change set, the JSON steps kept from it, and the
offloaded lineage written as a snapshot plus a journal of changes (read back after a restart)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from searchrun.api import SearchRunSpec
from searchrun.artifacts import open_store, read_uri
from searchrun.engine import Decision, Observation, reconcile
from searchrun.executors.kube.config import OperatorConfig
from searchrun.executors.kube.lineage_store import JOURNAL_PREFIX, StepDumps, restore_lineage, restore_status
from searchrun.executors.kube.reconciler import RunReconciler
from support.simulation import SyntheticGraph, graph_outcome

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


def _rounds(spec, outcome, max_rounds=5000, executor_retries=False):
    """Drive the engine as simulation.simulate does, yielding (decision, now) after every pass."""
    now, status, running, observations = T0, None, {}, {}
    for _ in range(max_rounds):
        d = reconcile(spec, status, observations, now, "abc")
        status = d.status
        yield d, now
        if d.done:
            return
        for a in d.start:
            running[a.step_id] = a
        observations = {}
        for sid, a in list(running.items()):
            o = outcome(a)
            if executor_retries and o.state == "succeeded":
                o = Observation(o.step_id, o.attempt, o.state, result=o.result, attempts=a.attempt + 1)
            observations[sid] = o
            del running[sid]
        now += timedelta(seconds=1)
        if not observations and d.wake_at and d.wake_at > now:
            now = d.wake_at
    raise AssertionError("the run did not finish")


def _dumps(status):
    return {s.id: s.model_dump(mode="json") for s in status.steps}


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(agents=st.integers(1, 4), depth=st.integers(1, 4), fanout=st.integers(1, 4), steps=st.integers(8, 60),
       parallel=st.integers(1, 8), tokens=st.sampled_from([1000, 5000, 100000]), fail=st.sampled_from([0.0, 0.2, 0.5]),
       retries=st.integers(0, 2), deadline=st.sampled_from([10, 30, 900]), executor_retries=st.booleans(), seed=st.integers(0, 99))
def test_every_change_the_engine_makes_is_in_its_change_set(agents, depth, fanout, steps, parallel, tokens, fail, retries,
                                                             deadline, executor_retries, seed):
    spec = SearchRunSpec(query="q", budget=dict(maxAgents=agents, maxDepth=depth, maxFanoutPerNode=fanout,
                                                maxSteps=max(steps, agents + 4), maxParallel=parallel, maxTokens=tokens,
                                                deadlineSeconds=deadline),
                         steps=dict(retries=retries, backoffSeconds=1))
    outcome = graph_outcome(SyntheticGraph(300, branching=6, answer_rate=0.3, seed=seed), fail_rate=fail, seed=seed)
    before: dict = {}
    for d, _ in _rounds(spec, outcome, executor_retries=executor_retries):
        now = _dumps(d.status)
        changed = d.changed
        missed = {sid for sid, dump in now.items() if before.get(sid) != dump} - changed
        assert not missed, f"changed but not reported: {sorted(missed)}"
        before = now


def test_step_dumps_follow_the_engine():
    spec = SearchRunSpec(query="q", budget=dict(maxAgents=5, maxDepth=4, maxFanoutPerNode=4, maxSteps=300, maxParallel=10,
                                                maxTokens=10_000_000, deadlineSeconds=86400), steps=dict(retries=1, backoffSeconds=1))
    outcome = graph_outcome(SyntheticGraph(3000, branching=8, seed=3), fail_rate=0.1, seed=3)
    dumps = None
    for d, _ in _rounds(spec, outcome):
        if dumps is None:
            dumps = StepDumps(d.status)
        else:
            dumps.sync(d.changed)
        full = [s.model_dump(mode="json", exclude_none=True, exclude_defaults=False) for s in d.status.steps]
        assert dumps.dumps == full
        assert dumps.json_size == len(json.dumps(full, separators=(",", ":")))
        assert dumps.frontier(50) == [x for x in full if x["phase"] in ("Running", "Queued", "Backoff")][:50]
        by_type, by_phase = {}, {}
        for x in full:
            by_type[x["type"]] = by_type.get(x["type"], 0) + 1
            by_phase[x["phase"]] = by_phase.get(x["phase"], 0) + 1
        assert dumps.summary() == {"steps": len(full), "byType": by_type, "byPhase": by_phase}


def _reconciler(tmp_path, spec, offload=8192):
    cfg = OperatorConfig(lineageOffloadBytes=offload, artifacts=f"file://{tmp_path}")
    r = RunReconciler(None, None, cfg, "ns", "big", "abc", events=None)
    r.spec, r.store, r.store_uri = spec, open_store(f"file://{tmp_path}"), f"file://{tmp_path}"
    return r


def test_offloaded_lineage_is_a_snapshot_plus_a_journal_and_reads_back_at_every_pass(tmp_path):
    spec = SearchRunSpec(query="q", budget=dict(maxAgents=10, maxDepth=4, maxFanoutPerNode=5, maxSteps=600, maxParallel=20,
                                                maxTokens=10_000_000, deadlineSeconds=86400), steps=dict(retries=1, backoffSeconds=1))
    outcome = graph_outcome(SyntheticGraph(5000, branching=10, seed=5), fail_rate=0.05, seed=5)
    r = _reconciler(tmp_path, spec)
    written = []
    put, put_parts = r.store.put_bytes, r.store.put_parts
    r.store.put_bytes = lambda key, data, **kw: (written.append(len(data)), put(key, data, **kw))[1]
    r.store.put_parts = lambda key, parts, **kw: (written.append(sum(map(len, parts))), put_parts(key, parts, **kw))[1]
    passes = offloaded_passes = 0
    for d, _ in _rounds(spec, outcome):
        r.status = d.status
        body = r._status_body(d)["status"]
        passes += 1
        assert len(json.dumps(body)) < 65536
        if body.get("lineageURI"):
            offloaded_passes += 1
            restored, offloaded, seq = restore_lineage(body, read_uri)
            assert offloaded and seq == r.journal_seq
            assert restored.model_dump(mode="json", exclude={"budgetUsed", "budgetRemaining"}) == \
                d.status.model_dump(mode="json", exclude={"budgetUsed", "budgetRemaining"})
    assert d.done and offloaded_passes > 10
    entries = [k for k in r.store.list("runs/abc/") if JOURNAL_PREFIX in k]
    assert len(entries) > 10, "passes after the first offload write journal entries, not the whole lineage"
    snapshot = len(r.store.get_bytes("runs/abc/lineage.json"))
    print(f"{offloaded_passes} offloaded passes, {len(entries)} journal entries, snapshot {snapshot} B, written {sum(written)} B")
    assert sum(written) < offloaded_passes * snapshot / 4, "far less than the whole lineage at every pass"


def test_a_restarted_reconciler_continues_the_journal(tmp_path):
    """After a restart the journal goes on after the last entry read; nothing is read twice or lost."""
    spec = SearchRunSpec(query="q", budget=dict(maxAgents=10, maxDepth=4, maxFanoutPerNode=5, maxSteps=400, maxParallel=20,
                                                maxTokens=10_000_000, deadlineSeconds=86400))
    outcome = graph_outcome(SyntheticGraph(5000, branching=10, seed=6), seed=6)
    r = _reconciler(tmp_path, spec)
    now, status, observations, restarts = T0, None, {}, 0
    for _ in range(5000):
        d = reconcile(spec, status, observations, now, "abc")
        r.status = status = d.status
        body = r._status_body(d)["status"]
        if d.done:
            break
        observations = {a.step_id: outcome(a) for a in d.start}
        now += timedelta(seconds=1)
        if body.get("lineageURI") and r.journal_seq in (3, 9) and restarts < 2:
            restarts += 1  # an operator restart: all it has is the status body and the store
            r = _reconciler(tmp_path, spec)
            status, r.offloaded, r.journal_seq = restore_lineage(body, read_uri)
            r.status, r.dumps = status, StepDumps(status)
    assert restarts == 2
    final, _ = restore_status(body, read_uri)
    assert final.phase == "Succeeded" and len(final.steps) == 400
    assert final.model_dump(mode="json", exclude={"budgetUsed", "budgetRemaining"}) == \
        status.model_dump(mode="json", exclude={"budgetUsed", "budgetRemaining"})


def test_a_store_writes_parts_as_their_concatenation(tmp_path):
    """The lineage is written in parts (not joined first); the object is the same bytes either way."""
    store = open_store(f"file://{tmp_path}")
    parts = [b'{"a":', b"[1,2]", b"}"]
    for overwrite in (True, False):
        key = f"runs/x/{overwrite}.json"
        uri, size = store.put_parts(key, parts, overwrite=overwrite)
        assert store.get_bytes(key) == b"".join(parts) and size == 11 and uri == store.uri_for(key)
    assert store.put_parts("runs/x/True.json", [b"{}"], overwrite=True)[1] == 2 and store.get_bytes("runs/x/True.json") == b"{}"
    assert not [k for k in store.list("runs/x/") if "tmp" in k.lower()], "no temporary file left"
