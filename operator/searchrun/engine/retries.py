"""Per-step failure handling: retry with exponential backoff, or give up."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

from ..api import StepPhase, StepStatus
from ..steps import registry  # the module: step types import engine.types while it loads
from .types import Event, Observation, iso, parse_time

if TYPE_CHECKING:  # pragma: no cover
    from .planner import Planner


def backoff_delay(settings_backoff: float, backoff_max: float, failed_attempts: int) -> float:
    """Exponential backoff: base, 2*base, 4*base ... capped."""
    return min(backoff_max, settings_backoff * (2 ** max(0, failed_attempts - 1)))


def on_failure(run: "Planner", s: StepStatus, obs: Observation) -> None:
    """A failed attempt: back off and retry, or (out of attempts, or a final failure) fail."""
    steps = run.spec.steps
    msg = (obs.message or "failed")[:500]
    search_over = registry.kind_of(s.type).search and run.budget.past_deadline()
    if obs.final or s.attempts > steps.retries or search_over:
        s.message = f"failed after {s.attempts} attempt(s): {msg}"
        run.set_phase(s, StepPhase.Failed)
        run.events.append(Event("StepFailed", f"{s.type} {s.id} {s.message}", "Warning"))
        return
    delay = backoff_delay(steps.backoffSeconds, steps.backoffMaxSeconds, s.attempts)
    s.notBefore = iso(run.now + timedelta(seconds=delay))
    s.message = f"attempt {s.attempts} failed: {msg}; retrying in {delay:g}s"
    run.set_phase(s, StepPhase.Backoff)
    run.events.append(Event("StepRetry", f"{s.type} {s.id} {s.message}", "Warning"))


def release_backoffs(run: "Planner") -> None:
    """Steps whose backoff is over queue again."""
    for sid in sorted(run.idx.backoff):
        s = run.idx.by_id[sid]
        if parse_time(s.notBefore) <= run.now:
            s.notBefore = None
            run.set_phase(s, StepPhase.Queued)
