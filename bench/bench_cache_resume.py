"""Step cache and resume figures (issue 12). Prints a table; not a test.

    .venv/bin/python bench/bench_cache_resume.py [--steps 130] [--docs 2000]

1. Cache: a deep run over a generated corpus, then the identical run again with the cache on:
   wall time and step processes of each.
2. Resume: the same run with the middle traversal step failing (no retries), then
   ``--resume`` without the failure: time from the resume's start to its first new process, the
   resume's wall time, and how many steps it kept and ran.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))

from bench_local import make_corpus  # noqa: E402
from searchrun.api import SearchRun  # noqa: E402
from searchrun.artifacts import open_store  # noqa: E402
from searchrun.executors.local import LocalExecutor, Progress  # noqa: E402
from searchrun.executors.resume import Replay, prepare  # noqa: E402


class Count(Progress):
    def __init__(self):
        self.started = self.reused = 0
        self.first_start = None

    def step_started(self, action):
        self.started += 1
        self.first_start = self.first_start or time.monotonic()

    def step_reused(self, action, observation):
        self.reused += 1


def _run(spec: dict, store: str, corpus: Path) -> tuple[dict, Count, float]:
    run = SearchRun.model_validate({"metadata": {"name": "bench"}, "spec": spec})
    c = Count()
    t = time.monotonic()
    res = LocalExecutor(run, store, f"file://{corpus}", progress=c).execute()
    return res.__dict__, c, time.monotonic() - t


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=130)
    ap.add_argument("--docs", type=int, default=2000)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="searchrun-bench12-"))
    corpus = tmp / "corpus.json"
    corpus.write_text(json.dumps(make_corpus(args.docs)))
    spec = {"query": "how do quantum kernel models relate to graph retrieval and ranking latency",
            "corpus": {"uri": str(corpus)}, "agent": {"relevanceThreshold": 0.2},
            "budget": {"maxAgents": 6, "maxDepth": 4, "maxFanoutPerNode": 3, "maxSteps": args.steps, "maxParallel": 4,
                       "maxTokens": 10_000_000, "deadlineSeconds": 3600},
            "steps": {"retries": 0}, "cache": {"mode": "ReadWrite"}}
    store = f"file://{tmp / 'store'}"
    first, c1, w1 = _run(spec, store, corpus)
    second, c2, w2 = _run(spec, store, corpus)
    print(f"cache   first run : {len(first['status']['steps'])} steps, {c1.started} processes, {w1:.1f}s")
    print(f"cache   second run: {len(second['status']['steps'])} steps, {c2.started} processes, {c2.reused} cached, {w2:.1f}s")

    trav = [s["id"] for s in first["status"]["steps"] if s["type"] == "traverse_node"]
    mid = trav[len(trav) // 2]
    off = {**spec, "cache": {"mode": "Off"}}
    os.environ["SEARCHRUN_FAIL_STEPS"] = mid
    failed, c3, w3 = _run(off, store, corpus)
    del os.environ["SEARCHRUN_FAIL_STEPS"]
    t0 = time.monotonic()
    st = open_store(store)
    run, fresh, before = prepare(st, failed["run_uid"], {})
    c4 = Count()
    ex = LocalExecutor(run, store, run.spec.corpus.uri, progress=c4, status=fresh)
    replay = Replay(ex.store, failed["run_uid"], before)
    ex.recall.sources.insert(0, replay)
    res = ex.execute()
    w4 = time.monotonic() - t0
    print(f"resume  failing run: {mid} failed at traversal {len(trav) // 2} of {len(trav)}; {c3.started} processes, {w3:.1f}s")
    print(f"resume  resumed run: {res.phase}, kept {replay.kept}, ran {c4.started} processes, "
          f"first new process {((c4.first_start or t0) - t0) * 1000:.0f} ms after the resume began, {w4:.1f}s in all")
    return 0


if __name__ == "__main__":
    sys.exit(main())
