"""``searchrun get|logs|rerun-step``: look at one run, one step's log, and why a step decided what it did.

They read the run's lineage from the store (``--store``; the offloaded lineage of a cluster run,
a snapshot plus its journal, too), so they work on a run of this machine and on one whose
artifacts are in S3; or, against a cluster, from the SearchRun (``cli_cluster``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional, TextIO

import yaml

from . import cli_cluster
from .api import SearchRunSpec, SearchRunStatus, StepStatus
from .artifacts import ArtifactError, ArtifactNotFound, ArtifactStore, open_store, read_uri, result_key
from .engine.planner import Planner
from .engine.resume import ResumeError
from .engine.types import parse_time
from .executors.base import lineage_key
from .executors.kube.lineage_store import restore_lineage  # pure: the offloaded lineage of a cluster run
from .executors.resume import find_run, load_lineage
from .steps import STEP_ENV, StepContext
from .steps.logcopy import read_input, read_log


class DebugError(ValueError):
    """Bad input to get/logs/rerun-step (the message says which)."""


@dataclass
class Lineage:
    store_uri: Optional[str]
    uid: str
    doc: dict
    status: SearchRunStatus
    cluster: Optional["Cluster"] = None  # a run on a cluster: where its pods are
    source: str = ""
    _store: Optional[ArtifactStore] = None

    @property
    def store(self) -> ArtifactStore:
        if self._store is None:
            if not self.store_uri:
                raise DebugError(f"the artifact store of run {self.name} is unknown (its status names no URI yet): give --store")
            try:
                self._store = open_store(self.store_uri)
            except ValueError as e:
                raise DebugError(f"--store: {e}") from None
        return self._store

    @property
    def name(self) -> str:
        return (self.doc.get("run") or {}).get("name") or self.uid

    def step(self, step_id: str) -> StepStatus:
        for s in self.status.steps:
            if s.id == step_id:
                return s
        raise DebugError(f"run {self.uid} has no step {step_id!r} (steps: {', '.join(s.id for s in self.status.steps[:12])}"
                         f"{', ...' if len(self.status.steps) > 12 else ''})")


@dataclass
class Cluster:
    """Where to find a run on a cluster (``-n``, ``--kubeconfig``, ``--context``)."""
    namespace: Optional[str] = None
    kubeconfig: Optional[str] = None
    context: Optional[str] = None

    def asked(self) -> bool:
        return bool(self.namespace or self.kubeconfig or self.context)


def on_cluster(target: str, store_uri: Optional[str], cluster: Optional[Cluster]) -> bool:
    """A cluster when asked for; else the store when one is given (or a run folder, or
    ./searchrun-runs is here); else the cluster when there is a kubeconfig."""
    if cluster is None:
        return False
    if cluster.asked():
        return True
    if store_uri or "/" in target or Path(target).is_dir() or (Path.cwd() / "searchrun-runs").is_dir():
        return False
    return cli_cluster.kubeconfig_available()


def load_cluster(name: str, store_uri: Optional[str], c: Cluster) -> Lineage:
    try:
        ns, doc, status, uri, source = cli_cluster.load_run(name, c.namespace, c.kubeconfig, c.context, store_uri)
    except cli_cluster.ClusterError as e:
        raise DebugError(str(e)) from None
    return Lineage(uri, doc["run"]["uid"], doc, status, Cluster(ns, c.kubeconfig, c.context), source)


def load(target: str, store_uri: Optional[str], cluster: Optional[Cluster] = None) -> Lineage:
    if on_cluster(target, store_uri, cluster):
        return load_cluster(target, store_uri, cluster)
    try:
        store_uri, uid = find_run(target, store_uri)
        store = open_store(store_uri)
        doc = load_lineage(store, uid)
    except ResumeError as e:
        raise DebugError(str(e)) from None
    except ValueError as e:
        raise DebugError(f"--store: {e}") from None
    if doc.get("journal"):  # a cluster run's offloaded lineage: the snapshot and the journal after it
        status, _, _ = restore_lineage({"lineageURI": store.uri_for(lineage_key(uid))}, read_uri)
    else:
        status = SearchRunStatus.model_validate(doc["status"])
    return Lineage(store_uri, uid, doc, status, _store=store, source=f"store {store_uri}")


# -- get


def _seconds(s: StepStatus) -> str:
    a, b = parse_time(s.startedAt), parse_time(s.finishedAt)
    return f"{(b - a).total_seconds():.1f}s" if a and b else "-"


def _result(s: StepStatus) -> str:
    if s.found:
        return "found"
    if s.type == "traverse_node" and s.phase == "Succeeded":
        return "dead end" if not s.next else "not found"
    return "-"


def _reuse(s: StepStatus) -> str:
    if s.cachedFrom is not None:
        return f"cached {s.cachedFrom.run}/{s.cachedFrom.step}"
    if s.keptFrom is not None:
        return f"kept {s.keptFrom.run}/{s.keptFrom.step}"
    return ""


def tree_rows(status: SearchRunStatus) -> list[tuple[str, StepStatus]]:
    """(indent, step) in tree order: a step under its first parent; a fan-in (several parents) at the top."""
    ids = {s.id for s in status.steps}
    children: dict[Optional[str], list[StepStatus]] = {}
    for s in status.steps:
        parent = s.parents[0] if len(s.parents) == 1 and s.parents[0] in ids else None
        children.setdefault(parent, []).append(s)
    rows: list[tuple[str, StepStatus]] = []

    def walk(parent: Optional[str], prefix: str) -> None:
        kids = children.get(parent, [])
        for i, s in enumerate(kids):
            last = i == len(kids) - 1
            branch = "" if parent is None else ("└─ " if last else "├─ ")
            rows.append((prefix + branch, s))
            walk(s.id, prefix + ("" if parent is None else ("   " if last else "│  ")))

    walk(None, "")
    return rows


def print_get(lin: Lineage, out: TextIO) -> None:
    st = lin.status
    w = lambda line="": print(line, file=out)  # noqa: E731
    w(f"Name:      {lin.name}")
    where = f"{lin.cluster.namespace}/{lin.name}, " if lin.cluster else ""
    w(f"Run:       {lin.uid}   ({where}from {lin.source})")
    w(f"Phase:     {st.phase}   {st.message or ''}")
    w(f"Steps:     {len(st.steps)}   tokens {st.tokens}   cost ${st.costUSD:.4f}"
      + (f"   stopped by {st.stoppedBy}" if st.stoppedBy else ""))
    saved = sum(s.tokensSaved or 0 for s in st.steps)
    cached = sum(1 for s in st.steps if s.cachedFrom is not None)
    if cached:
        w(f"Cache:     {cached} step(s) cached, {saved} tokens saved")
    for r in st.resumes:
        changes = ", ".join(f"{k} {a:g}->{b:g}" for k, (a, b) in r.budget.items()) or "no budget change"
        w(f"Resumed:   {r.at} by {r.by or '?'} from {r.fromRun or '?'} ({r.fromPhase}; {changes}; "
          f"{len(r.replanned)} replanned)")
    w()
    rows = [(f"{ind}{s.id}", s) for ind, s in tree_rows(st)]
    width = max([len("STEP")] + [len(n) for n, _ in rows]) + 2
    w(f"{'STEP':<{width}}{'TYPE':<19}{'DOC':<34}{'PHASE':<11}{'ATT':<5}{'DURATION':<10}{'TOKENS':<8}{'RESULT':<11}DECISION")
    for name, s in rows:
        decision = (s.decision or s.message or "")[:70]
        extra = _reuse(s)
        w(f"{name:<{width}}{s.type:<19}{(s.doc or '-')[:32]:<34}{s.phase:<11}{s.attempts:<5}{_seconds(s):<10}"
          f"{s.tokens:<8}{_result(s):<11}{decision}{'  [' + extra + ']' if extra else ''}")


def get_command(target: str, store: Optional[str], output: Optional[str], out: TextIO = sys.stdout,
                cluster: Optional[Cluster] = None) -> int:
    try:
        lin = load(target, store, cluster)
    except DebugError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if output in ("json", "yaml"):
        doc = {**lin.doc, "status": lin.status.model_dump(mode="json", exclude_none=True)}
        doc.pop("journal", None)
        out.write(json.dumps(doc, indent=2) + "\n" if output == "json" else yaml.safe_dump(doc, sort_keys=False))
        return 0
    print_get(lin, out)
    return 0


# -- logs


def _stored_log(store: ArtifactStore, run: str, sid: str, att: int, exact: bool) -> str:
    """The stored log of attempt ``att``; unless ``exact``, of the latest attempt up to it that has
    one (on a cluster, the pods a Job retries write under the attempt the Job was created for)."""
    for a in ([att] if exact else range(att, 0, -1)):
        try:
            return read_log(store, run, sid, a)
        except ArtifactNotFound:
            if exact or a == 1:
                raise
    raise ArtifactNotFound(f"no log of {sid}")


def logs_command(target: str, step_id: str, store: Optional[str], attempt: Optional[int] = None,
                 out: TextIO = sys.stdout, cluster: Optional[Cluster] = None) -> int:
    try:
        lin = load(target, store, cluster)
        s = lin.step(step_id)
    except DebugError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    run, sid, att = lin.uid, s.id, attempt or s.attempts
    src = s.cachedFrom or s.keptFrom
    if src is not None and attempt is None:
        print(f"# {s.id} was {'a cache hit' if s.cachedFrom else 'kept by a resume'}: the log of {src.run}/{src.step} "
              f"attempt {src.attempt}", file=out)
        run, sid, att = src.run, src.step, src.attempt
    if att < 1:
        print(f"error: step {s.id} never started ({s.phase}: {s.message or 'no attempt'})", file=sys.stderr)
        return 1
    if lin.cluster is not None and src is None and attempt is None:  # the pod while it lives
        c = lin.cluster
        live = cli_cluster.live_log(c.kubeconfig, c.context, c.namespace, lin.uid, s)
        if live is not None:
            print(f"# the log of pod {c.namespace}/{live[0]} (live)", file=sys.stderr)
            out.write(live[1])
            return 0
    try:
        text = _stored_log(lin.store, run, sid, att, exact=attempt is not None)
        if lin.cluster is not None:
            print(f"# the copy in the store ({lin.store_uri}): the step's pod is gone", file=sys.stderr)
        out.write(text)
    except DebugError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except ArtifactNotFound:
        print(f"error: no log of step {sid} attempt {att} in the store (a step writes it when it ends; "
              "a pod killed before that has none)", file=sys.stderr)
        return 1
    except (ArtifactError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


# -- rerun-step


def recorded_input(lin: Lineage, s: StepStatus) -> dict:
    """The step's input as its entrypoint stored it; else rebuilt from the lineage as the engine built it."""
    ref = s.cachedFrom or s.keptFrom
    tries = [(ref.run, ref.step, ref.attempt)] if ref else []
    tries += [(lin.uid, s.id, a) for a in range(max(1, s.attempts), 0, -1)]  # a Job's retried pods: the Job's attempt
    for run, sid, att in tries:
        try:
            return read_input(lin.store, run, sid, max(1, att))
        except (ArtifactError, ValueError):
            continue
    spec = SearchRunSpec.model_validate(lin.doc["spec"])
    p = Planner(spec, lin.status, datetime.now(timezone.utc), lin.uid)
    return dict(p.start_action(s).input)


