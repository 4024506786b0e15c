"""An offloaded run keeps its finished steps compact (engine.settled): as their JSON, not as
pydantic models, and the lineage it writes is the same."""

import json

from searchrun.api import StepStatus
from searchrun.artifacts import dump_json
from searchrun.engine.settled import SettledStep, changed_since_settled, settle
from searchrun.api import SearchRunStatus


def _traverse(id="t0-1", **kw):
    return StepStatus(id=id, type="traverse_node", parents=["t0"], depth=2, doc="d1", phase="Succeeded", attempts=1,
                      expanded=True, found=True, tokens=30, note="n", via="cites",
                      proposals=[{"doc": f"d{i}", "via": "cites", "why": "w"} for i in range(20)], **kw)


def _raw(s):
    return dump_json(s.model_dump(mode="json", exclude_none=True))


def test_a_settled_step_reads_like_its_model_and_writes_land_in_its_next_dump():
    m = _traverse()
    st = SearchRunStatus(steps=[m, StepStatus(id="t0-2", type="traverse_node", phase="Running", attempts=1)])
    assert settle(st, [0, 1], lambda i: _raw(st.steps[i])) == [0], "a running step is not settled"
    v = st.steps[0]
    assert isinstance(v, SettledStep) and isinstance(st.steps[1], StepStatus)
    for k in ("id", "type", "phase", "depth", "doc", "parents", "found", "tokens", "note", "via", "expanded"):
        assert getattr(v, k) == getattr(m, k), k
    assert [p.doc for p in v.proposals] == [f"d{i}" for i in range(20)]  # read from its JSON
    assert v.model_dump(mode="json", exclude_none=True) == m.model_dump(mode="json", exclude_none=True)
    assert st.model_dump(mode="json") == SearchRunStatus(steps=[m, st.steps[1]]).model_dump(mode="json")
    assert not changed_since_settled(v) and v.thawed is None

    v.expanded = False           # a kept field: no model made
    assert v.thawed is None and changed_since_settled(v)
    assert v.model_dump(mode="json", exclude_none=True)["expanded"] is False
    v.message = "why"            # any other field: thawed, and forwarded to from now on
    assert v.thawed is not None and v.message == "why" and v.model().expanded is False
    assert v.model_dump(mode="json", exclude_none=True)["message"] == "why"
    v.expanded = True
    assert settle(st, [0], lambda i: _raw(st.steps[i].model())) == [0]
    assert v.thawed is None and v.patched is None and st.steps[0] is v
    assert json.loads(v.json)["message"] == "why" and v.message == "why"


def test_an_offloaded_run_holds_no_model_per_finished_step_and_writes_the_same_lineage(tmp_path):
    from searchrun.api import SearchRunSpec
    from searchrun.artifacts import open_store, read_uri
    from searchrun.executors.kube import reconciler as rec
    from searchrun.executors.kube.config import OperatorConfig
    from searchrun.executors.kube.events import EventSink
    from searchrun.executors.kube.lineage_store import restore_status
    from support.simulation import SyntheticGraph
    from test_reconciler_writes import _FakeKube

    store = open_store(f"file://{tmp_path}")
    fake = _FakeKube(store, SyntheticGraph(3000, branching=10, seed=1))
    spec = SearchRunSpec(query="q", budget=dict(maxAgents=5, maxDepth=4, maxFanoutPerNode=5, maxSteps=300, maxParallel=10,
                                                maxTokens=10_000_000, deadlineSeconds=86400),
                         artifacts={"uri": f"file://{tmp_path}"})
    r = rec.RunReconciler(fake, fake, OperatorConfig(lineageOffloadBytes=16384), "ns", "run", "abc", events=EventSink())
    r.spec, r.store, r.store_uri = spec, store, f"file://{tmp_path}"
    settled_mid_run = 0
    for _ in range(2000):
        d = r.reconcile_once()
        if r.offloaded and not d.done:
            finished = [s for s in d.status.steps if s.phase in ("Succeeded", "Failed", "Skipped")]
            settled_mid_run = max(settled_mid_run, sum(isinstance(s, SettledStep) for s in finished))
            assert all(isinstance(s, SettledStep) for s in finished if s.expanded), \
                "a finished, expanded step of an offloaded run is no model"
            assert all(isinstance(r.dumps.dumps[i], bytes) for i, s in enumerate(d.status.steps)
                       if isinstance(s, SettledStep) and not changed_since_settled(s))
            assert not any(isinstance(s, SettledStep) and s.thawed is None for s in d.status.steps if s.phase == "Running"), \
                "a step in flight is its model (launching thaws it)"
        if d.done:
            break
    assert d.status.phase == "Succeeded" and len(d.status.steps) == 300 and settled_mid_run > 100
    restored, _ = restore_status(fake.patches[-1][1]["status"], read_uri)
    assert restored.model_dump(mode="json", exclude={"budgetUsed", "budgetRemaining"}) == \
        d.status.model_dump(mode="json", exclude={"budgetUsed", "budgetRemaining"})
    lineage = json.loads(read_uri(d.status.lineageURI if d.status.lineageURI else fake.patches[-1][1]["status"]["lineageURI"]))
    assert lineage["status"]["steps"] == [s.model_dump(mode="json", exclude_none=True) for s in d.status.steps]


