"""The executor's side of warm local steps: its step worker (``local_workers``), started when the run
starts and again if it dies, and each forked step shown as the ``subprocess.Popen`` a cold step is."""

from __future__ import annotations

import io
import json
import re
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Callable, Optional

from ..artifacts import s3 as artifacts_s3
from .local_workers import WORKER_COMMAND, ForkedWorker

READY_TIMEOUT = 120  # seconds a new worker may take to import and load the corpus

_UNITS = {"": 1, "K": 1000, "M": 1000**2, "G": 1000**3, "Ki": 1024, "Mi": 1024**2, "Gi": 1024**3}


def memory_bytes(quantity: Optional[str]) -> int:
    """``256Mi`` → bytes (0 when unset): the Kubernetes quantities ``api.ResourceList`` accepts."""
    m = re.fullmatch(r"([0-9]+(?:\.[0-9]+)?)(Ki|Mi|Gi|K|M|G)?", quantity or "")
    return int(float(m.group(1)) * _UNITS[m.group(2) or ""]) if m else 0


def can_fork_worker() -> bool:
    """The executor may fork its worker: Linux, one thread, no boto3 client (sockets) to hand down."""
    return (sys.platform.startswith("linux") and threading.active_count() == 1
            and artifacts_s3._shared_client is None)


def _last_line(path: Path) -> str:
    """The end of a dead worker's log (why it died, if it said), for the failed steps' message."""
    try:
        lines = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return f": {lines[-1][:300]}" if lines else ""


class ForkedStep:
    """A warm step as the executor sees it: the part of ``subprocess.Popen`` it uses."""

    def __init__(self, pool: "WorkerPool", key: str, stderr_path: str, on_exit: Callable[[], None]):
        self.pool, self.key, self.stderr_path, self.on_exit = pool, key, stderr_path, on_exit
        self.returncode: Optional[int] = None
        self.stderr = None
        self.worker: Optional[subprocess.Popen] = None  # the worker process that forked it
        self._done = threading.Event()

    def _exited(self, code: int, note: str = "") -> None:
        if note:
            with open(self.stderr_path, "a") as f:
                f.write(note + "\n")
        self.returncode = code
        try:
            self.stderr = open(self.stderr_path)
        except FileNotFoundError:  # the worker died before it forked this step
            self.stderr = io.StringIO(note)
        self._done.set()
        self.on_exit()

    def poll(self) -> Optional[int]:
        return self.returncode

    def kill(self) -> None:
        if self.returncode is None:
            self.pool.kill(self.key)

    def wait(self, timeout: Optional[float] = None) -> Optional[int]:
        self._done.wait(timeout)
        return self.returncode


class WorkerPool:
    """The executor's handle on its step worker: started at the first step (or by ``open``), started
    again if it dies (its running steps fail, and are retried as any failed step is)."""

    def __init__(self, corpus_uri: str, corpus_format: str = "json", command: Optional[list[str]] = None,
                 query: str = ""):
        self.args = [corpus_uri, getattr(corpus_format, "value", corpus_format) or "json", query]
        self.command = list(command) if command else None  # None: fork the executor (else spawn the default)
        self.started = self.forked = 0  # workers started, and of them forked from the executor
        self.tmp: Optional[Path] = None  # the step logs, made when the first worker starts
        self.lock = threading.Lock()
        self.proc: Optional[subprocess.Popen] = None
        self.steps: dict[str, ForkedStep] = {}
        self.ready: list[dict] = []  # one "ready" event per worker started: its pid and corpusLoads
        self.n = 0
        self.reader: Optional[threading.Thread] = None

    @property
    def corpus_loads(self) -> int:
        return sum(r.get("corpusLoads", 0) for r in self.ready)

    def open(self) -> None:
        with self.lock:
            self._ensure()

    def _ensure(self) -> subprocess.Popen:
        if self.proc is None or self.proc.poll() is not None:
            if self.tmp is None:
                self.tmp = Path(tempfile.mkdtemp(prefix="searchrun-steps-"))
            log_path = self.tmp / f"worker-{self.started}.log"
            self.started += 1
            if self.command is None and can_fork_worker():
                self.proc = ForkedWorker(self.args, log_path)
                self.forked += 1
            else:
                with open(log_path, "ab") as log:
                    self.proc = subprocess.Popen((self.command or WORKER_COMMAND) + self.args, stdin=subprocess.PIPE,
                                                 stdout=subprocess.PIPE, stderr=log, bufsize=0)
            self.proc.up = threading.Event()  # set when it is ready (or gone)
            self.proc.gone = ""  # why it ended, once its reader has seen it end
            self.proc.log_path = log_path
            self.reader = threading.Thread(target=self._read, args=(self.proc,), daemon=True)
            self.reader.start()
        return self.proc

    def start(self, ctx_json: str, memory: int, on_exit: Callable[[], None]) -> ForkedStep:
        """Fork a step; returns once the worker is ready, so that the step's timeout counts from
        then, as a Job's does from its pod and not from the image pull."""
        with self.lock:
            proc = self._ensure()
        proc.up.wait(READY_TIMEOUT)
        with self.lock:
            self.n += 1
            key = str(self.n)
            step = ForkedStep(self, key, str(self.tmp / f"step-{key}.stderr"), on_exit)
            step.worker = proc
            gone = proc.gone  # its reader has failed the steps it had: this one would wait forever
            if not gone:
                self.steps[key] = step
                self._write(proc, {"op": "start", "key": key, "ctx": ctx_json, "stderr": step.stderr_path, "memory": memory})
        if gone:
            step._exited(-9, gone)
        return step

    def kill(self, key: str) -> None:
        with self.lock:
            if self.proc is not None:
                self._write(self.proc, {"op": "kill", "key": key})

    def _write(self, proc: subprocess.Popen, cmd: dict) -> None:
        try:
            proc.stdin.write((json.dumps(cmd, separators=(",", ":")) + "\n").encode())
        except (BrokenPipeError, OSError):
            pass  # the worker is gone: _read fails its steps

    def _read(self, proc: subprocess.Popen) -> None:
        for line in proc.stdout:
            ev = json.loads(line)
            if ev["ev"] == "ready":
                self.ready.append(ev)
                proc.up.set()
            elif ev["ev"] == "exited":
                with self.lock:
                    step = self.steps.pop(ev["key"], None)
                if step is not None:
                    step._exited(int(ev["code"]))
        proc.up.set()
        code = proc.wait()
        why = f"the step worker (pid {proc.pid}) exited with code {code}{_last_line(proc.log_path)}"
        with self.lock:
            proc.gone = why
            lost = [k for k, s in self.steps.items() if s.worker is proc]
            orphans = [self.steps.pop(k) for k in lost]
        for step in orphans:
            step._exited(-9, why)

    def close(self) -> None:
        """End the worker (it kills the steps still running) and remove the step logs."""
        with self.lock:
            proc, self.proc = self.proc, None
        if proc is not None:
            try:
                proc.stdin.close()
            except OSError:
                pass
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            self.reader.join(5)  # gone before the next run in this process, which may then fork its worker
        if self.tmp is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
