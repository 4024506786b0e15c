"""The engine: decides what a run does next. Pure: no I/O, no clock, no Kubernetes.

``reconcile(spec, status, observations, now, run_uid)`` looks at the run's lineage
(``status.steps``) and what the executor observed of its steps, and returns the
updated status plus the steps to start. Both executors (kube, local) only carry
these decisions out, so every rule about the DAG, budgets, retries and fallbacks
lives here and is tested without a cluster.

The status is updated in place (and returned) so that a run of 10,000 steps is
planned in linear time; an index of the lineage is cached on the status object.

Modules: ``types`` (data in and out), ``index`` (the lineage's derived view), ``budget``
(accounting), ``retries`` (failure handling), ``planner`` (the DAG), ``reconcile`` (one
decision). What a step type does with its result is in ``steps/<type>.py``.

The DAG (see DESIGN.md)::

    detect ─┬─ simple ──────────────────────────────► simple ─► report
            └─ plan ─► t0, t1, ... (seeds) ─► t0-0, t0-1 ... ─► aggregate ─► report
                                                 (nothing found: fall back to simple)
"""

from .budget import FAN_IN_RESERVE, MIN_STEP_TOKENS
from .reconcile import lineage_summary, reconcile
from .retries import backoff_delay
from .types import (
    AGGREGATE, DETECT, PLAN, REPORT, SIMPLE, Decision, Event, JobNamer, Observation, StartStep, StepResult,
    iso, parse_time, step_attempt_name,
)

__all__ = [
    "AGGREGATE", "DETECT", "FAN_IN_RESERVE", "MIN_STEP_TOKENS", "PLAN", "REPORT", "SIMPLE", "Decision", "Event",
    "JobNamer", "Observation", "StartStep", "StepResult", "backoff_delay", "iso", "lineage_summary", "parse_time",
    "reconcile", "step_attempt_name",
]
