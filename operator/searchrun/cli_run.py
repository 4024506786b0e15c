"""``searchrun run FILE``: a SearchRun on this machine, printed as it goes.

The local executor tells what happens (``executors.local.Progress``); printing it,
and the summary at the end, is the command's business.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional, TextIO

from .api import SearchRun, StepStatus
from .artifacts import ArtifactStore, open_store, run_key
from .corpus import CorpusError
from .engine import Event, Observation, StartStep
from .engine.resume import ResumeError
from .executors.local import (DEFAULT_STORE_DIR, LocalExecutor, LocalRunResult, Progress, check_corpus,
                              resolve_corpus_uri)
from .executors.resume import Replay, find_run, prepare
from .manifest import ManifestError, load_manifest
from .report import render_text_summary
from .steps import REPORT_JSON

# The engine's events worth a line while a run goes (the rest are in the lineage).
SHOWN_EVENTS = ("BudgetSpent", "FallbackToSimple", "FanOut", "FanIn", "IntentDetected")


def _local_path(uri: Optional[str]) -> str:
    if uri and uri.startswith("file://"):
        return uri[len("file://"):]
    return uri or ""


class ProgressPrinter(Progress):
    """One line per step started and finished, and per notable engine event."""

    def __init__(self, out: TextIO, quiet: bool = False):
        self.out = out
        self.quiet = quiet

    def say(self, line: str) -> None:
        if not self.quiet:
            print(line, file=self.out, flush=True)

    def run_started(self, run_name: str, run_uid: str, store_uri: str) -> None:
        self.say(f"searchrun: run {run_name} (uid {run_uid}), artifacts in {store_uri}")

    def step_started(self, action: StartStep) -> None:
        doc = f" doc={action.input['doc']}" if action.input.get("doc") else ""
        retry = f" (attempt {action.attempt})" if action.attempt > 1 else ""
        self.say(f"  ▶ {action.step_id:<12} {action.step_type}{doc}{retry}")

    def step_finished(self, step: StepStatus, observation: Observation) -> None:
        if observation.state == "succeeded" and step.cachedFrom is not None:
            src = step.cachedFrom
            self.say(f"  ≡ {step.id:<12} {step.decision or 'done'} [cached from {src.run}/{src.step}, {step.tokensSaved} tokens saved]")
        elif observation.state == "succeeded" and step.keptFrom is not None:
            self.say(f"  ≡ {step.id:<12} {step.decision or 'done'} [kept: it succeeded before the resume, {step.tokens} tokens]")
        elif observation.state == "succeeded":
            self.say(f"  ✓ {step.id:<12} {step.decision or 'done'} [{step.tokens} tokens]")
        else:
            self.say(f"  ✗ {step.id:<12} {step.message}")

    def engine_event(self, event: Event) -> None:
        if event.reason in SHOWN_EVENTS:
            self.say(f"  · {event.message}")


def print_outcome(say, run: SearchRun, res: LocalRunResult, store: ArtifactStore) -> None:
    """The end of a run: its phase, the budget used against the limits, the answers, where things are."""
    st = res.status
    budget = run.spec.budget
    say("")
    say(f"Run {res.phase}: {st.get('message', '')}")
    used = st.get("budgetUsed", {})
    say(f"  steps {used.get('steps', 0)}/{budget.maxSteps}, depth {used.get('depth', 0)}/{budget.maxDepth}, "
        f"tokens {used.get('tokens', 0)}/{budget.maxTokens}, cost ${used.get('costUSD', 0):.4f}/${budget.maxCostUSD}, "
        f"{res.wall_seconds:.1f}s")
    if st.get("stoppedBy"):
        say(f"  stopped by budget: {st['stoppedBy']}")
    if res.report_uri:
        try:
            say(render_text_summary(store.get_json(run_key(res.run_uid, REPORT_JSON))))
        except Exception as e:  # the summary is a courtesy; the report is what counts
            say(f"  (summary unavailable: {e})")
        say(f"  report:  {_local_path(res.report_uri)}")
    say(f"  lineage: {_local_path(res.lineage_uri)}")


def run_manifest(path: str, store: Optional[str] = None, out: Optional[TextIO] = None, quiet: bool = False,
                 isolation: Optional[str] = None) -> int:
    """``searchrun run FILE``: 0 when the run succeeds, 1 when it fails, 2 for bad input."""
    try:
        run = load_manifest(path)
        corpus_uri = resolve_corpus_uri(run, Path(path).resolve().parent)
        n_docs = check_corpus(run, corpus_uri)
    except (ManifestError, CorpusError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    store_uri = store or run.spec.artifacts.uri or f"file://{Path.cwd() / DEFAULT_STORE_DIR}"
    printer = ProgressPrinter(out or sys.stdout, quiet=quiet)
    try:
        ex = LocalExecutor(run, store_uri, corpus_uri, progress=printer, isolation=isolation)
    except ValueError as e:
        print(f"error: --store: {e}", file=sys.stderr)
        return 2
    printer.say(f"corpus {run.spec.corpus.uri}: {n_docs} documents; query: {run.spec.query!r}")
    res = ex.execute()
    print_outcome(printer.say, run, res, ex.store)
    if quiet:  # --quiet: only the one-line outcome
        print(f"Run {res.phase}: {res.status.get('message', '')}", file=printer.out, flush=True)
    return 0 if res.phase == "Succeeded" else 1


def parse_budget_args(items: Optional[list[str]]) -> dict[str, str]:
    """``--budget maxSteps=60 --budget maxTokens=5e5`` -> {field: value}; the values are checked
    by the Budget model (``engine.resume.raised_budget``)."""
    out: dict[str, str] = {}
    for item in items or []:
        for part in filter(None, item.split(",")):
            name, sep, value = part.partition("=")
            if not sep or not name.strip() or not value.strip():
                raise ValueError(f"--budget {part!r}: expected FIELD=VALUE, e.g. maxSteps=60")
            out[name.strip()] = value.strip()
    return out


def resume_run(target: str, store: Optional[str] = None, budget: Optional[list[str]] = None,
               out: Optional[TextIO] = None, quiet: bool = False, isolation: Optional[str] = None) -> int:
    """``searchrun run --resume RUN_DIR_OR_UID``: 0 when the resumed run succeeds, 1 when it fails,
    2 for bad input (an unknown run, one still running, a bad budget)."""
    try:
        changes = parse_budget_args(budget)
        store_uri, uid = find_run(target, store)
        st = open_store(store_uri)
        run, fresh, before = prepare(st, uid, changes)
        n_docs = check_corpus(run, run.spec.corpus.uri)
    except (ResumeError, ValueError, CorpusError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    printer = ProgressPrinter(out or sys.stdout, quiet=quiet)
    ex = LocalExecutor(run, store_uri, run.spec.corpus.uri, progress=printer, status=fresh, isolation=isolation)
    replay = Replay(ex.store, uid, before)
    ex.recall.sources.insert(0, replay)
    r = fresh.resumes[-1]
    changed = ", ".join(f"{k} {a:g}->{b:g}" for k, (a, b) in r.budget.items()) or "no budget change"
    printer.say(f"resuming run {uid} as a new run ({r.fromPhase}{', stopped by ' + r.stoppedBy if r.stoppedBy else ''}; "
                f"{len(r.replanned)} step(s) failed or skipped; {changed}); {n_docs} documents")
    res = ex.execute()
    printer.say(f"  kept {replay.kept} step(s) that had succeeded")
    print_outcome(printer.say, run, res, ex.store)
    return 0 if res.phase == "Succeeded" else 1
