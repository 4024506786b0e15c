"""A copy of a step's output in the store, beside its result, so that logs outlive pods.

``run_with_log_copy(main, argv)`` runs the step entrypoint with its stdout and stderr teed into one
buffer (in the order written), then stores it as ``log.txt`` and the step's input as ``input.json``
in the step attempt's folder. Each step has its own object, so the logs of parallel steps never
interleave. Storing the copy is best effort: a step never fails because of it.
"""

from __future__ import annotations

import io
import json
import os
import sys
import threading
from typing import Callable

from ..artifacts import _scrub, open_store, step_key
from .context import STEP_ENV, StepContext

LOG_NAME = "log.txt"
INPUT_NAME = "input.json"
MAX_LOG_BYTES = 1 << 20  # the tail is kept


class _Tee(io.TextIOBase):
    def __init__(self, stream, buf: list, lock: threading.Lock):
        self.stream, self.buf, self.lock = stream, buf, lock

    def write(self, s: str) -> int:
        with self.lock:
            self.buf.append(s)
        return self.stream.write(s)

    def flush(self) -> None:
        self.stream.flush()

    def isatty(self) -> bool:
        return False


def run_with_log_copy(main: Callable[[list[str]], int], argv: list[str]) -> int:
    buf: list[str] = []
    lock = threading.Lock()
    out, err = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = _Tee(out, buf, lock), _Tee(err, buf, lock)
    try:
        return main(argv)
    finally:
        sys.stdout, sys.stderr = out, err
        _store_copy("".join(buf))


def _store_copy(text: str) -> None:
    try:
        ctx = StepContext.from_json(os.environ.get(STEP_ENV, ""))
        store = open_store(ctx.store_uri)
        data = _scrub(text).encode("utf-8", "replace")[-MAX_LOG_BYTES:]
        store.put_bytes(step_key(ctx.run_uid, ctx.step_id, ctx.attempt, LOG_NAME), data, content_type="text/plain", overwrite=True)
        store.put_json(step_key(ctx.run_uid, ctx.step_id, ctx.attempt, INPUT_NAME), ctx.step, overwrite=True)
    except Exception:  # noqa: BLE001 - no context (run by hand), no store: no copy
        pass


def read_log(store, run_uid: str, step_id: str, attempt: int) -> str:
    return store.get_bytes(step_key(run_uid, step_id, attempt, LOG_NAME)).decode("utf-8", "replace")


def read_input(store, run_uid: str, step_id: str, attempt: int) -> dict:
    return json.loads(store.get_bytes(step_key(run_uid, step_id, attempt, INPUT_NAME)))
