"""Load: 50 SearchRuns created at once in 5 namespaces. All finish; sampled every second
throughout, no run has more unfinished Jobs than its maxParallel, more Jobs than its maxSteps,
or spent more than its budgets; the operator's memory is reported."""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from searchrun.api import GROUP, PLURAL, VERSION
from searchrun.executors.kube.jobs import JOB_SELECTOR, job_state
from support.reliability import DEFAULT_CONFIG, delete_namespace, figure, make_namespace, running_operator
from support.runs import EXAMPLES, manifest

# It loads the whole cluster (about 230 step pods at once): it runs alone on it, last.
pytestmark = [pytest.mark.cluster, pytest.mark.s3, pytest.mark.slow, pytest.mark.cluster_exclusive]

NAMESPACES = 5
SIMPLE_PER_NS = 8
DEEP_PER_NS = 2
CAP_PARALLEL = 3  # the operator's cap: maxParallel above it is clamped at admission

LOAD_CONFIG = {**DEFAULT_CONFIG, "policy": {**DEFAULT_CONFIG["policy"],
                                            "caps": {**DEFAULT_CONFIG["policy"]["caps"], "maxParallel": CAP_PARALLEL}},
               "resyncSeconds": 10}


@pytest.fixture(scope="module")
def load_operator(cluster, rel_s3, tmp_path_factory):
    with running_operator(cluster, rel_s3, tmp_path_factory.mktemp("operator-load"), LOAD_CONFIG) as op:
        yield op


def run_docs(ns_index: int) -> list[dict]:
    docs = []
    for i in range(SIMPLE_PER_NS):
        d = manifest(EXAMPLES / "searchrun-simple.yaml", budget__maxParallel=1 + i % 2)
        d["metadata"]["name"] = f"simple-{i}"
        docs.append(d)
    for i in range(DEEP_PER_NS):
        # one of them asks for more parallel Jobs than the cluster allows: clamped to CAP_PARALLEL
        d = manifest(EXAMPLES / "searchrun.yaml", budget__maxAgents=2 + i % 2, budget__maxFanoutPerNode=1,
                     budget__maxSteps=8, budget__maxTokens=20000, budget__maxCostUSD=0.05,
                     budget__maxParallel=[2, 8][i])
        d["metadata"]["name"] = f"deep-{i}"
        docs.append(d)
    return docs


class Sampler(threading.Thread):
    """Every ~1 s: every step Job and every SearchRun of the test, checked against the run's
    budgets; and the operator's RSS."""

    def __init__(self, cluster, namespaces: list[str], op):
        super().__init__(daemon=True, name="load-sampler")
        from kubernetes import client

        api = cluster.api_client()
        self.batch, self.custom = client.BatchV1Api(api), client.CustomObjectsApi(api)
        self.namespaces, self.op = set(namespaces), op
        self.stop_event = threading.Event()
        self.samples = 0
        self.violations: list[str] = []
        self.peak_rss_kib = 0
        self.rss_kib: list[int] = []
        self.peak_active_total = 0
        self.peak_active_per_run: dict[str, int] = {}
        self.errors = 0

    def run(self) -> None:
        while not self.stop_event.is_set():
            t = time.monotonic()
            try:
                self.sample()
            except Exception:  # a slow API call: try again next second
                self.errors += 1
            self.stop_event.wait(max(0.0, 1.0 - (time.monotonic() - t)))

    def sample(self) -> None:
        rss = self.op.rss_kib()
        self.rss_kib.append(rss)
        self.peak_rss_kib = max(self.peak_rss_kib, rss)
        jobs = json.loads(self.batch.list_job_for_all_namespaces(label_selector=JOB_SELECTOR, _preload_content=False).data)["items"]
        runs = json.loads(self.custom.list_cluster_custom_object(GROUP, VERSION, PLURAL, _preload_content=False).data)["items"]
        by_run: dict[str, list[dict]] = {}
        for j in jobs:
            if j["metadata"]["namespace"] in self.namespaces:
                by_run.setdefault(j["metadata"]["labels"]["searchrun.dev/run-uid"], []).append(j)
        active_total = 0
        for r in runs:
            if r["metadata"]["namespace"] not in self.namespaces:
                continue
            name = f"{r['metadata']['namespace']}/{r['metadata']['name']}"
            b, st = r["spec"]["budget"], r.get("status") or {}
            rjobs = by_run.get(r["metadata"]["uid"], [])
            active = sum(1 for j in rjobs if job_state(j) == "running")
            active_total += active
            self.peak_active_per_run[name] = max(self.peak_active_per_run.get(name, 0), active)
            checks = [
                (active <= b["maxParallel"], f"{active} unfinished Jobs > maxParallel {b['maxParallel']}"),
                (len(rjobs) <= b["maxSteps"], f"{len(rjobs)} Jobs > maxSteps {b['maxSteps']}"),
                (b["maxParallel"] <= CAP_PARALLEL, f"maxParallel {b['maxParallel']} over the cluster cap"),
                (st.get("tokens", 0) <= b["maxTokens"], f"tokens {st.get('tokens')} > {b['maxTokens']}"),
                (st.get("costUSD", 0) <= b["maxCostUSD"], f"cost {st.get('costUSD')} > {b['maxCostUSD']}"),
                (st.get("maxDepthReached", 0) <= b["maxDepth"], f"depth {st.get('maxDepthReached')} > {b['maxDepth']}"),
                ((st.get("budgetUsed") or {}).get("steps", 0) <= b["maxSteps"], "budgetUsed.steps > maxSteps"),
                (sum(1 for s in st.get("steps", []) if s["type"] == "traverse_node" and s["depth"] == 1) <= b["maxAgents"],
                 "more seeds than maxAgents"),
            ]
            self.violations += [f"{name}: {why}" for ok, why in checks if not ok]
        self.peak_active_total = max(self.peak_active_total, active_total)
        self.samples += 1


