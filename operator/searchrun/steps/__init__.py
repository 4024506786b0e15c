"""Step types and the step entrypoint.

``registry`` lists the step types; each type's module (``detect_intent``, ``plan_search``,
``traverse_node``, ``simple_search``, ``aggregate_results``, ``create_report``) says how its
steps run and what the engine makes of their results. ``entrypoint.main`` is what a Job runs.
"""

# The registry first: it imports the step type modules, and create_report refers back to it.
from .registry import kind_of, register, step_types  # noqa: I001
from .context import EXIT_PERMANENT, LINEAGE_NAME, REPORT_HTML, REPORT_JSON, STEP_ENV, PermanentStepError, StepContext, StepError
from .create_report import report_data
from .entrypoint import RESULT_LIMIT, main, run_step
from .io import StepIO
from .kind import StepKind

__all__ = [
    "EXIT_PERMANENT", "LINEAGE_NAME", "PermanentStepError", "REPORT_HTML", "REPORT_JSON", "RESULT_LIMIT", "STEP_ENV", "StepContext", "StepError", "StepIO",
    "StepKind", "kind_of", "main", "register", "report_data", "run_step", "step_types",
]
