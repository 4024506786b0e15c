"""The Job cache wakes a run only for Job events the run acts on (no API server needed)."""

from searchrun.executors.kube.jobwatch import JobCache


def _job(rv, conditions=(), failed=None, active=None, name="sr-abc-t0", uid="run-1"):
    status = {"conditions": [{"type": t, "status": "True"} for t in conditions]}
    if failed is not None:
        status["failed"] = failed
    if active is not None:
        status["active"] = active
    return {"metadata": {"name": name, "namespace": "ns", "resourceVersion": str(rv),
                         "labels": {"searchrun.dev/run-uid": uid, "searchrun.dev/step-id": "t0"}}, "status": status}


def test_only_news_wakes_the_run():
    woken = []
    cache = JobCache(None, ["ns"], woken.append)
    cache.put(_job(1))                                       # the create's response
    assert cache._apply("ADDED", _job(1)) is None            # the watch's echo of our create
    assert cache._apply("MODIFIED", _job(2, active=1)) is None   # pod created, ready ...
    assert cache._apply("MODIFIED", _job(3, active=1, failed=1)) == "run-1"  # a pod retry: attempts
    assert cache._apply("MODIFIED", _job(4, ["SuccessCriteriaMet"], failed=1)) == "run-1"  # finished
    assert cache._apply("MODIFIED", _job(5, ["SuccessCriteriaMet", "Complete"], failed=1)) is None
    assert cache._apply("MODIFIED", _job(4, [], failed=1)) is None  # older than what we hold
    assert cache.job("run-1", "sr-abc-t0")["metadata"]["resourceVersion"] == "5"
    big = dict(_job(7, name="sr-abc-t2"), spec={"template": {"spec": {"containers": [{"env": [{"value": "x" * 4000}]}]}}})
    big["metadata"]["managedFields"] = [{"manager": "kube-controller-manager"}]
    cache._apply("ADDED", big)
    assert set(cache.job("run-1", "sr-abc-t2")) == {"metadata", "status"}, "only what the operator reads is kept"
    assert "managedFields" not in cache.job("run-1", "sr-abc-t2")["metadata"]
    assert cache._apply("ADDED", _job(1, name="sr-abc-t1")) == "run-1"  # a Job we did not create (a restart)
    assert cache._apply("DELETED", _job(6)) == "run-1"
    assert cache.job("run-1", "sr-abc-t0") is None and len(cache.jobs("run-1")) == 2
    assert cache._apply("ADDED", {"metadata": {"name": "x", "labels": {}}}) is None
    assert woken == []  # _apply decides; the watch loop wakes


class _Kube:
    """Stands in for KubeClient's Job verbs: a list, then a watch that sends ``events`` and ends."""

    def __init__(self, listed, events):
        self.listed, self.events = listed, events
        self.calls = []
        self.stop = lambda: None  # the cache's stop(), once there is a cache

    def list_jobs(self, ns, label_selector):
        self.calls.append(("list", ns, label_selector))
        return self.listed, "10"

    def watch_jobs(self, ns, label_selector, resource_version):
        self.calls.append(("watch", ns, label_selector, resource_version))
        yield from self.events
        self.stop()


def test_the_watch_lists_then_watches_through_the_injected_client():
    """A relist drops the Jobs that are gone (waking their run); the watch goes on from the list's version."""
    from searchrun.executors.kube.jobs import JOB_SELECTOR

    woken = []
    kube = _Kube([_job(1)], [{"type": "BOOKMARK", "object": {}}, {"type": "MODIFIED", "object": _job(2, ["Complete"])}])
    cache = JobCache(kube, ["ns"], woken.append)
    kube.stop = cache.stop
    cache.put(_job(1, name="sr-abc-gone", uid="run-2"))
    cache._run("ns")
    assert kube.calls == [("list", "ns", JOB_SELECTOR), ("watch", "ns", JOB_SELECTOR, "10")]
    assert cache.synced.is_set()
    assert cache.jobs("run-2") == [] and sorted(woken) == ["run-1", "run-1", "run-2"]
    assert cache.job("run-1", "sr-abc-t0")["metadata"]["resourceVersion"] == "2"


