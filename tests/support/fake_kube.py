"""An in-process stand-in for what a RunReconciler needs of the API server, the Job controller and
the Job cache: a SearchRun object whose status takes merge patches, Jobs that finish at once (the
step's result.json written as a step would), and a rule for which steps fail. For unit tests and
benchmarks of the operator's own logic (the cluster tests use the real thing)."""

from __future__ import annotations

import threading
from typing import Callable, Optional

from searchrun.artifacts import step_key
from searchrun.steps import STEP_ENV, StepContext


def merge_patch(target, patch):
    if not isinstance(patch, dict):
        return patch
    out = dict(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = merge_patch(out.get(k), v)
    return out


class FakeKube:
    def __init__(self, store, obj: dict, fails: Callable[[dict], bool] = lambda step: False,
                 result: Optional[Callable[[dict], dict]] = None, flaky: Callable[[dict], bool] = lambda step: False):
        self.store, self.obj, self.fails, self.flaky = store, obj, fails, flaky
        self.result = result or default_result
        self.jobs: dict[str, dict] = {}
        self.created: list[str] = []           # Job names, in creation order (a name twice: a duplicate)
        self.synced = threading.Event()
        self.synced.set()
        self.lock = threading.Lock()

    # the Job cache
    def job(self, uid, name):
        return self.jobs.get(name)

    def jobs_of(self, uid):
        return list(self.jobs.values())

    def put(self, job):
        pass

    def on_change(self, uid):
        pass

    # KubeClient
    def get_run(self, ns, name):
        return self.obj

    def patch_run_status(self, ns, name, body):
        self.obj = merge_patch(self.obj, body)

    def job_pods(self, ns, job):
        return []

    def create_job(self, ns, body):
        from kubernetes.client.rest import ApiException

        name = body["metadata"]["name"]
        with self.lock:
            if name in self.jobs:
                raise ApiException(status=409, reason="AlreadyExists")
            self.created.append(name)
        env = {e["name"]: e.get("value") for e in body["spec"]["template"]["spec"]["containers"][0]["env"]}
        ctx = StepContext.from_json(env[STEP_ENV])
        step = ctx.step
        if self.fails(step):
            job = dict(body, status={"conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}],
                                     "failed": 1})
        else:
            self.store.put_json(step_key(ctx.run_uid, step["stepId"], step["attempt"], "result.json"), self.result(step))
            # flaky: its first pod failed, the second succeeded (both commit under the Job's attempt)
            job = dict(body, status={"conditions": [{"type": "Complete", "status": "True"}], "succeeded": 1,
                                     "failed": 1 if self.flaky(step) else 0})
        self.jobs[name] = job
        return job


def default_result(step: dict) -> dict:
    """A deep run on a tree: every document has two children, ``d<path>`` names them."""
    t = step["type"]
    if t == "detect_intent":
        return {"intent": "deep"}
    if t == "plan_search":
        return {"seeds": [f"d{i}" for i in range(step["k"])]}
    if t == "traverse_node":
        return {"found": True, "next": [f"{step['doc']}-{i}" for i in range(2)]}
    return {"found": True, "answers": 1, "output": "s3://x/out.json"}


def searchrun_object(uid: str, spec: dict, name: str = "run", namespace: str = "ns") -> dict:
    return {"metadata": {"uid": uid, "name": name, "namespace": namespace, "annotations": {}}, "spec": spec, "status": {}}
