"""The SearchRun status: the lineage and the run's accounting, written by the operator."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from enum import Enum
from typing import Annotated, Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, field_serializer, field_validator, model_validator

from ..corpus import BUILTIN_CORPORA
from .base import MAX_NOTE_CHARS, MAX_RELATION_CHARS, MAX_REASON_CHARS, Model

# ------------------------------------------------------------------- status


class Phase(str, Enum):
    Pending = "Pending"
    Running = "Running"
    Succeeded = "Succeeded"
    Failed = "Failed"


class StepPhase(str, Enum):
    Queued = "Queued"          # decided, waiting for a parallel slot
    Backoff = "Backoff"        # failed, waiting to retry
    Running = "Running"        # its Job / process exists
    Succeeded = "Succeeded"
    Failed = "Failed"          # out of attempts
    Skipped = "Skipped"        # decided but never run (a budget stopped the run)


TERMINAL_STEP_PHASES = {StepPhase.Succeeded.value, StepPhase.Failed.value, StepPhase.Skipped.value}


class Proposal(Model):
    """A child a traversal step proposes: the document, the link that leads there, and why."""

    doc: str = Field(min_length=1, max_length=256)
    via: str = Field(default="", max_length=MAX_RELATION_CHARS)
    why: str = Field(default="", max_length=MAX_REASON_CHARS)


class StepRef(Model):
    """Where a reused result came from: a run's step attempt."""

    run: str = Field(max_length=64)
    step: str = Field(max_length=256)
    attempt: int = Field(default=1, ge=1)


class StepStatus(Model):
    """One node of the lineage."""

    id: str = Field(description="deterministic step path, e.g. t0-1")
    type: str = Field(max_length=64, pattern=r"^[a-z][a-z0-9_]*$",
                      description="step type (the operator's step registry: detect_intent, plan_search, traverse_node, ...)")
    parents: list[str] = Field(default_factory=list)
    depth: int = 0
    doc: Optional[str] = Field(default=None, description="document this step looks at (traverse_node)")
    phase: StepPhase = StepPhase.Queued
    attempts: int = 0
    job: Optional[str] = Field(default=None, description="Job (or process) name of the current attempt")
    notBefore: Optional[str] = None
    startedAt: Optional[str] = None
    finishedAt: Optional[str] = None
    tokens: int = 0
    costUSD: float = 0.0
    tokenAllowance: int = 0
    output: Optional[str] = Field(default=None, description="URI of the step's output artifact")
    decision: Optional[str] = Field(default=None, description="short human summary: found, deeper, dead end, ...")
    found: Optional[bool] = None
    score: Optional[float] = Field(default=None, ge=0.0, le=1.0, description="traverse_node: the agent's score of its document with its path (a weak match's children wait a wave)")
    next: list[str] = Field(default_factory=list, description="documents the agent proposed to explore next")
    proposals: list["Proposal"] = Field(default_factory=list, description="traverse_node: the proposed children, with the link to follow and why")
    via: Optional[str] = Field(default=None, max_length=MAX_RELATION_CHARS, description="traverse_node: the relationship kind followed from the parent's document")
    why: Optional[str] = Field(default=None, max_length=MAX_REASON_CHARS, description="traverse_node: why the parent proposed this document")
    note: Optional[str] = Field(default=None, max_length=MAX_NOTE_CHARS, description="traverse_node: the note passed to its children (what is established, what is open)")
    expanded: bool = False
    message: Optional[str] = None
    cachedFrom: Optional[StepRef] = Field(default=None, description="the step was a cache hit: its result is this step's (no Job, no tokens)")
    tokensSaved: Optional[int] = Field(default=None, ge=0, description="cache hit: the tokens the cached step spent")
    keptFrom: Optional[StepRef] = Field(default=None, description="resumed run: the step succeeded before the resume and was kept")


class BudgetUsage(Model):
    agents: int = 0
    depth: int = 0
    steps: int = 0
    parallel: int = 0
    tokens: int = 0
    costUSD: float = 0.0
    elapsedSeconds: float = 0.0


class Condition(Model):
    type: str
    status: Literal["True", "False", "Unknown"]
    reason: str = ""
    message: str = ""
    lastTransitionTime: Optional[str] = None


class LineageSummary(Model):
    steps: int = 0
    byType: dict[str, int] = Field(default_factory=dict)
    byPhase: dict[str, int] = Field(default_factory=dict)


class Resume(Model):
    """One resume of the run: when, by whom if known, and what changed."""

    at: str
    by: Optional[str] = Field(default=None, max_length=253)
    fromRun: Optional[str] = Field(default=None, max_length=64, description="the run (uid) resumed: its succeeded steps were kept")
    fromPhase: str
    stoppedBy: Optional[str] = None
    budget: dict[str, list[float]] = Field(default_factory=dict, description="budget fields changed: [old, new]")
    replanned: list[str] = Field(default_factory=list, description="steps that had Failed or were Skipped (first 100)")
    stepsBefore: int = 0
    token: Optional[str] = Field(default=None, max_length=32, description="cluster: the retry token (metadata.annotations[searchrun.dev/retry]) this resume answered")
    epoch: Optional[int] = Field(default=None, ge=1, description="cluster: the resumed run's epoch; its Jobs and artifacts are under the run id <uid>-r<epoch>")


class WavePlan(Model):
    """A wave of traversal steps planned over several passes (``engine.planner.WAVE_CHUNK`` new
    steps a pass, to bound the operator's memory): the budget as it stood when the wave's
    planning began, so that each part of it gets the token allowances one pass would give."""

    tokens: int = Field(ge=0, description="tokens used when the wave's planning began")
    costUSD: float = Field(ge=0, description="cost when the wave's planning began")
    reserved: int = Field(ge=0, description="tokens reserved by the steps in flight then, plus the allowances of the wave's steps planned so far")


class SearchRunStatus(Model):
    phase: Phase = Phase.Pending
    intent: Optional[Literal["simple", "deep"]] = None
    message: Optional[str] = None
    stoppedBy: Optional[str] = Field(default=None, description="the budget that stopped the run, if one did")
    limitsHit: list[str] = Field(default_factory=list, description="budgets and limits that trimmed the search")
    fallback: Optional[str] = Field(default=None, description="why the run fell back to simple search")
    escalated: Optional[str] = Field(default=None, description="why a simple search went on to a deep search (it found nothing)")
    startedAt: Optional[str] = None
    finishedAt: Optional[str] = None
    budgetUsed: BudgetUsage = Field(default_factory=BudgetUsage)
    budgetRemaining: BudgetUsage = Field(default_factory=BudgetUsage)
    stepCount: int = 0
    maxDepthReached: int = 0
    tokens: int = 0
    costUSD: float = 0.0
    steps: list[StepStatus] = Field(default_factory=list)
    lineageURI: Optional[str] = Field(default=None, description="full lineage, when it is too big for status")
    lineageSummary: Optional[LineageSummary] = None
    reportURI: Optional[str] = None
    answers: int = 0
    conditions: list[Condition] = Field(default_factory=list)
    resumes: list[Resume] = Field(default_factory=list, description="each resume of the run, oldest first")
    wavePlan: Optional[WavePlan] = Field(default=None, description="set while a wave of traversal steps is being planned over several passes")
    observedGeneration: Optional[int] = None

    @field_serializer("steps", mode="wrap")
    def _dump_steps(self, steps, handler):
        """A large run's finished steps may be held compact (``engine.settled``): dumped as models."""
        return handler([s if isinstance(s, StepStatus) else s.model() for s in steps])
