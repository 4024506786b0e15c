"""The SearchRun spec: what a user writes."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from enum import Enum
from typing import Annotated, Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ..corpus import BUILTIN_CORPORA
from .base import MAX_QUERY_CHARS, MAX_NOTE_CHARS, CORPUS_URI_PATTERN, QUERY_CONTROL, query_problem, corpus_uri_problem, DEFAULT_IMAGE, Model, _INVISIBLE


# --------------------------------------------------------------------- spec


class CorpusFormat(str, Enum):
    json = "json"
    markdown = "markdown"


class CorpusRef(Model):
    """Where the document graph lives.

    ``builtin:sample`` is the sample corpus shipped in the package (and in
    ``examples/``); ``s3://bucket/key`` works everywhere; a path or ``file://``
    URI only works for local runs (a path is relative to the manifest).
    """

    uri: str = Field(
        default="builtin:sample",
        min_length=1,
        max_length=1024,
        pattern=CORPUS_URI_PATTERN,
        description="builtin:NAME, s3://bucket/key, file:///path or a local path",
    )
    format: CorpusFormat = Field(
        default=CorpusFormat.json,
        description="json: a document graph file; markdown: a folder of .md files whose links are edges (local runs)",
    )

    @field_validator("uri", mode="before")
    @classmethod
    def _readable_uri(cls, v: Any) -> Any:
        why = corpus_uri_problem(v)
        if why:
            raise ValueError(why)
        return v

    @model_validator(mode="after")
    def _markdown_is_a_folder(self) -> "CorpusRef":
        if self.format == CorpusFormat.markdown.value and self.uri.startswith(("builtin:", "s3://")):
            raise ValueError("format markdown is a local folder of .md files; builtin: and s3:// corpora are json (set format: json)")
        return self


CEL_CORPUS_RULES = [
    {
        "rule": "self.format == 'json' || !(self.uri.startsWith('builtin:') || self.uri.startsWith('s3://'))",
        "message": "corpus.format: markdown is a local folder of .md files; builtin: and s3:// corpora are json (set format: json)",
    }
]


class AgentType(str, Enum):
    offline = "offline"
    openai = "openai"


class SecretKeyRef(Model):
    name: str = Field(min_length=1, max_length=253, pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
    key: str = Field(min_length=1, max_length=253, pattern=r"^[-._a-zA-Z0-9]+$")


class AgentSpec(Model):
    """Which agent answers "is this relevant?" and "where next?"."""

    type: AgentType = Field(default=AgentType.offline, description="offline (BM25, no network) or openai (any OpenAI-compatible endpoint)")
    relevanceThreshold: float = Field(default=0.35, ge=0.0, le=1.0, description="offline agent: normalised score at which a document answers the query")
    baseURL: Optional[str] = Field(default=None, max_length=512, pattern=r"^https?://[^\s]+$", description="openai agent: base URL, e.g. http://host:8000/v1")
    model: Optional[str] = Field(default=None, min_length=1, max_length=128, pattern=r"^[^\s]+$", description="openai agent: model name")
    apiKeySecretRef: Optional[SecretKeyRef] = Field(default=None, description="openai agent on a cluster: Secret key holding the API key")
    apiKeyEnv: str = Field(default="OPENAI_API_KEY", max_length=128, pattern=r"^[A-Z_][A-Z0-9_]*$", description="environment variable holding the API key")
    costPer1kTokensUSD: float = Field(default=0.0, ge=0.0, le=1000.0, description="price used to turn tokens into cost")
    requestTimeoutSeconds: int = Field(default=30, ge=1, le=600)
    maxContextChars: int = Field(default=MAX_NOTE_CHARS // 2, ge=0, le=MAX_NOTE_CHARS,
                                 description="context budget: the most characters of the note a traversal step passes to its children (counted into its tokens)")

    @model_validator(mode="after")
    def _openai_needs_endpoint(self) -> "AgentSpec":
        if self.type == AgentType.openai.value and (not self.baseURL or not self.model):
            raise ValueError("agent.baseURL and agent.model are required when agent.type is openai")
        return self


@dataclass(frozen=True)
class BudgetMeta:
    """What the rest of the system knows about one budget field, beside its bounds.

    It sits in the field's ``Annotated`` metadata, which pydantic keeps out of the JSON
    schema (so out of the CRD). ``admission.Caps``, the metric labels, the report's rows and
    the chart's caps (hack/gen-chart-budgets.py) are built from it.
    """

    cap: float              # the cluster's default cap (admission.Caps, the chart's policy.caps)
    label: str              # the report's row label
    used: Optional[str]     # the status.budgetUsed field that measures it; None: the report measures it from the steps
    clampable: bool = True  # admission may lower it to the cap (policy.mode clamp, policy.clamp)


class Budget(Model):
    """Hard limits, enforced at admission and again at every step."""

    # Each budget is declared once, here: its bounds (Field, also in the CRD) and its cluster cap,
    # report row and clampability (BudgetMeta). A new budget also needs its enforcement in the engine.
    maxAgents: Annotated[int, BudgetMeta(cap=10, label="seed agents", used="agents")] = Field(
        default=3, ge=1, le=10, description="seed traversal agents")
    maxDepth: Annotated[int, BudgetMeta(cap=5, label="depth", used="depth")] = Field(
        default=3, ge=1, le=5, description="deepest traversal level (seeds are depth 1, so the default reaches an answer two links past a seed)")
    maxFanoutPerNode: Annotated[int, BudgetMeta(cap=10, label="fan-out per node", used=None)] = Field(
        default=2, ge=1, le=10, description="children one traversal step may spawn")
    maxSteps: Annotated[int, BudgetMeta(cap=1000, label="steps (Jobs)", used="steps")] = Field(
        default=40, ge=5, le=10000, description="total steps (Jobs) in the run")
    maxParallel: Annotated[int, BudgetMeta(cap=20, label="parallel Jobs", used="parallel")] = Field(
        default=4, ge=1, le=100, description="steps running at once")
    maxTokens: Annotated[int, BudgetMeta(cap=2_000_000, label="tokens", used="tokens")] = Field(
        default=200000, ge=1000, le=100_000_000, description="tokens over all steps")
    maxCostUSD: Annotated[float, BudgetMeta(cap=50.0, label="cost (USD)", used="costUSD")] = Field(
        default=1.0, ge=0.0, le=10000.0, description="cost over all steps")
    deadlineSeconds: Annotated[int, BudgetMeta(cap=7200, label="elapsed (s)", used="elapsedSeconds")] = Field(
        default=900, ge=10, le=86400, description="wall time from start; then the run fans in")

    @model_validator(mode="after")
    def _steps_cover_agents(self) -> "Budget":
        if self.maxSteps < self.maxAgents + 4:
            raise ValueError(
                f"budget.maxSteps ({self.maxSteps}) must be at least budget.maxAgents + 4 = {self.maxAgents + 4} "
                "(detect_intent, plan_search, aggregate_results, create_report)"
            )
        return self


def _budget_meta() -> dict[str, BudgetMeta]:
    metas = {}
    for name, info in Budget.model_fields.items():
        found = [m for m in info.metadata if isinstance(m, BudgetMeta)]
        if len(found) != 1:
            raise TypeError(f"Budget.{name} needs exactly one BudgetMeta in its Annotated type")
        metas[name] = found[0]
    return metas


BUDGET_FIELDS: dict[str, BudgetMeta] = _budget_meta()  # field name -> its metadata, in declaration order


CEL_BUDGET_RULES = [
    {
        "rule": "self.maxSteps >= self.maxAgents + 4",
        "message": "budget.maxSteps must be at least budget.maxAgents + 4 (detect_intent, plan_search, aggregate_results, create_report)",
    }
]
CEL_AGENT_RULES = [
    {
        "rule": "self.type != 'openai' || (has(self.baseURL) && has(self.model))",
        "message": "agent.baseURL and agent.model are required when agent.type is openai",
    }
]


class ResourceList(Model):
    cpu: Optional[str] = Field(default=None, max_length=32, pattern=r"^[0-9]+(\.[0-9]+)?m?$")
    memory: Optional[str] = Field(default=None, max_length=32, pattern=r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|K|M|G)?$")


class Resources(Model):
    requests: ResourceList = Field(default_factory=lambda: ResourceList(cpu="50m", memory="64Mi"))
    limits: ResourceList = Field(default_factory=lambda: ResourceList(cpu="500m", memory="256Mi"))


class StepSettings(Model):
    """How each step runs: image, resources, retries with backoff, timeout."""

    image: str = Field(default=DEFAULT_IMAGE, min_length=1, max_length=512, pattern=r"^[^\s]+$")
    imagePullPolicy: Literal["Always", "IfNotPresent", "Never"] = "IfNotPresent"
    resources: Resources = Field(default_factory=Resources)
    retries: int = Field(default=2, ge=0, le=10, description="extra attempts after a failure")
    backoffSeconds: float = Field(default=1.0, ge=0.0, le=300.0, description="first retry delay; doubles each attempt")
    backoffMaxSeconds: float = Field(default=30.0, ge=0.0, le=3600.0)
    timeoutSeconds: int = Field(default=300, ge=1, le=86400, description="one attempt's limit (activeDeadlineSeconds)")


class ArtifactSettings(Model):
    uri: Optional[str] = Field(
        default=None,
        max_length=1024,
        pattern=r"^(s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/[A-Za-z0-9._/-]*)?|file://[^\s]+)$",
        description="s3://bucket/prefix or file:///dir; default: the executor's configured store",
    )
    cleanup: bool = Field(default=False, description="delete the run's artifacts when the SearchRun is deleted")


class CacheMode(str, Enum):
    ReadWrite = "ReadWrite"   # use entries and add new ones
    ReadOnly = "ReadOnly"     # use entries, add none
    Off = "Off"


class CacheSettings(Model):
    """The step cache: a step whose key (everything that determines its output) has an entry in
    the namespace's cache is not run; its recorded result is used. Off by default (README: the cache)."""

    mode: CacheMode = Field(default=CacheMode.Off, description="ReadWrite, ReadOnly or Off")
    ttlSeconds: int = Field(default=7 * 86400, ge=60, le=366 * 86400, description="entries older than this are misses")


class SearchRunSpec(Model):
    query: str = Field(min_length=1, max_length=MAX_QUERY_CHARS, description="what to search for")
    corpus: CorpusRef = Field(default_factory=CorpusRef)
    agent: AgentSpec = Field(default_factory=AgentSpec)
    budget: Budget = Field(default_factory=Budget)
    steps: StepSettings = Field(default_factory=StepSettings)
    artifacts: ArtifactSettings = Field(default_factory=ArtifactSettings)
    cache: CacheSettings = Field(default_factory=CacheSettings)

    @model_validator(mode="after")
    def _query_visible(self) -> "SearchRunSpec":
        why = query_problem(self.query)
        if why:
            raise ValueError(why)
        return self


CEL_SPEC_RULES = [
    {"rule": "!self.query.matches('" + QUERY_CONTROL.replace("\\", "\\\\") + "')",
     "message": "spec.query must not hold control characters other than newline and tab"},
    {"rule": "self.query.matches('[^\\\\s\\\\p{Cc}\\\\p{Cf}\\\\p{Z}]')",
     "message": "spec.query must not be blank (it holds only spaces, invisible or control characters)"},
]