def test_an_indexed_jobs_finished_index_wakes_the_run():
    """PerFanout: one Job holds many steps; each index that completes or fails is news."""
    cache = JobCache(kube=None, namespaces=["ns"], on_change=lambda uid: None)
    job = _job(1, active=3)
    cache.put(job)
    assert cache._apply("MODIFIED", _job(2, active=3)) is None
    done = _job(3, active=2)
    done["status"]["completedIndexes"] = "1"
    assert cache._apply("MODIFIED", done) == "run-1"
    failed = _job(4, active=1)
    failed["status"].update(completedIndexes="1", failedIndexes="0")
    assert cache._apply("MODIFIED", failed) == "run-1"


def test_a_finished_job_is_held_with_only_what_is_read():
    """A finished Job as the API server shows it: the conditions not in force, probe times and pod
    bookkeeping are dropped; what jobs.py, queue_metrics and run_metrics read is kept."""
    from searchrun.executors.kube.jobs import job_state, observe_job
    from searchrun.executors.kube.run_metrics import job_duration

    t0, t1 = "2026-12-02T10:00:00Z", "2026-12-02T10:00:07Z"
    cond = {"status": "True", "lastProbeTime": t1, "lastTransitionTime": t1, "reason": "CompletionsReached",
            "message": "Reached expected number of succeeded pods"}
    job = _job(3, failed=1)
    job["status"] = {"startTime": t0, "succeeded": 1, "failed": 1, "ready": 0, "terminating": 0,
                     "uncountedTerminatedPods": {}, "completedIndexes": "0",
                     "conditions": [dict(cond, type="SuccessCriteriaMet"), dict(cond, type="Complete"),
                                    {"type": "Suspended", "status": "False", "lastProbeTime": t0}]}
    cache = JobCache(None, ["ns"], lambda uid: None)
    cache._apply("ADDED", job)
    held = cache.job("run-1", "sr-abc-t0")
    assert held["status"] == {"startTime": t0, "succeeded": 1, "failed": 1, "ready": 0, "completedIndexes": "0",
                              "conditions": [{k: v for k, v in dict(cond, type=t).items() if k != "lastProbeTime"}
                                             for t in ("SuccessCriteriaMet", "Complete")]}
    assert job_state(held) == job_state(job) == "succeeded"
    assert observe_job(held, {"tokens": 1}) == observe_job(job, {"tokens": 1})
    assert job_duration(held) == job_duration(job) == 7.0


def test_a_finished_job_whose_step_was_applied_is_held_no_more():
    from searchrun.engine import Observation
    from searchrun.executors.kube.jobwatch import drop_applied

    cache = JobCache(None, ["ns"], lambda uid: None)
    cache.put(_job(1))
    cache.put(_job(1, name="sr-abc-t1"))
    cache._apply("MODIFIED", _job(2, ["Complete"]))
    group = _job(3, ["Complete"], name="sr-abc-g1")
    del group["metadata"]["labels"]["searchrun.dev/step-id"]  # a PerFanout group Job: no step label
    cache.put(group)
    jobs = {"t0": cache.job("run-1", "sr-abc-t0"), "t1": cache.job("run-1", "sr-abc-t1"),
            "t2": cache.job("run-1", "sr-abc-g1")}
    obs = {"t0": Observation("t0", 1, "succeeded"), "t1": Observation("t1", 1, "running"),
           "t2": Observation("t2", 1, "succeeded")}
    drop_applied(cache, "run-1", obs, jobs, running=("t1",))
    assert cache.job("run-1", "sr-abc-t0") is None, "finished and applied: not held"
    assert cache.job("run-1", "sr-abc-t1") is not None, "its step still runs"
    assert cache.job("run-1", "sr-abc-g1") is not None, "a group Job holds other steps: kept until the run goes"
    cache.applied("run-1", ["sr-abc-t1"])
    assert cache.job("run-1", "sr-abc-t1") is not None, "a Job still running is kept"
    assert cache._apply("MODIFIED", _job(4, ["Complete"])) is None, "a later version of it does not wake the run"
    assert cache.job("run-1", "sr-abc-t0") is None, "nor is it taken back (the watch, a relist)"
    assert cache._apply("DELETED", _job(5, ["Complete"])) == "run-1"
    assert cache._apply("ADDED", _job(6)) == "run-1" and cache.job("run-1", "sr-abc-t0") is not None, \
        "a Job of that name created again (after its deletion) is held"
    cache.forget("run-1")
    assert cache.jobs("run-1") == [] and cache._applied == {}
