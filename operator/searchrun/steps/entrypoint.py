"""The step entrypoint: what one Job (or one local subprocess) runs.

A step reads its context (the run's settings and the engine's input for this
step) from the ``SEARCHRUN_STEP`` environment variable, does its one job, writes
its output once to the artifact store, and hands the engine a small result: in
``--result-file`` (a Job's termination message) and as ``result.json`` beside
its output. Exit code 0 means the step succeeded.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Callable, Optional

from ..agents.base import AgentReplyError
from ..artifacts import ArtifactNotFound, open_store, read_uri, result_key
from ..engine.types import StepResult
from .context import EXIT_PERMANENT, STEP_ENV, PermanentStepError, StepContext, StepError, indexed_context
from .io import StepIO
from .registry import known, kind_of

RESULT_LIMIT = 4000  # bytes: a termination message holds 4096


def run_step(ctx: StepContext, io: Optional[StepIO] = None) -> StepResult:
    """Run one step and write its output; returns the result for the engine."""
    step_type = ctx.step["type"]
    if not known(step_type):
        raise PermanentStepError(f"unknown step type {step_type!r}")
    return kind_of(step_type).run(ctx, io or StepIO(ctx))


def _write_result(path: Optional[str], payload: dict) -> None:
    if not path:
        return
    text = json.dumps(payload, separators=(",", ":"))
    if len(text.encode()) > RESULT_LIMIT:
        # Keep the decision, drop the long tail of proposals.
        payload = {**payload, "next": payload.get("next", [])[:4], "seeds": payload.get("seeds", [])[:4]}
        text = json.dumps(payload, separators=(",", ":"))[:RESULT_LIMIT]
    try:
        Path(path).write_text(text)
    except OSError:
        pass


def _result_key(ctx: StepContext) -> str:
    return result_key(ctx.run_uid, ctx.step_id, ctx.attempt)


def _committed_result(store, ctx: StepContext) -> tuple[Optional[dict], bool]:
    """(the result an earlier pod of this Job committed, or None; whether a commit exists but is
    corrupt). A truncated or malformed result.json is no commit: the step is done again."""
    try:
        raw = store.get_bytes(_result_key(ctx))
    except ArtifactNotFound:
        return None, False
    try:
        data = json.loads(raw)
        StepResult.from_dict(data)
    except ValueError as e:
        print(f"step: the committed {_result_key(ctx)} is corrupt ({str(e)[:200]}); doing the step again", file=sys.stderr)
        return None, True
    return data, False


def _is_permanent(e: Exception) -> bool:
    """A failure that the same step would hit again on retry."""
    return isinstance(e, (PermanentStepError, AgentReplyError))


def main(argv: list[str]) -> int:
    """``searchrun step [--result-file PATH]``: run the step described in $SEARCHRUN_STEP."""
    ap = argparse.ArgumentParser(prog="searchrun step", description="run one step (what a Job runs)")
    default_result = "/dev/termination-log" if Path("/dev/termination-log").exists() else None
    ap.add_argument("--result-file", default=default_result, help="where to write the small result for the engine")
    args = ap.parse_args(argv)
    try:
        text = indexed_context(os.environ, read_uri)
    except Exception as e:  # the store unreachable (retried), or no such step (permanent)
        msg = f"{type(e).__name__}: {e}"[:1000]
        print(f"step failed: {msg}", file=sys.stderr)
        _write_result(args.result_file, {"error": msg})
        return EXIT_PERMANENT if isinstance(e, PermanentStepError) else 1
    return execute(text, args.result_file)


def execute(text: Optional[str], result_file: Optional[str] = None,
            make_io: Callable[[StepContext], StepIO] = StepIO) -> int:
    """Run the step whose context is ``text`` (the JSON of $SEARCHRUN_STEP) and commit its result;
    the exit code. ``main`` and the warm local workers (``executors.local_workers``) both call it."""
    t0 = time.monotonic()
    try:
        if not text:
            raise StepError(f"{STEP_ENV} is not set: this command is run by the executors, not by hand")
        ctx = StepContext.from_json(text)
        io = make_io(ctx)
        done, corrupt = _committed_result(io.store, ctx)
        if done is not None:  # an earlier pod of this Job finished the step and died before exiting
            _write_result(result_file, done)
            print(json.dumps(done, separators=(",", ":")))
            return 0
        forced = os.environ.get("SEARCHRUN_FAIL_STEPS", "")
        if forced and ctx.step.get("stepId") in forced.split(","):
            raise StepError(f"forced failure of step {ctx.step.get('stepId')} (SEARCHRUN_FAIL_STEPS)")
        result = run_step(ctx, io)
        payload = result.to_dict()
        payload["seconds"] = round(time.monotonic() - t0, 4)
        # result.json is the step's commit: the operator reads nothing else. A step that cannot
        # store it has not finished; it fails (and is retried) rather than exit 0 without it.
        io.store.put_json(_result_key(ctx), payload, overwrite=corrupt)
        _write_result(result_file, payload)
        print(json.dumps(payload, separators=(",", ":")))
        return 0
    except Exception as e:  # one line for the user; the engine records it
        msg = f"{type(e).__name__}: {e}"[:1000]
        print(f"step failed: {msg}", file=sys.stderr)
        _write_result(result_file, {"error": msg})
        return EXIT_PERMANENT if _is_permanent(e) else 1
