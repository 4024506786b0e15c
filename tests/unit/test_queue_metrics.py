"""The cluster's share of a step (searchrun_step_queue_seconds) and the operator's
(searchrun_step_handoff_seconds), from the Job watch's events: bookkeeping only, no API server."""

from searchrun import metrics
from searchrun.engine import Observation
from searchrun.executors.kube.jobwatch import JobCache
from searchrun.executors.kube.queue_metrics import QueueClock, record_handoff


def _job(rv, conditions=(), name="sr-abc-t0", uid="run-1", **status):
    st = dict(status, conditions=[{"type": t, "status": "True"} for t in conditions])
    return {"metadata": {"name": name, "namespace": "ns", "resourceVersion": str(rv),
                         "labels": {"searchrun.dev/run-uid": uid, "searchrun.dev/step-id": name.rsplit("-", 1)[-1]}},
            "status": st}


class _Clock:
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t


def _cache():
    clock, seen = _Clock(), []
    cache = JobCache(None, ["ns"], lambda uid: None)
    cache.queue = QueueClock(clock, observe=lambda phase, s: seen.append((phase, round(s, 3))))
    return cache, clock, seen


def test_each_phase_is_observed_once_from_the_create_on_the_operators_clock():
    cache, clock, seen = _cache()
    cache.put(_job(1))                                   # created at t=100
    clock.t = 101.5
    cache._apply("MODIFIED", _job(2, active=1))          # the Job controller made its pod
    clock.t = 102.0
    cache._apply("MODIFIED", _job(3, active=1))          # the same news again: nothing
    clock.t = 104.0
    cache._apply("MODIFIED", _job(4, active=1, ready=1))  # the pod runs
    cache._apply("MODIFIED", _job(5, active=1, ready=1))
    clock.t = 110.0
    cache._apply("MODIFIED", _job(6, ["SuccessCriteriaMet"], succeeded=1))
    clock.t = 111.0
    cache._apply("MODIFIED", _job(7, ["SuccessCriteriaMet", "Complete"], succeeded=1))  # finished already
    assert seen == [("pod_created", 1.5), ("pod_running", 4.0), ("complete", 10.0)]
    assert cache.queue._created == {}, "a finished Job is no longer timed"


def test_a_pod_never_seen_ready_has_no_pod_running_and_older_versions_count_for_nothing():
    cache, clock, seen = _cache()
    cache.put(_job(5))
    clock.t = 103.0
    assert cache._apply("MODIFIED", _job(4, active=1)) is None  # older than the create's answer
    cache._apply("MODIFIED", _job(6, ["Complete"], succeeded=1))  # ran within one status batch
    assert seen == [("pod_created", 3.0), ("complete", 3.0)]


def test_jobs_this_process_did_not_create_are_not_timed_and_deletes_and_forget_drop_the_books():
    cache, clock, seen = _cache()
    cache._apply("ADDED", _job(1, name="sr-abc-t1", active=1, ready=1))  # found at a relist (a restart)
    cache._apply("MODIFIED", _job(2, name="sr-abc-t1", conditions=["Complete"]))
    cache.put(_job(1, name="sr-abc-t2"))
    cache._apply("DELETED", _job(2, name="sr-abc-t2"))
    cache.put(_job(1, name="sr-abc-t3", uid="run-2"))
    cache.forget("run-2")
    clock.t = 200.0
    cache._apply("MODIFIED", _job(3, name="sr-abc-t3", uid="run-2", active=1))
    assert seen == []
    assert cache.queue._created == {} and cache.queue._finished == {}


def _count(name, **labels):
    v = metrics.REGISTRY.get_sample_value(name, labels or None)
    return v or 0.0


