"""What a pass writes to the API: no status patch for a pass that changed nothing but the clock,
and one Event per reason and pass."""

from searchrun.engine import Event
from searchrun.executors.kube.events import merge_events
from searchrun.executors.kube.reconciler import _same_but_the_clock


def _body(elapsed, phase="Running", steps=3):
    return {"status": {"phase": phase, "budgetUsed": {"steps": steps, "elapsedSeconds": elapsed},
                       "budgetRemaining": {"steps": 10 - steps, "elapsedSeconds": 900 - elapsed}, "steps": [{"id": "detect"}]}}


def test_a_pass_that_changed_only_elapsed_time_is_not_patched():
    assert not _same_but_the_clock(_body(1.0), None)
    assert _same_but_the_clock(_body(2.5), _body(1.0))
    assert not _same_but_the_clock(_body(2.5, steps=4), _body(1.0))
    assert not _same_but_the_clock(_body(2.5, phase="Succeeded"), _body(1.0))
    b = _body(1.0)
    b["status"]["steps"] = [{"id": "detect", "phase": "Succeeded"}]
    assert not _same_but_the_clock(b, _body(1.0))


def test_events_are_merged_per_reason_and_pass():
    evs = [Event("StepSucceeded", "traverse_node t0 succeeded"), Event("FanOut", "fan-out of 2 from t0 at depth 1"),
           Event("StepSucceeded", "traverse_node t1 succeeded"), Event("StepFailed", "t2 failed", "Warning")]
    assert merge_events(evs) == [
        ("Normal", "StepSucceeded", "2 times: traverse_node t0 succeeded; traverse_node t1 succeeded"),
        ("Normal", "FanOut", "fan-out of 2 from t0 at depth 1"),
        ("Warning", "StepFailed", "t2 failed")]
    long = merge_events([Event("StepSucceeded", "x" * 600)] * 3)
    assert len(long) == 1 and len(long[0][2]) == 1000


def test_passes_run_with_the_daemons_context():
    """kopf.event() finds kopf's event queue through a context variable: a pass run in the
    reconcile pool must see the daemon's context (or its Events are silently dropped)."""
    import asyncio
    import contextvars

    from searchrun.executors.kube.handlers import _in_pool

    var = contextvars.ContextVar("var", default="unset")

    async def daemon():
        var.set("the daemon's")
        return await _in_pool(asyncio.get_running_loop(), var.get)

    assert asyncio.run(daemon()) == "the daemon's"


class _FakeKube:
    """Stands in for the operator's KubeClient and Job cache (the API server and the Job controller):
    a created Job succeeds at once and its step's result.json is written first (as
    bench/bench_scale.py's driver does)."""

    def __init__(self, store, graph):
        import threading

        self.store, self.graph = store, graph
        self.jobs: dict[str, dict] = {}
        self.patches: list[tuple[float, dict]] = []
        self.synced = threading.Event()
        self.synced.set()
        self.now = 0.0

    # cache
    def job(self, uid, name):
        return self.jobs.get(name)

    def put(self, job):
        pass

    def on_change(self, uid):
        pass

    # KubeClient
    def create_job(self, ns, body):
        from searchrun.artifacts import step_key
        from searchrun.steps import STEP_ENV, StepContext

        env = {e["name"]: e.get("value") for e in body["spec"]["template"]["spec"]["containers"][0]["env"]}
        ctx = StepContext.from_json(env[STEP_ENV])
        step = ctx.step
        if step["type"] == "detect_intent":
            r = {"intent": "deep"}
        elif step["type"] == "plan_search":
            r = {"seeds": [f"d{i}" for i in range(2 * step["k"])]}
        elif step["type"] == "traverse_node":
            r = {"found": step["doc"] in self.graph.answers, "next": self.graph.children[step["doc"]][: 2 * step["k"]]}
        else:
            r = {"found": True, "answers": 1, "output": "s3://x/report.html"}
        self.store.put_json(step_key(ctx.run_uid, step["stepId"], step["attempt"], "result.json"), r)
        job = dict(body, status={"conditions": [{"type": "Complete", "status": "True"}], "succeeded": 1})
        self.jobs[body["metadata"]["name"]] = job
        return job

    def patch_run_status(self, ns, name, body):
        self.patches.append((self.now, body))


def test_an_offloaded_runs_status_is_patched_at_most_every_status_patch_seconds(tmp_path, monkeypatch):
    """Passes of an offloaded run write the lineage to the store (snapshot + journal) and patch the
    status view at most every STATUS_PATCH_SECONDS; the last patch has the final phase; a restart
    reads the same lineage back."""
    from searchrun.api import SearchRunSpec
    from searchrun.artifacts import open_store, read_uri
    from searchrun.executors.kube import reconciler as rec
    from searchrun.executors.kube.config import OperatorConfig
    from searchrun.executors.kube.events import EventSink
    from searchrun.executors.kube.lineage_store import restore_status
    from support.simulation import SyntheticGraph

    store = open_store(f"file://{tmp_path}")
    fake = _FakeKube(store, SyntheticGraph(3000, branching=10, seed=1))
    monkeypatch.setattr(rec.time, "monotonic", lambda: fake.now)
    spec = SearchRunSpec(query="q", budget=dict(maxAgents=5, maxDepth=4, maxFanoutPerNode=5, maxSteps=300, maxParallel=10,
                                                maxTokens=10_000_000, deadlineSeconds=86400),
                         artifacts={"uri": f"file://{tmp_path}"})
    r = rec.RunReconciler(fake, fake, OperatorConfig(lineageOffloadBytes=16384), "ns", "run", "abc", events=EventSink())
    r.spec, r.store, r.store_uri = spec, store, f"file://{tmp_path}"
    for i in range(2000):
        fake.now = i * 0.1  # a pass every 100 ms
        d = r.reconcile_once()
        if d.done:
            break
    assert d.status.phase == "Succeeded" and len(d.status.steps) == 300
    offloaded = [(t, b) for t, b in fake.patches if b["status"].get("lineageURI")]
    assert offloaded and len(offloaded) < len(fake.patches)
    gaps = [b[0] - a[0] for a, b in zip(offloaded, offloaded[1:-1])]
    assert all(g >= rec.STATUS_PATCH_SECONDS - 1e-9 for g in gaps), gaps
    last = fake.patches[-1][1]["status"]
    assert last["phase"] == "Succeeded" and len(last["steps"]) <= 50
    restored, offloaded_flag = restore_status(last, read_uri)
    assert offloaded_flag and [s.id for s in restored.steps] == [s.id for s in d.status.steps]
    assert restored.phase == "Succeeded"
