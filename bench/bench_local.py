"""Engine and local-runner benchmarks (issues 2 and 13). Prints figures; not a test.

    .venv/bin/python bench/bench_local.py [--steps 10000] [--docs 5000]
    .venv/bin/python bench/bench_local.py --mode local [--local-steps 300] [--isolation both]

1. Engine: plan a synthetic run of N steps (no processes, a simulated clock).
2. Local runner: a deep run of ~300 steps at maxParallel 1 over a generated corpus of
   5,000 documents, for each isolation (fork: warm forked steps; process: a fresh
   interpreter per step); per-step overhead = a step's wall time (launched to observed)
   minus the compute the step itself reports (start, imports, corpus, fork, collection).
3. The example deep run (examples/searchrun.yaml): the executor's wall time.
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


def _overheads(res, store: Path) -> tuple[list[float], list[float], list[float]]:
    """Per succeeded step: its wall (launch to observed), its own compute (``seconds`` in its
    result.json) and the difference, the executor's overhead."""
    compute = {}
    for s in res.status["steps"]:
        if s.get("phase") != "Succeeded":
            continue
        key = f"runs/{res.run_uid}/steps/{s['id']}/a{s['attempts']}/result.json"
        compute[f"{s['id']}#{s['attempts']}"] = json.loads((store / key).read_text())["seconds"]
    keys = [k for k in compute if k in res.step_seconds]
    walls = [res.step_seconds[k] for k in keys]
    comp = [compute[k] for k in keys]
    return walls, comp, [w - c for w, c in zip(walls, comp)]


def _pct(xs: list[float], q: float) -> float:
    return sorted(xs)[min(len(xs) - 1, int(q * len(xs)))]


def bench_local(docs: int, isolation: str, max_steps: int = 130, parallel: int = 2, tmp: Path | None = None) -> dict:
    """A deep run over a generated corpus; ``isolation`` is the executor's (fork or process)."""
    from searchrun.executors.local import LocalExecutor

    tmp = tmp or Path(tempfile.mkdtemp(prefix="searchrun-bench-"))
    corpus = tmp / "corpus.json"
    if not corpus.exists():
        corpus.write_text(json.dumps(make_corpus(docs)))
    run = SearchRun.model_validate({
        "metadata": {"name": "bench"},
        "spec": {"query": "how do quantum kernel models relate to graph retrieval and ranking latency",
                 "corpus": {"uri": str(corpus)},
                 "agent": {"relevanceThreshold": 0.2},
                 "budget": {"maxAgents": 10, "maxDepth": 4, "maxFanoutPerNode": 3, "maxSteps": max_steps,
                            "maxParallel": parallel, "maxTokens": 10_000_000, "maxCostUSD": 1000,
                            "deadlineSeconds": 3600}},
    })
    store = tmp / f"store-{isolation}-{parallel}"
    ex = LocalExecutor(run, f"file://{store}", f"file://{corpus}", isolation=isolation)
    res = ex.execute()
    walls, comp, overheads = _overheads(res, store)
    return {"docs": docs, "steps": len(res.status["steps"]), "phase": res.phase, "wall_s": res.wall_seconds,
            "parallel": parallel, "isolation": isolation, "corpus_loads": res.corpus_loads,
            "workers": len(ex.workers.ready) if ex.workers is not None else 0,
            "step_wall_median_s": statistics.median(walls), "step_compute_median_s": statistics.median(comp),
            "overhead_median_s": statistics.median(overheads), "overhead_p90_s": _pct(overheads, 0.9),
            "run_wall_per_step_s": res.wall_seconds / len(walls)}


def bench_example(isolation: str, repeat: int) -> dict:
    """examples/searchrun.yaml as ``searchrun run`` runs it: the executor's wall time (best and median)."""
    from searchrun.executors.local import LocalExecutor, resolve_corpus_uri
    from searchrun.manifest import load_manifest

    path = REPO / "examples" / "searchrun.yaml"
    walls, steps, forked = [], 0, 0
    for _ in range(repeat):
        run = load_manifest(str(path))
        tmp = Path(tempfile.mkdtemp(prefix="searchrun-bench-example-"))
        ex = LocalExecutor(run, f"file://{tmp}", resolve_corpus_uri(run, path.parent), isolation=isolation)
        res = ex.execute()
        assert res.phase == "Succeeded", res.status.get("message")
        walls.append(res.wall_seconds)
        steps = len(res.status["steps"])
        forked += ex.workers.forked if ex.workers is not None else 0
    return {"isolation": isolation, "steps": steps, "best_s": min(walls), "median_s": statistics.median(walls),
            "forked": forked}


def print_local(lr: dict) -> None:
    loads = (f"corpus loaded {lr['corpus_loads']} time(s) by {lr['workers']} worker(s)" if lr["isolation"] == "fork"
             else "corpus loaded by each step")
    print(f"local runner, --isolation {lr['isolation']}: {lr['steps']} steps over {lr['docs']} documents, {lr['phase']}, "
          f"wall {lr['wall_s']:.1f} s (maxParallel {lr['parallel']}); {loads}")
    print(f"  per step: wall median {lr['step_wall_median_s']*1000:.1f} ms, own compute median "
          f"{lr['step_compute_median_s']*1000:.1f} ms; run wall / steps {lr['run_wall_per_step_s']*1000:.1f} ms")
    print(f"  per-step overhead (wall - compute): median {lr['overhead_median_s']*1000:.1f} ms, "
          f"p90 {lr['overhead_p90_s']*1000:.1f} ms")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mode", choices=("all", "engine", "local"), default="all",
                    help="local: the local runner only (per-step overhead of each isolation, the example's wall)")
    ap.add_argument("--steps", type=int, default=10000, help="engine: steps planned")
    ap.add_argument("--docs", type=int, default=5000, help="local: documents in the generated corpus")
    ap.add_argument("--local-steps", type=int, default=300, help="local: maxSteps of the run at maxParallel 1")
    ap.add_argument("--isolation", choices=("both", "fork", "process"), default="both")
    ap.add_argument("--repeat", type=int, default=5, help="local: runs of the example per isolation")
    args = ap.parse_args()
    if args.mode in ("all", "engine"):
        e = bench_engine(args.steps)
        print(f"engine: planned {e['steps']} steps in {e['rounds']} rounds: best {e['best_s']*1000:.0f} ms, "
              f"median {e['median_s']*1000:.0f} ms (5 runs)")
    if args.mode in ("all", "local"):
        isolations = ("fork", "process") if args.isolation == "both" else (args.isolation,)
        tmp = Path(tempfile.mkdtemp(prefix="searchrun-bench-"))
        for iso in isolations:
            print_local(bench_local(args.docs, iso, max_steps=args.local_steps, parallel=1, tmp=tmp))
        for iso in isolations:
            ex = bench_example(iso, args.repeat)
            print(f"example deep run (examples/searchrun.yaml), --isolation {iso}: {ex['steps']} steps, "
                  f"wall best {ex['best_s']:.2f} s, median {ex['median_s']:.2f} s ({args.repeat} runs"
                  + (f", worker forked from the executor in {ex['forked']})" if iso == "fork" else ")"))
    print(f"machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}, load average "
          f"{os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
