"""The local executor: a SearchRun on this machine, no cluster.

Each step is a subprocess of the same ``searchrun step`` entrypoint a Job runs,
at most ``maxParallel`` at once; artifacts go to a local folder (or ``s3://``).
A step is observed as a Job is: by its committed ``result.json`` in the store
(``executors.base``). What happens is told to a ``Progress``; the CLI prints it.
"""

from __future__ import annotations

import os
import queue
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Optional

from ..api import SearchRun, StepStatus
from ..artifacts import ArtifactError, open_store, read_uri
from ..corpus import load_corpus
from ..engine import Decision, Event, Observation, StartStep, reconcile
from ..steps import EXIT_PERMANENT, STEP_ENV
from ..cache import LOCAL_NAMESPACE, make_cache
from .base import Recall, committed_observation, lineage_document, lineage_needed, put_lineage, read_committed, step_context

DEFAULT_STORE_DIR = "searchrun-runs"
# ``searchrun step`` (steps.main) ends its stderr with this line when the step fails.
STEP_FAILED_PREFIX = "step failed: "


@dataclass
class _Proc:
    action: StartStep
    popen: subprocess.Popen
    started: float
    deadline: float


@dataclass
class LocalRunResult:
    phase: str
    run_uid: str
    status: dict
    report_uri: Optional[str]
    lineage_uri: str
    wall_seconds: float
    step_seconds: dict[str, float] = field(default_factory=dict)


def _now() -> datetime:
    return datetime.now(timezone.utc)


def resolve_corpus_uri(run: SearchRun, manifest_dir: Path) -> str:
    """A relative corpus path is relative to the manifest; steps get an absolute URI."""
    uri = run.spec.corpus.uri
    if uri.startswith(("builtin:", "s3://", "file://")):
        return uri
    p = Path(uri)
    if not p.is_absolute():
        p = (manifest_dir / p).resolve()
    return f"file://{p}"


def check_corpus(run: SearchRun, corpus_uri: str) -> int:
    """Load the corpus once before anything is written: a bad corpus fails fast."""
    return len(load_corpus(corpus_uri, run.spec.corpus.format, read_uri=read_uri))


def failure_reason(stderr: str, returncode: int) -> str:
    """Why a step process failed: the error steps.main printed last (it may span lines), else the
    last stderr line, else its exit code."""
    lines = stderr.strip().splitlines()
    if not lines:
        return f"exit code {returncode}"
    at = max((i for i, line in enumerate(lines) if line.startswith(STEP_FAILED_PREFIX)), default=None)
    if at is None:
        return lines[-1][:500]
    return "\n".join(lines[at:])[len(STEP_FAILED_PREFIX):][:500]


class Progress:
    """What a local run tells as it goes. This one says nothing; the CLI's (``cli_run.ProgressPrinter``)
    prints a line for each."""

    def run_started(self, run_name: str, run_uid: str, store_uri: str) -> None:
        pass

    def step_started(self, action: StartStep) -> None:
        pass

    def step_finished(self, step: StepStatus, observation: Observation) -> None:
        """``step`` as the engine recorded ``observation`` (its decision, tokens or message)."""

    def engine_event(self, event: Event) -> None:
        pass

    def step_reused(self, action: StartStep, observation: Observation) -> None:
        """``action``'s step was answered without a process (a cache hit, or kept by a resume)."""