def test_handoff_runs_from_the_earliest_finished_job_the_pass_applied_to_its_creates():
    cache, clock, _ = _cache()
    for i in range(3):
        cache.put(_job(1, name=f"sr-abc-t{i}"))
    clock.t = 110.0
    cache._apply("MODIFIED", _job(2, name="sr-abc-t0", conditions=["Complete"]))
    clock.t = 110.2
    cache._apply("MODIFIED", _job(2, name="sr-abc-t1", conditions=["Complete"]))
    clock.t = 110.3
    cache._apply("MODIFIED", _job(2, name="sr-abc-t2", conditions=["Complete"]))
    jobs = {f"t{i}": cache.job("run-1", f"sr-abc-t{i}") for i in range(3)}
    obs = {"t0": Observation("t0", 1, "succeeded"), "t1": Observation("t1", 1, "succeeded"),
           "t2": Observation("t2", 1, "running")}  # t2's result is not readable yet: not applied
    n0 = _count("searchrun_step_handoff_seconds_count")
    s0 = _count("searchrun_step_handoff_seconds_sum")
    le0 = _count("searchrun_step_handoff_seconds_bucket", le="0.25")
    le1 = _count("searchrun_step_handoff_seconds_bucket", le="0.5")
    clock.t = 110.4                                   # the pass created 2 Jobs by now
    record_handoff(cache, "run-1", obs, jobs, 2)
    assert _count("searchrun_step_handoff_seconds_count") - n0 == 2
    assert abs(_count("searchrun_step_handoff_seconds_sum") - s0 - 0.8) < 1e-6  # 2 x (110.4 - 110.0)
    assert _count("searchrun_step_handoff_seconds_bucket", le="0.25") == le0
    assert _count("searchrun_step_handoff_seconds_bucket", le="0.5") - le1 == 2
    assert set(cache.queue._finished) == {("run-1", "sr-abc-t2")}, "the applied Jobs are forgotten"
    record_handoff(cache, "run-1", obs, jobs, 2)       # nothing applied is left: no observation
    assert _count("searchrun_step_handoff_seconds_count") - n0 == 2
    obs["t2"] = Observation("t2", 1, "succeeded")
    record_handoff(cache, "run-1", obs, jobs, 0)       # applied, started nothing (a wave waits): no observation
    assert _count("searchrun_step_handoff_seconds_count") - n0 == 2 and cache.queue._finished == {}


def test_the_queue_histogram_is_exported_by_phase():
    from prometheus_client import generate_latest

    clock = _Clock()
    q = QueueClock(clock)
    before = _count("searchrun_step_queue_seconds_count", phase="complete")
    q.created(_job(1))
    clock.t = 130.0
    q.seen(_job(2, conditions=["Failed"], failed=1))
    assert _count("searchrun_step_queue_seconds_count", phase="complete") - before == 1
    text = generate_latest(metrics.REGISTRY).decode()
    for phase in ("pod_created", "pod_running", "complete"):
        assert f'searchrun_step_queue_seconds_bucket{{le="30.0",phase="{phase}"}}' in text


def _group(rv, ended=None, conditions=(), name="sr-abc-g0", **status):
    from searchrun.executors.kube.fanout import A_STEPS

    job = _job(rv, conditions, name=name, **status)
    job["metadata"]["annotations"] = {A_STEPS: "t1:1,t2:1,t3:1"}
    if ended:
        job["status"]["completedIndexes"] = ended
    return job


def test_a_group_jobs_steps_hand_off_from_when_their_index_was_seen_ended():
    """PerFanout: one Job, three steps; each index is timed from the watch event that showed it
    completed, not from the whole Job's end."""
    from searchrun.executors.kube.queue_metrics import index_key

    cache, clock, _ = _cache()
    cache.put(_group(1))
    clock.t = 110.0
    cache._apply("MODIFIED", _group(2, "0", active=2, succeeded=1))
    clock.t = 111.0
    cache._apply("MODIFIED", _group(3, "0-1", active=1, succeeded=2))
    assert cache.queue._finished == {("run-1", index_key("sr-abc-g0", 0)): 110.0,
                                     ("run-1", index_key("sr-abc-g0", 1)): 111.0}
    obs = {"t1": Observation("t1", 1, "succeeded"), "t2": Observation("t2", 1, "succeeded"),
           "t3": Observation("t3", 1, "running")}
    keys = {f"t{i + 1}": index_key("sr-abc-g0", i) for i in range(3)}
    n0, s0 = _count("searchrun_step_handoff_seconds_count"), _count("searchrun_step_handoff_seconds_sum")
    clock.t = 111.5
    record_handoff(cache, "run-1", obs, {}, 4, keys)  # four Jobs' steps started by the pass
    assert _count("searchrun_step_handoff_seconds_count") - n0 == 4
    assert abs(_count("searchrun_step_handoff_seconds_sum") - s0 - 4 * 1.5) < 1e-6
    assert cache.queue._finished == {}, "the applied indexes are forgotten"
    clock.t = 120.0  # the Job is over (its deadline) with index 2 not ended: that step has failed now
    cache._apply("MODIFIED", _group(4, "0-1", ["Failed"], succeeded=2, failed=1))
    assert cache.queue._finished == {("run-1", index_key("sr-abc-g0", 2)): 120.0}, \
        "a group Job's end is noted per index, never as the whole Job"
    assert cache.queue._indexes == {} and cache.queue._created == {}
    cache.forget("run-1")
    assert cache.queue._finished == {}


def test_a_deleted_group_job_drops_its_indexes():
    from searchrun.executors.kube.queue_metrics import index_key

    cache, clock, _ = _cache()
    cache.put(_group(1))
    cache._apply("MODIFIED", _group(2, "1", active=2, succeeded=1))
    assert set(cache.queue._finished) == {("run-1", index_key("sr-abc-g0", 1))}
    cache._apply("DELETED", _group(3, "1", active=2, succeeded=1))
    assert cache.queue._finished == {} and cache.queue._indexes == {} and cache.queue._created == {}