def rerun_command(target: str, step_id: str, store: Optional[str], out: TextIO = sys.stdout,
                  step_command: Optional[list[str]] = None, cluster: Optional[Cluster] = None) -> int:
    try:
        lin = load(target, store, cluster)
        s = lin.step(step_id)
        if "spec" not in lin.doc:
            raise DebugError(f"the lineage of run {lin.uid} has no spec (written by an older searchrun)")
    except DebugError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    spec = SearchRunSpec.model_validate(lin.doc["spec"])
    step_input = {**recorded_input(lin, s), "attempt": 1}
    scratch = Path(tempfile.mkdtemp(prefix="searchrun-rerun-"))
    scratch_uri, uid = f"file://{scratch}", uuid.uuid4().hex[:16]
    scratch_store = open_store(scratch_uri)
    if "create_report" == s.type:  # it reads the run's lineage from its own store
        scratch_store.put_json(lineage_key(uid), lin.doc, overwrite=True)
    ctx = StepContext(run_uid=uid, run_name=lin.name, query=spec.query, corpus=spec.corpus, agent=spec.agent,
                      store_uri=scratch_uri, step=step_input)
    env = {**os.environ, STEP_ENV: ctx.to_json()}
    env.pop("SEARCHRUN_FAIL_STEPS", None)
    proc = subprocess.run(step_command or [sys.executable, "-m", "searchrun", "step"], env=env, capture_output=True,
                          text=True, timeout=spec.steps.timeoutSeconds + 30)
    w = lambda line="": print(line, file=out)  # noqa: E731
    w(f"rerun of {lin.uid}/{s.id} ({s.type}{' doc=' + s.doc if s.doc else ''}) into {scratch_uri}")
    if proc.returncode != 0:
        w(f"  the step failed: {(proc.stderr.strip().splitlines() or ['exit ' + str(proc.returncode)])[-1]}")
        w(f"  recorded: {s.phase} {s.decision or s.message or ''}")
        return 1
    new = json.loads(scratch_store.get_bytes(result_key(uid, s.id, 1)))
    rows = [("decision", s.decision or "", new.get("decision", "")), ("found", s.found, new.get("found")),
            ("tokens", s.tokens or s.tokensSaved or 0, new.get("tokens", 0)), ("next", ", ".join(s.next), ", ".join(new.get("next", [])))]
    if s.type == "traverse_node":
        rows.append(("note", s.note or "", new.get("note", "")))
    w(f"  {'':<10}{'RECORDED':<50}RERUN")
    for name, a, b in rows:
        mark = "" if str(a) == str(b) or (name == "decision" and str(b) and str(a).startswith(str(b))) else "  ≠"
        w(f"  {name:<10}{str(a)[:48]:<50}{str(b)[:60]}{mark}")
    w(f"  output: {new.get('output', '-')}")
    w(f"  log:    {scratch / 'runs' / uid / 'steps' / s.id / 'a1' / 'log.txt'}")
    return 0
