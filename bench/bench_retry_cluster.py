"""`searchrun retry` on the real API server (issue 12): a 1,000-step run whose step Jobs fail from the
500th on, then a retry; the time from the retry's patch to the first new Job, and to the end of the
resumed run. Prints figures; not a test.

    flock /tmp/searchrun-cluster.lock .venv/bin/python bench/bench_retry_cluster.py [--shape wide|deep]

bench_scale.py's jobs mode: the operator (a process, webhooks on) hands its Jobs to another Job
controller (``spec.managedBy``); this process's driver writes each step's result.json to S3 (moto over
HTTP) and completes the Job, or, from the ``--fail-at``-th Job on, marks it Failed (as a Job whose
pods all failed). No step program runs and no pod is made: what is timed is the operator, the API
server and the store.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))

import bench_scale as bs  # noqa: E402
from searchrun.executors.kube.retry_request import RetryClient  # noqa: E402
from support.operator_process import Operator  # noqa: E402


class FailingDriver(bs.Driver):
    """Completes the first ``fail_at - 1`` Jobs it sees, fails the others while ``failing``."""

    def __init__(self, *a, fail_at: int, **kw):
        super().__init__(*a, **kw)
        self.fail_at, self.failing, self.seen = fail_at, True, 0
        self.count_lock = threading.Lock()

    def _write(self, name: str, job: dict) -> None:
        with self.count_lock:
            self.seen += 1
            fail = self.failing and self.seen >= self.fail_at
        if not fail:
            return super()._write(name, job)
        try:
            self._fail(job)
        except Exception as e:  # noqa: BLE001
            self.errors.append(f"{name}: {type(e).__name__}: {e}")

    def _fail(self, job: dict) -> None:
        from kubernetes import client

        if not hasattr(self.local, "api"):
            self.local.api = client.BatchV1Api(self.cluster.new_api())
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        cond = {"status": "True", "lastProbeTime": now, "lastTransitionTime": now, "reason": "BackoffLimitExceeded",
                "message": "Job has reached the specified backoff limit"}
        self.local.api.patch_namespaced_job_status(
            job["metadata"]["name"], job["metadata"]["namespace"],
            {"status": {"startTime": now, "failed": 1, "conditions": [dict(cond, type="FailureTarget"), dict(cond, type="Failed")]}},
            _content_type="application/merge-patch+json", _preload_content=False)


def wait_phase(custom, ns: str, name: str, timeout: float, want=("Succeeded", "Failed"), token=None) -> dict:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        r = custom.get_namespaced_custom_object("searchrun.dev", "v1alpha1", ns, "searchruns", name)
        st = r.get("status") or {}
        if st.get("phase") in want and (token is None or any(x.get("token") == token for x in st.get("resumes") or [])):
            return r
        time.sleep(0.25)
    raise SystemExit(f"{name} not {want} in {timeout:.0f}s")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shape", choices=("wide", "deep"), default="wide")
    ap.add_argument("--fail-at", type=int, default=500)
    ap.add_argument("--docs", type=int, default=60000)
    ap.add_argument("--timeout", type=float, default=1200)
    args = ap.parse_args()
    bargs = argparse.Namespace(mode="jobs", pod_ms=0, docs=args.docs, operator_config=None, job_ms=0)
    b = bs.Bench(bargs)
    from kubernetes import client

    try:
        b.setup()
        ns = b.namespace("retry")
        doc = bs.searchrun("retry-1000", ns, bs.SHAPES[args.shape])
        opconf = {"resyncSeconds": 30, "stepPodTemplate": bs.POD_TEMPLATE, "policy": bs.BENCH_POLICY,
                  "stepJobManagedBy": bs.MANAGED_BY}
        (b.work / "retry").mkdir()
        op = Operator(b.identity, b.s3, opconf, b.work / "retry", namespaces=ns)
        driver = FailingDriver(b.cluster, b.s3, b.graph, complete_after=0, fail_at=args.fail_at)
        custom = client.CustomObjectsApi(b.cluster.new_api())
        try:
            op.start()
            driver.watch(ns)
            time.sleep(1.0)
            t0 = time.monotonic()
            b.cluster.apply(doc)
            run = wait_phase(custom, ns, "retry-1000", args.timeout)
            first = time.monotonic() - t0
            st = run["status"]
            # (byPhase is a merge-patched map: a phase whose count fell to 0 may stay, with its last count)
            first_summary = st.get("lineageSummary") or {}
            bs.log(f"first run: {st['phase']} in {first:.1f} s, {first_summary.get('steps')} steps "
                   f"{first_summary.get('byPhase')}, {len(driver.jobs)} Jobs")
            run_phase_before = st["phase"]
            driver.failing = False
            jobs_before = set(driver.snapshot())
            api = RetryClient(b.cluster.kubeconfig)
            t_ask = time.monotonic()
            api.ask(ns, "retry-1000", "bench1", {}, run["metadata"]["resourceVersion"])
            first_new = None
            while first_new is None and time.monotonic() - t_ask < args.timeout:
                new = [r["added"] for n, r in driver.snapshot().items() if n not in jobs_before]
                first_new = min(new) if new else None
                time.sleep(0.05)
            run = wait_phase(custom, ns, "retry-1000", args.timeout, token="bench1")
            t_done = time.monotonic()
            st = run["status"]
            new_jobs = [n for n in driver.snapshot() if n not in jobs_before]
            summary = st.get("lineageSummary") or {}
            print(f"# bench_retry_cluster ({args.shape}, Jobs from the {args.fail_at}th fail), Kubernetes {b.cluster.version()}")
            print(f"first run: {run_phase_before}, {first:.1f} s, {len(jobs_before)} Jobs, {first_summary.get('byPhase')}")
            print(f"resumed run: {st['phase']}, {summary.get('steps')} steps {summary.get('byPhase')}, {len(new_jobs)} new Jobs, "
                  f"all '-r1-': {all('-r1-' in n for n in new_jobs)}")
            print(f"retry patch -> first new Job (ADDED, seen by a watch): {first_new - t_ask:.2f} s")
            print(f"retry patch -> resumed run finished: {t_done - t_ask:.1f} s")
            if driver.errors:
                print(f"driver errors: {driver.errors[:3]}")
        finally:
            driver.stop()
            op.stop()
            op.delete_webhook_configurations()
            b.delete_namespace(ns)
    finally:
        b.teardown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