def test_50_runs_at_once_in_5_namespaces_keep_their_budgets(cluster_to_itself, load_operator, rel_s3):
    cluster = cluster_to_itself
    op = load_operator
    namespaces = [make_namespace(cluster, rel_s3) for _ in range(NAMESPACES)]
    try:
        rss_idle = op.rss_kib()
        sampler = Sampler(cluster, namespaces, op)
        sampler.start()
        t0 = time.monotonic()

        def create(ns_docs):
            ns, docs = ns_docs
            cluster.kubectl("-n", ns, "create", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": docs}))

        with ThreadPoolExecutor(NAMESPACES) as pool:  # all at once
            list(pool.map(create, [(ns, run_docs(i)) for i, ns in enumerate(namespaces)]))
        t_created = time.monotonic() - t0
        total = NAMESPACES * (SIMPLE_PER_NS + DEEP_PER_NS)
        deadline = time.monotonic() + 900
        while True:
            runs = [r for r in cluster.kubectl_json("get", "searchruns", "-A")["items"] if r["metadata"]["namespace"] in namespaces]
            done = [r for r in runs if (r.get("status") or {}).get("phase") in ("Succeeded", "Failed")]
            if len(done) == total:
                break
            assert time.monotonic() < deadline, f"{len(done)}/{total} runs finished in 900 s\n{op.log_tail()}"
            assert op.proc.poll() is None, f"the operator died: {op.log_tail()}"
            time.sleep(2)
        elapsed = time.monotonic() - t0
        time.sleep(1.5)  # one more sample of the finished state
        sampler.stop_event.set()
        sampler.join(10)

        jobs = cluster.kubectl_json("get", "jobs", "-A", "-l", JOB_SELECTOR)["items"]
        jobs = [j for j in jobs if j["metadata"]["namespace"] in namespaces]
        steps = sum(len([s for s in r["status"]["steps"] if s["phase"] != "Skipped"]) for r in runs)
        rss = sorted(sampler.rss_kib)
        figure("load: 50 runs created in (s)", round(t_created, 1))
        figure("load: all 50 finished after (s)", round(elapsed, 1))
        figure("load: step Jobs", len(jobs))
        retried = [(r["metadata"]["name"], s["id"], s.get("message", "")) for r in runs for s in r["status"]["steps"]
                   if (s.get("attempts") or 0) > 1]
        figure("load: steps with more than one attempt", retried or "none")
        figure("load: samples (about 1/s)", f"{sampler.samples} ({sampler.errors} failed)")
        figure("load: peak unfinished Jobs at once, all runs", sampler.peak_active_total)
        figure("load: operator RSS idle / median / peak (MiB)",
               f"{rss_idle / 1024:.0f} / {rss[len(rss) // 2] / 1024:.0f} / {sampler.peak_rss_kib / 1024:.0f}")
        figure("load: operator CPU seconds", round(op.cpu_seconds(), 1))

        assert sampler.samples >= 10, "sampled throughout"
        assert not sampler.violations, sampler.violations[:20]
        assert all(r["status"]["phase"] == "Succeeded" for r in runs), \
            [(r["metadata"]["name"], r["status"].get("message")) for r in runs if r["status"]["phase"] != "Succeeded"]
        assert len(jobs) == steps, "one Job per step"
        assert len({j["metadata"]["name"] for j in jobs}) == len(jobs)
        clamped = [r for r in runs if r["metadata"]["name"] == "deep-1"]
        assert {r["spec"]["budget"]["maxParallel"] for r in clamped} == {CAP_PARALLEL}, "clamped at admission"
        assert max(sampler.peak_active_per_run.values()) <= CAP_PARALLEL
    finally:
        for ns in namespaces:
            delete_namespace(cluster, ns)
