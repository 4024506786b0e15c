"""Prometheus metrics of the operator (names follow Prometheus conventions)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from .api import BUDGET_FIELDS
from .steps.registry import step_types

REGISTRY = CollectorRegistry(auto_describe=True)

RUNS = Gauge("searchrun_runs", "SearchRuns known to the operator, by phase.", ["phase"], registry=REGISTRY)
STEPS_CREATED = Counter("searchrun_steps_created_total", "Step Jobs created, by step type.", ["step_type"], registry=REGISTRY)
STEPS_FINISHED = Counter("searchrun_steps_finished_total", "Steps finished, by step type and outcome.", ["step_type", "outcome"], registry=REGISTRY)
FANOUT = Histogram("searchrun_fanout_per_node", "Children spawned by one step (plan or traverse).",
                   buckets=(0, 1, 2, 3, 4, 5, 6, 8, 10), registry=REGISTRY)
DEPTH = Histogram("searchrun_depth_reached", "Deepest traversal level of a finished run.", buckets=(0, 1, 2, 3, 4, 5), registry=REGISTRY)
ACTIVE_JOBS = Gauge("searchrun_active_jobs", "Step Jobs running now.", registry=REGISTRY)
STEP_JOBS_RECREATED = Counter("searchrun_step_jobs_recreated_total",
                              "Step Jobs of running steps created again because they were gone (deleted by hand).", registry=REGISTRY)
STEP_DURATION = Histogram("searchrun_step_duration_seconds", "Wall time of a step Job, by step type.", ["step_type"],
                          buckets=(0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600), registry=REGISTRY)
TOKENS = Counter("searchrun_tokens_total", "Tokens spent by steps, by namespace.", ["namespace"], registry=REGISTRY)
COST = Counter("searchrun_cost_usd_total", "Cost of steps in US dollars, by namespace.", ["namespace"], registry=REGISTRY)
BUDGET_EXHAUSTED = Counter("searchrun_budget_exhaustions_total", "Runs stopped or trimmed by a budget, by budget.", ["budget"], registry=REGISTRY)
ADMISSION_REJECTIONS = Counter("searchrun_admission_rejections_total", "SearchRuns rejected at admission, by reason.", ["reason"], registry=REGISTRY)
ADMISSION_CLAMPS = Counter("searchrun_admission_clamps_total", "SearchRuns whose budgets were clamped at admission.", registry=REGISTRY)
DECISION_SECONDS = Histogram("searchrun_engine_decision_seconds", "Time the engine takes for one decision.",
                             buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1), registry=REGISTRY)
RECONCILE_SECONDS = Histogram("searchrun_reconcile_seconds", "Time of one reconcile of a run, API calls included.",
                              buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5), registry=REGISTRY)
STEP_QUEUE = Histogram("searchrun_step_queue_seconds",
                       "Time from a step Job's create to its pod created (pod_created), its pod running (pod_running) "
                       "and the Job complete (complete): the cluster's share of a step.", ["phase"],
                       buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1800), registry=REGISTRY)
STEP_HANDOFF = Histogram("searchrun_step_handoff_seconds",
                         "Time from a finished step Job (or group Job index) seen by the operator to each Job the pass that applied it created: "
                         "the operator's share.", buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
                         registry=REGISTRY)
CACHE_HITS = Counter("searchrun_cache_hits_total", "Steps answered from the step cache (no Job), by step type.", ["step_type"], registry=REGISTRY)
CACHE_TOKENS_SAVED = Counter("searchrun_cache_tokens_saved_total", "Tokens the cached steps had spent (not spent again).", registry=REGISTRY)

# Every labelled series exists from the start at 0, so that increase() sees the first event.
for phase in ("Pending", "Running", "Succeeded", "Failed"):
    RUNS.labels(phase=phase).set(0)
for _t in step_types():
    STEPS_CREATED.labels(step_type=_t)
    STEP_DURATION.labels(step_type=_t)
    CACHE_HITS.labels(step_type=_t)
    for _o in ("succeeded", "failed"):
        STEPS_FINISHED.labels(step_type=_t, outcome=_o)
for _p in ("pod_created", "pod_running", "complete"):  # queue_metrics.QUEUE_PHASES
    STEP_QUEUE.labels(phase=_p)
for _b in BUDGET_FIELDS:
    BUDGET_EXHAUSTED.labels(budget=_b)
for _r in ("invalid", "cap", "corpus", "agent", "immutable", "retry"):
    ADMISSION_REJECTIONS.labels(reason=_r)


def serve(port: int, addr: str = "0.0.0.0") -> None:
    start_http_server(port, addr=addr, registry=REGISTRY)
