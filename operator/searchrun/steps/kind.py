"""What a step type is: how one of its steps runs (in a Job or a local process), and what the
engine makes of its result. One module per type under ``steps/``, one line in ``registry``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional

from ..api import Budget, StepStatus
from ..engine.types import StepResult

if TYPE_CHECKING:  # pragma: no cover
    from ..engine.planner import Planner
    from .context import StepContext
    from .io import StepIO


class StepKind:
    type: str = ""
    # A search step (traversal): spends the search budget, is skipped once a global budget is
    # spent, its document counts as visited, and its timeout is cut at the run's deadline.
    search: bool = False
    # The executor writes the full lineage before the step starts (the step reads it).
    needs_lineage: bool = False
    # Where the report draws its steps: (band, order in band, row label); None: by depth.
    report_row: Optional[tuple[int, int, str]] = None

    def k(self, budget: Budget) -> int:
        """How many results the step may propose (its ``k`` input)."""
        return budget.maxAgents

    def extra_input(self, run: "Planner", step: StepStatus) -> dict[str, Any]:
        """Input fields of this type beyond the common ones (engine side, pure)."""
        return {}

    def record(self, run: "Planner", step: StepStatus, result: StepResult) -> None:
        """Copy this type's fields of a successful result into the lineage (engine side, pure)."""

    def expand(self, run: "Planner", step: StepStatus, ok: bool) -> None:
        """What follows a finished step (engine side, pure). ``ok``: it succeeded."""

    def run(self, ctx: "StepContext", io: "StepIO") -> StepResult:
        """Do the step's work (step side): read through ``io``, write the output once."""
        raise NotImplementedError(self.type)
