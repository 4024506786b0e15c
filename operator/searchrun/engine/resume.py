"""Resuming a run: what a resume may change, and the status it starts from. Pure.

A resume plans the run again from the beginning, under the (possibly raised) budget, as a new
attempt of the run (its own uid for artifacts and Job names, so that nothing it starts meets a
Job or a commit of the attempt before); the executor answers each step that had succeeded with its recorded result (``Reuse('kept')``), so
succeeded steps are not run again, and the steps that Failed, were Skipped or were never planned
because a budget stopped the run are planned as a fresh run would plan them. Runs are
reproducible (waves in step-id order, allowances fixed at planning), so the kept steps get the
same ids they had. The fan-in (aggregate, report) runs again when its inputs changed.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Mapping, Optional

from pydantic import ValidationError

from ..api import BUDGET_FIELDS, Budget, Phase, Resume, SearchRunSpec, SearchRunStatus, StepRef, StepStatus
from .types import P_FAILED, P_SKIPPED, Reuse, iso

MAX_REPLANNED_LISTED = 100


class ResumeError(ValueError):
    """The run cannot be resumed as asked (the message says why and what to do)."""


def mark_reused(s: StepStatus, reuse: Reuse) -> None:
    ref = StepRef(run=reuse.run, step=reuse.step, attempt=max(1, reuse.attempt))
    if reuse.how == "cache":
        s.cachedFrom, s.tokensSaved = ref, reuse.tokens_saved
    else:
        s.keptFrom = ref
        if reuse.job:  # the step's Job is the one that ran it, not a name of this attempt that was never made
            s.job = reuse.job


def raised_budget(budget: Budget, changes: Mapping[str, str]) -> Budget:
    """The budget with ``changes`` (field -> value, as typed) applied, validated like any budget."""
    for name in changes:
        if name not in BUDGET_FIELDS:
            raise ResumeError(f"--budget {name}: not a budget field (one of {', '.join(BUDGET_FIELDS)})")
    try:
        return Budget.model_validate({**budget.model_dump(), **dict(changes)})
    except ValidationError as e:
        err = e.errors()[0]
        where = ".".join(str(x) for x in err.get("loc", ())) or "budget"
        raise ResumeError(f"--budget {where}: {err.get('msg')}".replace("Value error, ", "")) from None


def resumable(status: SearchRunStatus) -> None:
    """Raise ResumeError unless the run Failed or was stopped by a budget or deadline (or has
    steps that Failed or were Skipped)."""
    if status.phase in (Phase.Pending.value, Phase.Running.value):
        raise ResumeError(f"the run is still {status.phase}: only a finished run (Failed, or stopped by a budget "
                          "or deadline) can be resumed")
    if status.phase == Phase.Succeeded.value and not status.stoppedBy and not _replanned(status):
        raise ResumeError("the run Succeeded with every step done and no budget stopped it: nothing to resume")


def _replanned(status: SearchRunStatus) -> list[str]:
    return [s.id for s in status.steps if s.phase in (P_FAILED, P_SKIPPED)]


def resume(spec: SearchRunSpec, status: SearchRunStatus, changes: Mapping[str, str], now: datetime,
           by: Optional[str] = None, from_run: Optional[str] = None) -> tuple[SearchRunSpec, SearchRunStatus]:
    """The spec (budget raised by ``changes``) and the fresh status a resumed run starts from.

    The deadline counts the run's active time: the new status starts as long before ``now`` as
    the run had already run. Raises ResumeError for a run that cannot be resumed, a bad budget, or a
    run stopped by a budget that the resume does not raise (it would stop at once again)."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    resumable(status)
    budget = raised_budget(spec.budget, changes)
    replanned = _replanned(status)
    stopped = status.stoppedBy
    failed = any(s.phase == P_FAILED for s in status.steps)
    if stopped in BUDGET_FIELDS and not failed and status.phase != Phase.Failed.value:  # skipped steps would stop again
        if getattr(budget, stopped) <= getattr(spec.budget, stopped):
            raise ResumeError(f"the run was stopped by budget.{stopped} ({getattr(spec.budget, stopped)}): "
                              f"raise it, e.g. --budget {stopped}={_suggest(spec.budget, stopped)}")
    changed = {k: [getattr(spec.budget, k), getattr(budget, k)] for k in BUDGET_FIELDS
               if getattr(spec.budget, k) != getattr(budget, k)}
    elapsed = status.budgetUsed.elapsedSeconds
    record = Resume(at=iso(now), by=by, fromRun=from_run, fromPhase=status.phase, stoppedBy=stopped, budget=changed,
                    replanned=replanned[:MAX_REPLANNED_LISTED], stepsBefore=len(status.steps))
    fresh = SearchRunStatus(startedAt=iso(now - timedelta(seconds=elapsed)),
                            resumes=[*status.resumes, record])
    return spec.model_copy(update={"budget": budget}), fresh


def _suggest(budget: Budget, name: str) -> str:
    v = getattr(budget, name)
    info = Budget.model_fields[name]
    high = next((m.le for m in info.metadata if getattr(m, "le", None) is not None), None)
    want = v * 2
    if high is not None:
        want = min(want, high)
    return str(int(want) if float(want).is_integer() else want)
