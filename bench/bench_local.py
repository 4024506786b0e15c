"""Engine and local-runner benchmarks (issue 2). Prints a table; not a test.

    .venv/bin/python bench/bench_local.py [--steps 10000] [--docs 5000]

1. Engine: plan a synthetic run of N steps (no processes, a simulated clock).
2. Local runner: a deep run of 100+ steps over a generated corpus of 5,000
   documents; per-step overhead = a step process's wall time minus the compute
   the step itself reports (interpreter start, imports, spawn, collection).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))  # the synthetic engine driver is a test helper

from searchrun.api import SearchRun, SearchRunSpec  # noqa: E402
from support.simulation import SyntheticGraph, graph_outcome, simulate  # noqa: E402

WORDS = ("quantum learning graph search index ranking kernel circuit qubit model data training inference "
         "retrieval document query vector embedding cluster scheduler latency budget agent node edge depth "
         "tensor gradient optimizer network storage replica consensus protocol cache shard token cost").split()


def bench_engine(steps: int) -> dict:
    spec = SearchRunSpec(query="q", budget=dict(maxAgents=10, maxDepth=5, maxFanoutPerNode=10, maxSteps=steps,
                                                maxParallel=50, maxTokens=100_000_000, maxCostUSD=10000, deadlineSeconds=86400))
    graph = SyntheticGraph(n_docs=max(10 * steps, 1000), branching=20)
    times = []
    for _ in range(5):
        t = time.perf_counter()
        r = simulate(spec, graph_outcome(graph))
        times.append(time.perf_counter() - t)
    assert r.status.budgetUsed.steps == steps, r.status.budgetUsed
    return {"steps": steps, "rounds": r.rounds, "best_s": min(times), "median_s": statistics.median(times)}


def make_corpus(n: int, seed: int = 7) -> dict:
    rnd = random.Random(seed)
    docs = {}
    for i in range(n):
        words = [rnd.choice(WORDS) for _ in range(rnd.randint(60, 160))]
        links = rnd.sample(range(n), 6)
        docs[f"doc-{i}"] = {"id": f"doc-{i}", "title": " ".join(words[:4]), "content": " ".join(words),
                            "type": "article", "relationships": {"related": [f"doc-{j}" for j in links if j != i]}}
    return {"documents": docs}


def bench_local(docs: int) -> dict:
    from searchrun.executors.local import LocalExecutor

    tmp = Path(tempfile.mkdtemp(prefix="searchrun-bench-"))
    corpus = tmp / "corpus.json"
    corpus.write_text(json.dumps(make_corpus(docs)))
    run = SearchRun.model_validate({
        "metadata": {"name": "bench"},
        "spec": {"query": "how do quantum kernel models relate to graph retrieval and ranking latency",
                 "corpus": {"uri": str(corpus)},
                 "agent": {"relevanceThreshold": 0.2},
                 "budget": {"maxAgents": 6, "maxDepth": 4, "maxFanoutPerNode": 3, "maxSteps": 130, "maxParallel": 2,
                            "maxTokens": 10_000_000, "deadlineSeconds": 3600}},
    })
    ex = LocalExecutor(run, f"file://{tmp / 'store'}", f"file://{corpus}")
    res = ex.execute()
    compute = {}
    for s in res.status["steps"]:
        if s.get("phase") != "Succeeded":
            continue
        key = f"runs/{res.run_uid}/steps/{s['id']}/a{s['attempts']}/result.json"
        compute[f"{s['id']}#{s['attempts']}"] = json.loads((tmp / "store" / key).read_text())["seconds"]
    overheads = [res.step_seconds[k] - c for k, c in compute.items() if k in res.step_seconds]
    walls = [res.step_seconds[k] for k in compute if k in res.step_seconds]
    return {"docs": docs, "steps": len(compute), "phase": res.phase, "wall_s": res.wall_seconds,
            "step_wall_median_s": statistics.median(walls), "step_compute_median_s": statistics.median(compute.values()),
            "overhead_median_s": statistics.median(overheads), "overhead_p90_s": sorted(overheads)[int(0.9 * len(overheads))]}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=10000)
    ap.add_argument("--docs", type=int, default=5000)
    args = ap.parse_args()
    e = bench_engine(args.steps)
    print(f"engine: planned {e['steps']} steps in {e['rounds']} rounds: best {e['best_s']*1000:.0f} ms, median {e['median_s']*1000:.0f} ms (5 runs)")
    lr = bench_local(args.docs)
    print(f"local runner: {lr['steps']} steps over {lr['docs']} documents, {lr['phase']}, wall {lr['wall_s']:.1f} s (maxParallel 2)")
    print(f"  per step: wall median {lr['step_wall_median_s']*1000:.0f} ms, own compute median {lr['step_compute_median_s']*1000:.0f} ms")
    print(f"  per-step overhead (wall - compute): median {lr['overhead_median_s']*1000:.0f} ms, p90 {lr['overhead_p90_s']*1000:.0f} ms")
    print(f"machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
