"""The operator's memory for one large run, in one process, without a cluster. Prints figures; not a test.

    .venv/bin/python bench/bench_memory.py                     # 10,000 steps (bench_scale's "big" shape)
    .venv/bin/python bench/bench_memory.py --steps 1004 --top 15
    .venv/bin/python bench/bench_memory.py --no-trace --s3     # the store on SeaweedFS, as on a cluster

The real ``RunReconciler`` and ``JobCache`` drive one run through a stand-in of the API server
(as tests/unit/test_reconciler_writes.py's): a created Job is answered as the watch would show it
complete (its status as Kubernetes writes it), its step's result.json (bench_scale's fake results)
is in a file store first. Reports the peak of Python's allocations (tracemalloc) and what is held
at the end of the run, by source line, and the process's peak RSS (VmHWM). ``bench_scale.py``
measures the real operator process against a real API server; this finds where memory goes.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "bench"))

from searchrun.api import SearchRunSpec  # noqa: E402
from searchrun.artifacts import open_store, result_key  # noqa: E402
from searchrun.executors.kube import reconciler as rec  # noqa: E402
from searchrun.executors.kube.config import OperatorConfig  # noqa: E402
from searchrun.executors.kube.events import EventSink  # noqa: E402
from searchrun.executors.kube.jobwatch import JobCache  # noqa: E402
from searchrun.steps import STEP_ENV, StepContext  # noqa: E402
from support.simulation import SyntheticGraph  # noqa: E402

UID = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"


def hwm_mib(field: str = "VmHWM") -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def rss_mib() -> float:
    return hwm_mib("VmRSS")


def malloc_trim() -> None:
    """glibc's free pages back to the system: what RSS falls by is the allocator's high water."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:
        pass