class LocalExecutor:
    def __init__(self, run: SearchRun, store_uri: str, corpus_uri: str, progress: Optional[Progress] = None,
                 clock: Callable[[], datetime] = _now, step_command: Optional[list[str]] = None,
                 run_uid: Optional[str] = None, status=None):
        self.run = run
        self.spec = run.spec.model_copy(update={"corpus": run.spec.corpus.model_copy(update={"uri": corpus_uri})})
        self.name = run.metadata.name
        self.uid = run_uid or uuid.uuid4().hex[:16]
        self.initial_status = status  # a resumed run's (executors.resume)
        self.store_uri = store_uri
        self.store = open_store(store_uri)
        if hasattr(self.store, "ensure_bucket"):
            self.store.ensure_bucket()
        self.corpus_uri = corpus_uri
        self.progress = progress or Progress()
        self.clock = clock
        self.step_command = step_command or [sys.executable, "-m", "searchrun", "step"]
        self.procs: dict[str, _Proc] = {}
        self.done_q: "queue.Queue[str]" = queue.Queue()
        self.step_seconds: dict[str, float] = {}
        self.recall = Recall([make_cache(self.store, self.spec, LOCAL_NAMESPACE, self.uid, lambda: load_corpus(corpus_uri, self.spec.corpus.format, read_uri=read_uri))])
        self.recalled: dict[str, Observation] = {}  # steps answered without a process

    # -- steps as subprocesses

    def _launch(self, a: StartStep) -> None:
        hit = self.recall.lookup(a)
        if hit is not None:
            self.recalled[a.step_id] = hit
            self.done_q.put(a.step_id)
            return self.progress.step_reused(a, hit)
        ctx = step_context(self.spec, self.uid, self.name, self.store_uri, a, corpus_uri=self.corpus_uri)
        env = dict(os.environ)
        env[STEP_ENV] = ctx.to_json()
        popen = subprocess.Popen(self.step_command, env=env,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        now = time.monotonic()
        self.procs[a.step_id] = _Proc(a, popen, now, now + a.timeout_seconds)
        threading.Thread(target=self._wait, args=(a.step_id, popen), daemon=True).start()
        self.progress.step_started(a)

    def _wait(self, step_id: str, popen: subprocess.Popen) -> None:
        popen.wait()
        self.done_q.put(step_id)

    def _observe(self, step_id: str, timed_out: bool = False) -> Observation:
        p = self.procs.pop(step_id)
        a = p.action
        stderr = p.popen.stderr.read() if p.popen.stderr else ""
        p.popen.stderr and p.popen.stderr.close()
        self.step_seconds[f"{step_id}#{a.attempt}"] = time.monotonic() - p.started
        if timed_out:
            return Observation(step_id, a.attempt, "failed", message=f"timed out after {a.timeout_seconds}s")
        if p.popen.returncode != 0:
            # a step that failed for good is not retried (as a Job's podFailurePolicy does on a cluster)
            return Observation(step_id, a.attempt, "failed", message=failure_reason(stderr, p.popen.returncode),
                               final=p.popen.returncode == EXIT_PERMANENT)
        try:
            raw = read_committed(self.store, self.uid, step_id, a.attempt)
        except ArtifactError as e:
            return Observation(step_id, a.attempt, "failed", message=f"the step's result.json could not be read: {e}"[:500])
        obs = committed_observation(step_id, a.attempt, raw)
        self.recall.fill(a, obs)
        return obs

    def _collect(self, wait_until: Optional[float]) -> dict[str, Observation]:
        obs: dict[str, Observation] = {}
        timeout = None
        now = time.monotonic()
        deadlines = [p.deadline for p in self.procs.values()]
        if wait_until is not None:
            deadlines.append(wait_until)
        if deadlines:
            timeout = max(0.0, min(deadlines) - now)
        try:
            sid = self.done_q.get(timeout=timeout)
            while True:  # take everything else that has finished too
                if sid in self.recalled:
                    obs[sid] = self.recalled.pop(sid)
                elif sid in self.procs:
                    obs[sid] = self._observe(sid)
                sid = self.done_q.get_nowait()
        except queue.Empty:
            pass
        now = time.monotonic()
        for sid, p in list(self.procs.items()):
            if now >= p.deadline and sid not in obs:
                p.popen.kill()
                p.popen.wait()
                obs[sid] = self._observe(sid, timed_out=True)
        return obs

    # -- lineage

    def write_lineage(self, status) -> str:
        return put_lineage(self.store, self.uid, lineage_document(self.name, self.uid, None, self.spec, status))

    def _report_progress(self, d: Decision, obs: dict[str, Observation]) -> None:
        steps = {s.id: s for s in d.status.steps} if obs else {}
        for sid, o in obs.items():
            s = steps.get(sid)
            if s is not None:
                self.progress.step_finished(s, o)
        for e in d.events:
            self.progress.engine_event(e)

    # -- the run

    def execute(self) -> LocalRunResult:
        t0 = time.monotonic()
        self.progress.run_started(self.name, self.uid, self.store_uri)
        status = self.initial_status
        obs: dict[str, Observation] = {}
        try:
            while True:
                d = reconcile(self.spec, status, obs, self.clock(), self.uid)
                status = d.status
                self._report_progress(d, obs)
                new = [a for a in d.start if a.step_id not in self.procs]  # the engine restarts steps it saw no word of
                if lineage_needed(new):
                    self.write_lineage(status)
                for a in new:
                    self._launch(a)
                if d.done:
                    break
                wake = None
                if d.wake_at is not None:
                    wake = time.monotonic() + max(0.0, (d.wake_at - self.clock()).total_seconds())
                obs = self._collect(wake)
        finally:
            for p in self.procs.values():
                p.popen.kill()
        lineage_uri = self.write_lineage(status)
        return LocalRunResult(
            phase=status.phase, run_uid=self.uid, status=status.model_dump(mode="json", exclude_none=True),
            report_uri=status.reportURI, lineage_uri=lineage_uri, wall_seconds=time.monotonic() - t0,
            step_seconds=self.step_seconds,
        )
