#!/usr/bin/env python3
"""CPU of one offline traverse step as a step process pays it: a fresh process loads the corpus,
builds the index lazily and judges one document with a path. Prints figures, asserts nothing.

    .venv/bin/python bench/bench_offline_step.py [--runs 7]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys

CHILD = r"""
import json, time
t0 = time.process_time()
from searchrun.corpus import load_corpus
from searchrun.agents.base import Hop, PathContext
from searchrun.agents.offline import OfflineAgent
t1 = time.process_time()
corpus = load_corpus("builtin:sample")
t2 = time.process_time()
agent = OfflineAgent(corpus, 0.35)
q = "How can quantum computing speed up machine learning, and what limits it?"
seed = agent.traverse(q, "quantum-machine-learning-overview", 2, 5000, PathContext())
t3 = time.process_time()
child = seed.next[0]
path = PathContext((Hop("quantum-machine-learning-overview", "x"),), seed.proposals[0].relation, seed.note)
agent.traverse(q, child, 2, 5000, path)
t4 = time.process_time()
print(json.dumps({"import": t1 - t0, "corpus": t2 - t1, "first_step": t3 - t2, "second_step": t4 - t3}))
"""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=7)
    runs = ap.parse_args().runs
    rows = [json.loads(subprocess.run([sys.executable, "-c", CHILD], check=True, capture_output=True, text=True).stdout) for _ in range(runs)]
    print(f"offline traverse step on the sample corpus, CPU ms (median of {runs} fresh processes)")
    for key in ("import", "corpus", "first_step", "second_step"):
        print(f"  {key:12s} {statistics.median(r[key] for r in rows) * 1000:7.1f}")
    print("  first_step = index build + lexicon lookups + judging + ranking children: the agent's CPU per step")


if __name__ == "__main__":
    main()