class StandIn:
    """The API server's Job verbs as the reconciler uses them: a created Job is answered, then
    shown complete (through the real JobCache, as the watch would)."""

    def __init__(self, store, graph):
        from bench_scale import fake_result

        self.store, self.graph, self.fake_result = store, graph, fake_result
        self.rv = 0
        self.done: list[dict] = []

    def create_job(self, ns, body):
        env = {e["name"]: e.get("value") for e in body["spec"]["template"]["spec"]["containers"][0]["env"]}
        ctx = StepContext.from_json(env[STEP_ENV])
        r = self.fake_result(ctx.step, self.graph, ctx.store_uri)
        self.store.put_json(result_key(ctx.run_uid, ctx.step["stepId"], int(ctx.step["attempt"])), r.to_dict(), overwrite=True)
        self.rv += 1
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        meta = dict(body["metadata"], uid=f"job-{self.rv}", resourceVersion=str(self.rv), creationTimestamp=now,
                    managedFields=[{"manager": "searchrun", "operation": "Update"}])
        job = dict(body, metadata=meta, status={})
        self.done.append(job)
        return job

    def complete_all(self, cache: JobCache) -> None:
        """What the watch brings: each Job complete, as the Job controller writes it."""
        done, self.done = self.done, []
        for job in done:
            self.rv += 1
            now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            cond = {"status": "True", "lastProbeTime": now, "lastTransitionTime": now, "reason": "CompletionsReached",
                    "message": "Reached expected number of succeeded pods"}
            status = {"startTime": now, "completionTime": now, "succeeded": 1, "ready": 0, "terminating": 0,
                      "uncountedTerminatedPods": {},
                      "conditions": [dict(cond, type="SuccessCriteriaMet"), dict(cond, type="Complete")]}
            cache._apply("MODIFIED", dict(job, metadata=dict(job["metadata"], resourceVersion=str(self.rv)), status=status))

    def patch_run_status(self, ns, name, body):
        """As the real client does: the body sanitised (a copy) and serialised."""
        from kubernetes.client import ApiClient

        if not hasattr(self, "api_client"):
            self.api_client = ApiClient()
        self.patch_bytes = max(getattr(self, "patch_bytes", 0), len(json.dumps(self.api_client.sanitize_for_serialization(body))))

    def job_pods(self, ns, job):
        return []


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=10000, help="maxSteps (bench_scale's big shape: 10,000)")
    ap.add_argument("--parallel", type=int, default=100)
    ap.add_argument("--docs", type=int, default=60000)
    ap.add_argument("--top", type=int, default=12, help="source lines to show, by memory held at the end")
    ap.add_argument("--snapshot-pass", type=int, default=0, help="also show what is held after this pass")
    ap.add_argument("--no-trace", action="store_true", help="no tracemalloc (its own overhead): RSS only")
    ap.add_argument("--rss-log", action="store_true", help="print the passes in which the peak RSS rose (by 1 MiB or more)")
    ap.add_argument("--s3", action="store_true",
                    help="the run's store on a real S3 server (SeaweedFS, started here as the tests start it), as on a cluster")
    ap.add_argument("--s3-joined", action="store_true",
                    help="with --s3: the lineage's parts joined into one buffer per write, as before the S3 store streamed them")
    ap.add_argument("--bare", action="store_true", help="without the operator's own imports (kopf, its handlers)")
    args = ap.parse_args()

    if not args.bare:  # what ``searchrun operator`` imports before its first run (executors/kube/main.py)
        import kopf  # noqa: F401
        from searchrun.executors.kube import handlers, retry_handlers, webhooks  # noqa: F401
    import_base = hwm_mib()
    graph = SyntheticGraph(n_docs=args.docs, branching=20, answer_rate=0.2, seed=7)  # as bench_scale
    work = Path(tempfile.mkdtemp(prefix="searchrun-bench-memory-"))
    store_uri = f"file://{work}"
    s3 = None
    if args.s3:
        import os

        from support.s3server import S3Server, free_port

        s3 = S3Server("127.0.0.1", free_port("127.0.0.1"), work / "s3-server.log")
        s3.start()
        os.environ.update(s3.env())
        s3.client().create_bucket(Bucket="bench-memory")
        store_uri = "s3://bench-memory/runs"
        if args.s3_joined:
            from searchrun.artifacts import ArtifactStore, S3Store

            S3Store.put_parts = ArtifactStore.put_parts
    store = open_store(store_uri)
    spec = SearchRunSpec(query="synthetic fan-out benchmark", corpus={"uri": "builtin:sample"}, agent={"type": "offline"},
                         budget=dict(maxAgents=10, maxDepth=5, maxFanoutPerNode=10, maxSteps=args.steps,
                                     maxParallel=args.parallel, maxTokens=100_000_000, maxCostUSD=10000, deadlineSeconds=86400),
                         steps={"retries": 0, "timeoutSeconds": 3600}, artifacts={"uri": store_uri})
    kube = StandIn(store, graph)
    cache = JobCache(kube, ["ns"], lambda uid: None)
    cache.synced.set()
    gc.collect()
    base = hwm_mib()
    if not args.no_trace:
        tracemalloc.start(8)
    r = rec.RunReconciler(kube, cache, OperatorConfig(), "ns", "big-0", UID, events=EventSink())
    r.spec, r.store, r.store_uri = spec, store, store_uri
    t0 = time.monotonic()
    passes = 0
    per_pass = []  # (peak within the pass, pass, steps, Jobs started)
    last_hwm = hwm_mib()
    while True:
        d = r.reconcile_once()
        passes += 1
        kube.complete_all(cache)
        if args.rss_log and hwm_mib() >= last_hwm + 1:
            print(f"  pass {passes}: {len(d.status.steps)} steps, {len(d.start)} started: peak RSS {last_hwm:.0f} -> "
                  f"{hwm_mib():.0f} MiB (RSS now {rss_mib():.0f})")
            last_hwm = hwm_mib()
        if not args.no_trace:
            per_pass.append((tracemalloc.get_traced_memory()[1], passes, len(d.status.steps), len(d.start)))
            tracemalloc.reset_peak()
            if passes == args.snapshot_pass:
                print(f"held after pass {passes} ({len(d.status.steps)} steps), by line:")
                for st in tracemalloc.take_snapshot().statistics("lineno")[: args.top]:
                    f = st.traceback[0]
                    print(f"  {st.size / 2**20:7.2f} MiB {st.count:8d} blocks  {Path(f.filename).name}:{f.lineno}")
        if d.done:
            break
    wall = time.monotonic() - t0
    peak = held = 0
    snap = None
    if not args.no_trace:
        held = tracemalloc.get_traced_memory()[0]
        peak = max(p for p, *_ in per_pass)
        snap = tracemalloc.take_snapshot()
        tracemalloc.stop()
    print(f"# bench_memory: {len(d.status.steps)} steps, {passes} passes, {wall:.1f} s, phase {d.status.phase}, "
          f"offloaded {r.offloaded}, store {store_uri.split(':')[0]}")
    if s3 is not None:
        s3.stop()
    end_rss = rss_mib()
    held_jobs = sum(len(js) for js in cache._jobs.values())
    del d, r
    gc.collect()
    after_gc = rss_mib()
    malloc_trim()
    after_trim = rss_mib()
    print(f"peak RSS (VmHWM) {hwm_mib():.0f} MiB: imports {import_base:.0f} MiB"
          f"{' (bare)' if args.bare else ' (the operator process: kopf, handlers, webhooks)'}, + the bench's graph "
          f"{base - import_base:.0f} MiB (not the operator's), + the run {hwm_mib() - base:.0f} MiB; "
          f"the operator's estimate {hwm_mib() - (base - import_base):.0f} MiB")
    print(f"RSS at the end {end_rss:.0f} MiB, after the run is dropped and gc {after_gc:.0f} MiB, "
          f"after malloc_trim(0) {after_trim:.0f} MiB; largest status patch {getattr(kube, 'patch_bytes', 0) / 1024:.0f} KiB; "
          f"Jobs held by the Job cache at the end: {held_jobs}")
    if snap is not None:
        print(f"Python allocations: peak {peak / 2**20:.1f} MiB, held at the end {held / 2**20:.1f} MiB")
        print("passes with the highest peak: " + ", ".join(
            f"#{n} {p / 2**20:.0f} MiB ({steps} steps, {started} started)" for p, n, steps, started in sorted(per_pass)[-5:][::-1]))
        print(f"\nheld at the end, by line (top {args.top}):")
        for st in snap.statistics("lineno")[: args.top]:
            f = st.traceback[0]
            print(f"  {st.size / 2**20:7.2f} MiB {st.count:8d} blocks  {Path(f.filename).name}:{f.lineno}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
