"""The local executor: a SearchRun on this machine, no cluster.

Each step is a subprocess of the same ``searchrun step`` entrypoint a Job runs,
at most ``maxParallel`` at once; artifacts go to a local folder (or ``s3://``).
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Optional, TextIO

from ..api import SearchRun
from ..engine import Decision, Observation, StartStep, StepResult, reconcile
from ..steps import LINEAGE_NAME, STEP_ENV
from . import lineage_document, step_context

DEFAULT_STORE_DIR = "searchrun-runs"


@dataclass
class _Proc:
    action: StartStep
    popen: subprocess.Popen
    result_file: str
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


def _local_path(uri: Optional[str]) -> str:
    if uri and uri.startswith("file://"):
        return uri[len("file://"):]
    return uri or ""


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
    from ..artifacts import read_uri
    from ..corpus import load_corpus

    return len(load_corpus(corpus_uri, run.spec.corpus.format, read_uri=read_uri))


class LocalExecutor:
    def __init__(self, run: SearchRun, store_uri: str, corpus_uri: str, out: TextIO = sys.stdout,
                 clock: Callable[[], datetime] = _now, step_command: Optional[list[str]] = None, quiet: bool = False):
        from ..artifacts import open_store

        self.run = run
        self.spec = run.spec
        self.name = run.metadata.name
        self.uid = uuid.uuid4().hex[:16]
        self.store_uri = store_uri
        self.store = open_store(store_uri)
        if hasattr(self.store, "ensure_bucket"):
            self.store.ensure_bucket()
        self.corpus_uri = corpus_uri
        self.out = out
        self.quiet = quiet
        self.clock = clock
        self.step_command = step_command or [sys.executable, "-m", "searchrun", "step"]
        self.procs: dict[str, _Proc] = {}
        self.done_q: "queue.Queue[str]" = queue.Queue()
        self.tmp = tempfile.mkdtemp(prefix="searchrun-")
        self.step_seconds: dict[str, float] = {}

    def say(self, line: str) -> None:
        if not self.quiet:
            print(line, file=self.out, flush=True)

    # -- steps as subprocesses

    def _launch(self, a: StartStep, status) -> None:
        if a.step_id in self.procs:
            return
        if a.needs_lineage:
            self.write_lineage(status)
        ctx = step_context(self.spec, self.uid, self.name, self.store_uri, a, corpus_uri=self.corpus_uri)
        env = dict(os.environ)
        env[STEP_ENV] = ctx.to_json()
        result_file = os.path.join(self.tmp, f"{a.step_id}.a{a.attempt}.json")
        popen = subprocess.Popen(self.step_command + ["--result-file", result_file], env=env,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        now = time.monotonic()
        self.procs[a.step_id] = _Proc(a, popen, result_file, now, now + a.timeout_seconds)
        threading.Thread(target=self._wait, args=(a.step_id, popen), daemon=True).start()
        doc = f" doc={a.input['doc']}" if a.input.get("doc") else ""
        retry = f" (attempt {a.attempt})" if a.attempt > 1 else ""
        self.say(f"  ▶ {a.step_id:<12} {a.step_type}{doc}{retry}")

    def _wait(self, step_id: str, popen: subprocess.Popen) -> None:
        popen.wait()
        self.done_q.put(step_id)

    def _observe(self, step_id: str, timed_out: bool = False) -> Observation:
        p = self.procs.pop(step_id)
        a = p.action
        stderr = p.popen.stderr.read() if p.popen.stderr else ""
        p.popen.stderr and p.popen.stderr.close()
        self.step_seconds[f"{step_id}#{a.attempt}"] = time.monotonic() - p.started
        payload: dict = {}
        try:
            payload = json.loads(Path(p.result_file).read_text())
        except (OSError, ValueError):
            pass
        if timed_out:
            return Observation(step_id, a.attempt, "failed", message=f"timed out after {a.timeout_seconds}s")
        if p.popen.returncode == 0:
            try:
                result = StepResult.from_dict(payload)
            except ValueError as e:
                return Observation(step_id, a.attempt, "failed", message=f"malformed step result: {e}")
            return Observation(step_id, a.attempt, "succeeded", result=result)
        reason = payload.get("error") or (stderr.strip().splitlines() or [f"exit code {p.popen.returncode}"])[-1]
        return Observation(step_id, a.attempt, "failed", message=str(reason)[:500])

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
            if sid in self.procs:
                obs[sid] = self._observe(sid)
            while True:  # take everything else that has finished too
                sid = self.done_q.get_nowait()
                if sid in self.procs:
                    obs[sid] = self._observe(sid)
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
        from ..artifacts import run_key

        doc = lineage_document(self.name, self.uid, None, self.spec, status)
        return self.store.put_json(run_key(self.uid, LINEAGE_NAME), doc, overwrite=True)

    def _report_progress(self, d: Decision, obs: dict[str, Observation]) -> None:
        steps = {s.id: s for s in d.status.steps} if obs else {}
        for sid, o in obs.items():
            s = steps.get(sid)
            if s is None:
                continue
            if o.state == "succeeded":
                self.say(f"  ✓ {sid:<12} {s.decision or 'done'} [{s.tokens} tokens]")
            else:
                self.say(f"  ✗ {sid:<12} {s.message}")
        for e in d.events:
            if e.reason in ("BudgetSpent", "FallbackToSimple", "FanOut", "FanIn", "IntentDetected"):
                self.say(f"  · {e.message}")

    # -- the run

    def execute(self) -> LocalRunResult:
        t0 = time.monotonic()
        self.say(f"searchrun: run {self.name} (uid {self.uid}), artifacts in {self.store_uri}")
        status = None
        obs: dict[str, Observation] = {}
        try:
            while True:
                d = reconcile(self.spec, status, obs, self.clock(), self.uid)
                status = d.status
                self._report_progress(d, obs)
                for a in d.start:
                    self._launch(a, status)
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


def run_manifest(path: str, store: Optional[str] = None, out: TextIO = sys.stdout, quiet: bool = False) -> int:
    """``searchrun run FILE``: 0 when the run succeeds, 1 when it fails, 2 for bad input."""
    from ..corpus import CorpusError
    from ..manifest import ManifestError, load_manifest

    try:
        run = load_manifest(path)
        corpus_uri = resolve_corpus_uri(run, Path(path).resolve().parent)
        n_docs = check_corpus(run, corpus_uri)
    except (ManifestError, CorpusError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    store_uri = store or run.spec.artifacts.uri or f"file://{Path.cwd() / DEFAULT_STORE_DIR}"
    try:
        ex = LocalExecutor(run, store_uri, corpus_uri, out=out, quiet=quiet)
    except ValueError as e:
        print(f"error: --store: {e}", file=sys.stderr)
        return 2
    ex.say(f"corpus {run.spec.corpus.uri}: {n_docs} documents; query: {run.spec.query!r}")
    res = ex.execute()
    st = res.status
    ex.say("")
    ex.say(f"Run {res.phase}: {st.get('message', '')}")
    used = st.get("budgetUsed", {})
    ex.say(f"  steps {used.get('steps', 0)}/{run.spec.budget.maxSteps}, depth {used.get('depth', 0)}/{run.spec.budget.maxDepth}, "
           f"tokens {used.get('tokens', 0)}/{run.spec.budget.maxTokens}, cost ${used.get('costUSD', 0):.4f}/${run.spec.budget.maxCostUSD}, "
           f"{res.wall_seconds:.1f}s")
    if st.get("stoppedBy"):
        ex.say(f"  stopped by budget: {st['stoppedBy']}")
    if res.report_uri:
        try:
            from ..report import render_text_summary
            from ..steps import REPORT_JSON
            from ..artifacts import run_key

            ex.say(render_text_summary(ex.store.get_json(run_key(res.run_uid, REPORT_JSON))))
        except Exception as e:  # the summary is a courtesy; the report is what counts
            ex.say(f"  (summary unavailable: {e})")
        ex.say(f"  report:  {_local_path(res.report_uri)}")
    ex.say(f"  lineage: {_local_path(res.lineage_uri)}")
    return 0 if res.phase == "Succeeded" else 1