def test_once_offloaded_a_new_queued_step_is_held_as_json_when_synced_and_written_the_same(tmp_path):
    from searchrun.artifacts import open_store
    from searchrun.engine.index import index_of
    from searchrun.executors.kube.lineage_store import LineageJournal, StepDumps

    st = SearchRunStatus(steps=[_traverse()])
    dumps = StepDumps(st)
    dumps.unwritten.clear()  # as after the first write to the store
    dumps.settle()
    assert isinstance(st.steps[0], SettledStep)
    idx = index_of(st)
    new = [StepStatus(id=f"t0-1-{j}", type="traverse_node", parents=["t0-1"], depth=3, doc=f"e{j}", via="cites",
                      tokenAllowance=100) for j in range(3)]
    expected = [_raw(s) for s in new]
    for s in new:  # as Planner.add_step
        st.steps.append(s)
        idx.add(s)
        idx.n += 1
    st.steps[0].expanded = False  # a kept field written on a settled step (as a wave does)
    prev = dumps.sync({"t0-1"} | {s.id for s in new})
    assert prev["t0-1"]["expanded"] is True and all(prev[s.id] is None for s in new)
    for i, raw in enumerate(expected, start=1):
        assert isinstance(st.steps[i], SettledStep) and idx.by_id[st.steps[i].id] is st.steps[i], \
            "a new Queued step is no model once synced"
        assert dumps.dumps[i] is st.steps[i].json and dumps.dumps[i] == raw, "no dict beside it: the JSON, shared"
    assert dumps.dumps[0] is st.steps[0].json and json.loads(st.steps[0].json)["expanded"] is False
    assert not changed_since_settled(st.steps[0]), "settled again with its new JSON (its old JSON dropped)"

    store = open_store(f"file://{tmp_path}")
    journal = LineageJournal("abc")
    journal.snapshot_bytes = 1 << 20  # not due: a journal entry
    journal.write_entry(store, dumps, {"phase": "Running"})
    entry = json.loads(store.get_bytes("runs/abc/lineage-journal-00000001.json"))
    assert entry["steps"] == [[i, json.loads(dumps.dumps[i])] for i in range(4)]
    assert entry["steps"][1][1] == new[0].model_dump(mode="json", exclude_none=True)


def test_a_planner_told_to_makes_new_steps_settled_that_dump_as_their_models():
    from datetime import datetime, timezone

    from searchrun.api import SearchRunSpec
    from searchrun.engine.planner import Planner

    spec = SearchRunSpec(query="q")
    made = {}
    for compact in (False, True):
        st = SearchRunStatus(steps=[_traverse()])
        p = Planner(spec, st, datetime(2026, 12, 2, tzinfo=timezone.utc), "abc")
        p.idx.compact_new = dump_json if compact else None
        s = p.add_step("t0-1-0", "traverse_node", ["t0-1"], depth=3, doc="e0")
        s.via, s.why = "cites", "because"  # as Planner.spawn writes a new child
        p.commit_allowance(s, 500)
        q = p.add_step("t0-1-1", "traverse_node", ["t0-1"], depth=3, doc="e1")
        q.message = "skipped: token budget spent"  # a field not kept: thawed
        assert p.idx.by_id["t0-1-0"] is s and st.steps[1] is s
        made[compact] = (s, q)
    (s, q), (v, w) = made[False], made[True]
    assert isinstance(v, SettledStep) and v.thawed is None and not isinstance(s, SettledStep)
    assert isinstance(w, SettledStep) and w.thawed is not None
    for a, b in ((s, v), (q, w)):
        assert dump_json(b.model_dump(mode="json", exclude_none=True)) == _raw(a), "the same bytes as its model's"
