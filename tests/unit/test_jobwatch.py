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
