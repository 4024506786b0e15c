"""Resume time of a cluster retry (issue 12): a 1,000-step run whose step Jobs fail from the
500th on, then `retry`: the time from the operator taking the token to the first new Job, and to
the end of the resumed run. Prints figures; not a test.

    .venv/bin/python bench/bench_retry.py [--steps 1000] [--fail-at 500] [--store file|s3]

The operator's reconciler runs in this process against an in-process stand-in of the API server
and the Job controller (tests/support/fake_kube.py: a Job finishes at once), with a real store (a
folder, or moto's S3 server over HTTP with --store s3). So the figure is the operator's own cost
of a resume (reading the previous epoch's lineage, planning again, answering the kept steps from
their commits, pass after pass), without the API server's latency per status patch or the time a
real Job takes to start.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from searchrun.artifacts import open_store  # noqa: E402
from searchrun.executors.kube import resumes  # noqa: E402
from searchrun.executors.kube.config import OperatorConfig  # noqa: E402
from searchrun.executors.kube.events import EventSink  # noqa: E402
from searchrun.executors.kube.jobs import job_name  # noqa: E402
from searchrun.executors.kube.reconciler import RunReconciler  # noqa: E402
from support.fake_kube import FakeKube, searchrun_object  # noqa: E402
from support.simulation import SyntheticGraph  # noqa: E402

UID = "5d1e7a2b-3c4d-4e5f-8a9b-0c1d2e3f4a5b"


class Timed(FakeKube):
    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.created_at: dict[str, float] = {}

    def create_job(self, ns, body):
        self.created_at.setdefault(body["metadata"]["name"], time.perf_counter())
        return super().create_job(ns, body)


def drive(r, limit: int = 100000) -> tuple[object, int]:
    for n in range(1, limit):
        d = r.reconcile_once()
        if d.done:
            return d, n
    raise RuntimeError("the run did not finish")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--fail-at", type=int, default=500, help="Jobs from this one on fail")
    ap.add_argument("--parallel", type=int, default=20)
    ap.add_argument("--store", choices=("file", "s3"), default="file")
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="bench-retry-"))
    s3 = None
    if args.store == "s3":
        from support.s3server import S3Server, free_port

        s3 = S3Server("127.0.0.1", free_port("127.0.0.1"), tmp / "moto.log")
        s3.start()
        s3.client().create_bucket(Bucket="bench")
        import os

        os.environ.update(s3.env())
        uri = "s3://bench/runs"
    else:
        uri = f"file://{tmp}"
    try:
        graph = SyntheticGraph(20000, branching=10, answer_rate=0.2, seed=1)
        spec = {"query": "q", "artifacts": {"uri": uri}, "steps": {"retries": 0},
                "budget": {"maxAgents": 10, "maxDepth": 5, "maxFanoutPerNode": 5, "maxSteps": args.steps,
                           "maxParallel": args.parallel, "maxTokens": 100_000_000, "deadlineSeconds": 86400}}
        broken = {"on": True}
        fake = Timed(open_store(uri), searchrun_object(UID, spec),
                     fails=lambda s: broken["on"] and len(fake.created) >= args.fail_at,
                     result=lambda s: _result(graph, s))
        t0 = time.perf_counter()
        d, passes = drive(_load(fake))
        first = time.perf_counter() - t0
        failed = sum(1 for s in d.status.steps if s.phase == "Failed")
        print(f"first run: {len(d.status.steps)} steps, {len(fake.created)} Jobs, {failed} failed, {d.status.phase}, "
              f"{passes} passes, {first:.2f} s")
        broken["on"] = False
        jobs_before = set(fake.created)
        r = _load(fake)
        t_retry = time.perf_counter()
        assert resumes.request(r, "bench1", None) == resumes.RESUMED
        t_planned = time.perf_counter()
        d, passes = drive(r)
        t_end = time.perf_counter()
        new = [n for n in fake.created if n not in jobs_before]
        assert new and all(n.startswith(job_name(f"{UID}-r1", "")) for n in new)
        first_new = min(fake.created_at[n] for n in new)
        kept = sum(1 for s in d.status.steps if s.keptFrom)
        print(f"resume: {kept} steps kept (no Job), {len(new)} new Jobs, {d.status.phase}, {len(d.status.steps)} steps, "
              f"{passes} passes")
        print(f"  retry taken -> resume planned (previous lineage read, fresh status): {1000 * (t_planned - t_retry):.0f} ms")
        print(f"  retry taken -> first new Job: {1000 * (first_new - t_retry):.0f} ms")
        print(f"  retry taken -> resumed run finished: {t_end - t_retry:.2f} s")
    finally:
        if s3 is not None:
            s3.stop()
    return 0


def _load(fake) -> RunReconciler:
    r = RunReconciler(fake, fake, OperatorConfig(), "ns", "run", UID, EventSink())
    assert r.load()
    return r


def _result(graph: SyntheticGraph, step: dict) -> dict:
    t = step["type"]
    if t == "detect_intent":
        return {"intent": "deep"}
    if t == "plan_search":
        return {"seeds": [f"d{i}" for i in range(step["k"])]}
    if t == "traverse_node":
        return {"found": step["doc"] in graph.answers, "next": graph.children[step["doc"]][: 2 * step["k"]]}
    return {"found": True, "answers": 1, "output": "s3://x/out.json"}


if __name__ == "__main__":
    sys.exit(main())
