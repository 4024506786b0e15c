"""What reproducible runs cost in wall time: traversals expanded in waves (a depth's steps
together, in step-id order) against expanding each step as soon as it finishes.

A discrete-event simulation of the engine (no processes): step durations are drawn from a
log-normal distribution (median ``--median`` s, spread ``--sigma``), a step starts as soon as
the engine decides it, at most maxParallel at once. Prints the makespan of both modes, and
whether the lineage is the same from one duration draw to the next. Not a test.

    .venv/bin/python bench/bench_waves.py [--runs 20] [--median 1.0] [--sigma 0.6]
"""

from __future__ import annotations

import argparse
import heapq
import random
import statistics
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from searchrun.api import SearchRunSpec  # noqa: E402
from searchrun.engine import planner, reconcile  # noqa: E402
from support.simulation import SyntheticGraph, graph_outcome  # noqa: E402

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


def run(spec: SearchRunSpec, graph: SyntheticGraph, durations: random.Random, median: float, sigma: float):
    """(makespan in simulated seconds, lineage shape)."""
    outcome = graph_outcome(graph)
    now, status, pending, events = 0.0, None, [], {}
    d = reconcile(spec, status, {}, T0, "u")
    while True:
        for a in d.start:
            heapq.heappush(pending, (now + durations.lognormvariate(0, sigma) * median, a.step_id, a))
        if d.done:
            shape = [(s.id, s.doc, tuple(s.parents), s.found) for s in d.status.steps]
            return now, shape
        if not pending:
            raise RuntimeError("nothing running and not done")
        t, sid, a = heapq.heappop(pending)
        now = t
        obs = {sid: outcome(a)}
        while pending and pending[0][0] <= now:  # everything that finished at the same time
            _, sid2, a2 = heapq.heappop(pending)
            obs[sid2] = outcome(a2)
        d = reconcile(spec, d.status, obs, T0 + timedelta(seconds=now), "u")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--median", type=float, default=1.0, help="median step duration, seconds")
    ap.add_argument("--sigma", type=float, default=0.6, help="log-normal spread of step durations")
    args = ap.parse_args()
    shapes = [("default budgets", dict()),
              ("wide: 5 agents, fan-out 3, depth 3, 4 parallel", dict(maxAgents=5, maxFanoutPerNode=3, maxDepth=3, maxSteps=200)),
              ("deep: 3 agents, fan-out 2, depth 5, 8 parallel", dict(maxAgents=3, maxFanoutPerNode=2, maxDepth=5, maxSteps=200,
                                                                     maxParallel=8))]
    print(f"step durations: log-normal, median {args.median:g} s, sigma {args.sigma:g}; {args.runs} draws per row\n")
    print("| shape | waves: makespan p50 (s) | eager: makespan p50 (s) | waves cost | lineages identical across draws: waves / eager |")
    print("|---|---|---|---|---|")
    for name, budget in shapes:
        spec = SearchRunSpec(query="q", budget=budget)
        graph = SyntheticGraph(2000, branching=6, answer_rate=0.3, seed=7)
        result = {}
        for waves in (True, False):
            planner.WAVES = waves
            spans, lineages = [], set()
            for i in range(args.runs):
                span, shape = run(spec, graph, random.Random(i), args.median, args.sigma)
                spans.append(span)
                lineages.add(tuple(shape))
            result[waves] = (statistics.median(spans), len(lineages) == 1)
        planner.WAVES = True
        (w, w_same), (e, e_same) = result[True], result[False]
        print(f"| {name} | {w:.2f} | {e:.2f} | {100 * (w - e) / e:+.0f}% | {'yes' if w_same else 'no'} / {'yes' if e_same else 'no'} |")


if __name__ == "__main__":
    main()
