"""Where a pass's wall time goes, from a py-spy speedscope file (``bench_scale.py --profile``).

py-spy's flame graph shows CPU; a pass mostly waits (S3, the API server, a thread pool), and
the hand-off is wall time. Record with ``--profile-args=--idle`` so that waiting threads are
sampled too, then:

    .venv/bin/python bench/pass_profile.py WORKDIR/wide-fanout.speedscope.json  # PerFanout (wide.*: PerStep)

For each function named with ``--under`` (default: the operator's pass, its step creates and
its result reads), it prints the seconds sampled inside it, split by the function it was in
directly below it (and the line of the call), largest first.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

DEFAULT_UNDER = ("reconcile_once", "_create_job", "create_group_job", "_result", "_patch_status",
                 "write_entry", "observations")


def frames_of(doc: dict) -> list[tuple[str, str, int]]:
    return [(f.get("name", "?"), Path(f.get("file") or "?").name, int(f.get("line") or 0))
            for f in doc["shared"]["frames"]]


def named(frame: str, under: str) -> bool:
    """py-spy names a method by its qualified name (``RunReconciler.reconcile_once``)."""
    return frame == under or frame.endswith("." + under)


def breakdown(doc: dict, under: str, rate: float) -> tuple[float, Counter, int]:
    """(seconds in ``under``, seconds by the frame below it, threads seen in it)."""
    frames = frames_of(doc)
    below: Counter = Counter()
    total, threads = 0.0, 0
    for prof in doc["profiles"]:
        seen = False
        weights = prof.get("weights") or [1] * len(prof["samples"])
        scale = 1.0 if prof.get("unit") == "seconds" else 1.0 / rate  # py-spy weighs in seconds
        for stack, w in zip(prof["samples"], weights):
            # speedscope stacks run root first; the outermost ``under`` counts (recursion once)
            at = next((i for i, fi in enumerate(stack) if named(frames[fi][0], under)), None)
            if at is None:
                continue
            seen = True
            s = w * scale
            total += s
            if at + 1 < len(stack):
                name, file, _ = frames[stack[at + 1]]
                line = frames[stack[at]][2]
                below[f"{name} ({file}; called at line {line})"] += s
            else:
                below["(itself)"] += s
        threads += seen
    return total, below, threads


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("speedscope", type=Path)
    ap.add_argument("--under", action="append", help="a function's name (repeatable)")
    ap.add_argument("--rate", type=float, default=100.0, help="samples a second, for a profile whose weights are counts")
    ap.add_argument("--top", type=int, default=8)
    args = ap.parse_args()
    doc = json.loads(args.speedscope.read_text())
    for under in args.under or DEFAULT_UNDER:
        total, below, threads = breakdown(doc, under, args.rate)
        if not total:
            print(f"{under}: not sampled")
            continue
        print(f"{under}: {total:.2f} s sampled, in {threads} thread(s)")
        for what, s in below.most_common(args.top):
            print(f"  {s:7.2f} s  {100 * s / total:5.1f} %  {what}")


if __name__ == "__main__":
    main()
