"""The SearchRun API: pydantic models that are the single source of truth.

The CRD in ``crds/`` is generated from these models (see ``crd.py``), so the
schema the API server enforces and the checks the engine relies on cannot drift
apart. Field names are camelCase, as Kubernetes users expect.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from enum import Enum
from typing import Annotated, Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from .corpus import BUILTIN_CORPORA

GROUP = "searchrun.dev"
VERSION = "v1alpha1"
KIND = "SearchRun"
PLURAL = "searchruns"
SINGULAR = "searchrun"
SHORT_NAMES = ["sr"]
API_VERSION = f"{GROUP}/{VERSION}"

MAX_QUERY_CHARS = 2000
MAX_NOTE_CHARS = 800       # the note a traversal step passes down (agent.maxContextChars is at most this)
MAX_RELATION_CHARS = 63    # a relationship kind of the corpus, as followed by a traversal
MAX_REASON_CHARS = 160     # why a parent proposed a child
BUILTIN_NAMES = tuple(sorted(BUILTIN_CORPORA))
# builtin:NAME (a shipped corpus), s3://bucket/key (no '.', '..' or empty key segment; a trailing
# '/' for a prefix), file://..., or a path (no "scheme:" before its first '/': builtin:../x is no path)
_S3_SEGMENT = r"([^\s/.][^\s/]*|\.[^\s/.][^\s/]*|\.\.[^\s/]+)"
CORPUS_URI_PATTERN = (rf"^(builtin:({'|'.join(BUILTIN_NAMES)})|s3://[a-z0-9][a-z0-9.-]{{1,61}}[a-z0-9]/{_S3_SEGMENT}(/{_S3_SEGMENT})*/?"
                      r"|file://[^\s]+|[^:\s]*/[^\s]*|[^:\s]+)$")
# control characters a query may not hold: C0 and C1 but newline and tab (the CRD has the same rule)
QUERY_CONTROL = "[\\x00-\\x08\\x0b-\\x1f\\x7f-\\x9f]"
_INVISIBLE = {"Cc", "Cf", "Zs", "Zl", "Zp"}


def query_problem(q: str) -> Optional[str]:
    """Why ``q`` is not a query (the CEL rules of the CRD say the same), or None."""
    for i, ch in enumerate(q):
        if unicodedata.category(ch) == "Cc" and ch not in "\n\t":
            return f"spec.query must not hold control characters other than newline and tab (U+{ord(ch):04X} at position {i})"
    if all(ch.isspace() or unicodedata.category(ch) in _INVISIBLE for ch in q):
        return "spec.query must not be blank (it holds only spaces, invisible or control characters)"
    return None


def corpus_uri_problem(uri: str) -> Optional[str]:
    """Why no step can read the corpus ``uri``, named for the user, or None (the pattern then
    checks the rest)."""
    if not isinstance(uri, str):
        return None
    if uri.startswith("builtin:"):
        name = uri[len("builtin:"):]
        if name not in BUILTIN_CORPORA:
            shipped = ", ".join("builtin:" + n for n in BUILTIN_NAMES)
            return f"{uri[:80]!r} is not a shipped builtin corpus (available: {shipped})"
    elif uri.startswith("s3://"):
        _, _, key = uri[len("s3://"):].partition("/")
        if any(seg in (".", "..") for seg in key.split("/")) or "//" in key:
            return f"the key of {uri[:80]!r} has a '.', '..' or empty segment: it must name an object under the bucket"
    elif ":" in uri.split("/", 1)[0] and not uri.startswith("file://"):
        return f"{uri[:80]!r} has an unsupported scheme (use builtin:NAME, s3://bucket/key, file:///path or a path)"
    return None
DEFAULT_IMAGE = "localhost/searchrun:0.1.0"


class Model(BaseModel):
    """Base: camelCase on the wire, unknown fields rejected, enums as values."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, use_enum_values=True)


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


class SearchRunStatus(Model):
    phase: Phase = Phase.Pending
    intent: Optional[Literal["simple", "deep"]] = None
    message: Optional[str] = None
    stoppedBy: Optional[str] = Field(default=None, description="the budget that stopped the run, if one did")
    limitsHit: list[str] = Field(default_factory=list, description="budgets and limits that trimmed the search")
    fallback: Optional[str] = Field(default=None, description="why the run fell back to simple search")
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
    observedGeneration: Optional[int] = None


DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
DNS_LABEL = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"
_QUALIFIED_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
MAX_ANNOTATIONS_BYTES = 256 * 1024  # the API server's limit on all annotations together


def _key_problem(key: str) -> Optional[str]:
    """Why ``key`` is not a label or annotation key (``[prefix/]name``), as the API server says it."""
    prefix, _, name = key.rpartition("/")
    if prefix and (len(prefix) > 253 or not re.match(DNS_SUBDOMAIN, prefix)):
        return "its prefix must be a DNS subdomain of at most 253 characters"
    if not name or len(name) > 63 or not _QUALIFIED_NAME.match(name):
        return "its name must be at most 63 characters of alphanumerics, '-', '_' or '.', starting and ending with an alphanumeric"
    return None


class ObjectMeta(BaseModel):
    """The metadata the API server would accept (the local runner checks it the same way)."""

    model_config = ConfigDict(extra="allow")
    name: str = Field(default="searchrun", min_length=1, max_length=253, pattern=DNS_SUBDOMAIN,
                      description="a DNS subdomain: lower-case alphanumerics, '-' and '.'")
    namespace: Optional[str] = Field(default=None, min_length=1, max_length=63, pattern=DNS_LABEL)
    uid: Optional[str] = None
    labels: Optional[dict[str, str]] = None
    annotations: Optional[dict[str, str]] = None

    @field_validator("labels")
    @classmethod
    def _labels(cls, v: Optional[dict[str, str]]) -> Optional[dict[str, str]]:
        for key, value in (v or {}).items():
            why = _key_problem(key)
            if why:
                raise ValueError(f"label key {key[:80]!r}: {why}")
            if len(value) > 63 or not _LABEL_VALUE.match(value):
                raise ValueError(f"label {key!r}: a value must be at most 63 characters of alphanumerics, '-', '_' or '.', "
                                 "starting and ending with an alphanumeric")
        return v

    @field_validator("annotations")
    @classmethod
    def _annotations(cls, v: Optional[dict[str, str]]) -> Optional[dict[str, str]]:
        total = 0
        for key, value in (v or {}).items():
            why = _key_problem(key)
            if why:
                raise ValueError(f"annotation key {key[:80]!r}: {why}")
            total += len(key.encode()) + len(value.encode())
        if total > MAX_ANNOTATIONS_BYTES:
            raise ValueError(f"annotations: must be at most {MAX_ANNOTATIONS_BYTES} bytes in total (got {total})")
        return v


class SearchRun(Model):
    apiVersion: Literal["searchrun.dev/v1alpha1"] = API_VERSION
    kind: Literal["SearchRun"] = KIND
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    spec: SearchRunSpec
    status: Optional[SearchRunStatus] = None


def parse_manifest(data: Any) -> SearchRun:
    """Validate a manifest dict; raises pydantic.ValidationError naming the field."""
    return SearchRun.model_validate(data)
