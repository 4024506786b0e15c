"""Resuming a local run from its store: find the run, plan it again as a new run (a new uid: the
run before stays as it was), and answer the steps that had succeeded with their recorded results
(``Replay``), so only what failed, was skipped or was never planned runs. The rules (what may be resumed, the budget, the status) are ``engine.resume``'s."""

from __future__ import annotations

import dataclasses
import getpass
import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Mapping, Optional

from ..api import ObjectMeta, SearchRun, SearchRunSpec, SearchRunStatus, StepPhase
from ..artifacts import ArtifactError, ArtifactNotFound, ArtifactStore, open_store, run_key
from ..engine.resume import ResumeError, resume
from ..engine.types import Observation, Reuse, StartStep
from ..steps import LINEAGE_NAME, registry
from .base import committed_observation, read_committed


class Replay:
    """The steps that succeeded before the resume, answered from their committed results. A step
    is kept only where the new plan has it with the same type, document and parents; the steps that
    read the lineage (the report) always run again."""

    def __init__(self, store: ArtifactStore, run_uid: str, before: SearchRunStatus):
        self.store, self.run_uid = store, run_uid
        self.before = {s.id: s for s in before.steps
                       if s.phase == StepPhase.Succeeded.value and not registry.kind_of(s.type).needs_lineage}
        self.kept = 0

    def lookup(self, action: StartStep) -> Optional[Observation]:
        s = self.before.get(action.step_id)
        if (s is None or s.type != action.step_type or s.doc != action.input.get("doc")
                or list(s.parents) != list(action.input.get("parents", []))):
            return None
        origin = s.keptFrom.run if s.keptFrom is not None else self.run_uid  # kept by an earlier resume
        found = self._committed(origin, s)
        if found is None:
            return None  # its commit is gone or damaged: run it again
        attempt, raw = found
        obs = committed_observation(action.step_id, action.attempt, raw, attempts=max(s.attempts, action.attempt))
        if s.cachedFrom is not None:  # a cache hit stays one (its tokens are not this run's)
            reuse = Reuse("cache", s.cachedFrom.run, s.cachedFrom.step, s.cachedFrom.attempt, s.tokensSaved or 0)
        else:
            reuse = Reuse("kept", origin, s.id, attempt, job=s.job)
        self.kept += 1
        return dataclasses.replace(obs, reused=reuse)


    def _committed(self, origin: str, s) -> Optional[tuple[int, bytes]]:
        """The attempt whose commit succeeded, and its bytes. Locally a step's last attempt made
        it; a Job's pods all commit under the attempt the Job was made for, while ``attempts``
        also counts its pod retries: so the last attempt first, then the ones before."""
        for attempt in range(s.attempts, 0, -1):
            try:
                raw = read_committed(self.store, origin, s.id, attempt)
            except ArtifactError:
                return None
            if raw is not None and committed_observation(s.id, attempt, raw).state == "succeeded":
                return attempt, raw
        return None


def find_run(target: str, store_uri: Optional[str]) -> tuple[str, str]:
    """``RUN_DIR_OR_UID`` -> (store URI, run uid). A run directory is ``<store>/runs/<uid>``."""
    p = Path(target)
    if p.is_dir() and (p / LINEAGE_NAME).is_file() and p.parent.name == "runs":
        return f"file://{p.resolve().parent.parent}", p.resolve().name
    if "/" in target:
        raise ResumeError(f"{target}: not a run directory (<store>/runs/<uid> holding {LINEAGE_NAME})")
    return store_uri or f"file://{Path.cwd() / 'searchrun-runs'}", target


def load_lineage(store: ArtifactStore, run_uid: str) -> dict:
    try:
        key = run_key(run_uid, LINEAGE_NAME)
    except ValueError:
        raise ResumeError(f"{run_uid!r} is not a run uid") from None
    try:
        return json.loads(store.get_bytes(key))
    except ArtifactNotFound:
        raise ResumeError(f"no run {run_uid} in {getattr(store, 'uri', store)} (no {key})") from None
    except (ArtifactError, ValueError) as e:
        raise ResumeError(f"the lineage of run {run_uid} cannot be read: {e}") from None


def prepare(store: ArtifactStore, run_uid: str, changes: Mapping[str, str], now: Optional[datetime] = None,
            by: Optional[str] = None) -> tuple[SearchRun, SearchRunStatus, SearchRunStatus]:
    """The run to execute again (budget raised), its fresh status and the status before."""
    doc = load_lineage(store, run_uid)
    if "spec" not in doc:
        raise ResumeError(f"the lineage of run {run_uid} has no spec (written by an older searchrun): it cannot be resumed")
    spec = SearchRunSpec.model_validate(doc["spec"])
    before = SearchRunStatus.model_validate(doc["status"])
    spec, fresh = resume(spec, before, changes, now or datetime.now(timezone.utc), by=by or _user(), from_run=run_uid)
    name = (doc.get("run") or {}).get("name") or "searchrun"
    return SearchRun(metadata=ObjectMeta(name=name), spec=spec), fresh, before


def _user() -> Optional[str]:
    try:
        return getpass.getuser()
    except Exception:  # no user name in a container without one
        return None
