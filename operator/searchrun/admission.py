"""Admission policy: what a cluster accepts, clamps or rejects. Pure: the kopf webhooks call it.

The CRD's schema and CEL rules are the first line; this adds the cluster's own
caps (operator configuration), immutability, and checks that need more than a
schema (a corpus a Job can read, an agent that can run).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from .api import BUDGET_FIELDS, Budget, SearchRunSpec
from .artifacts import open_store
from .endpoint_policy import AgentEndpointPolicy, url_problem
from .manifest import describe_validation_error


def _cap_field(name: str):
    """A cap has its budget's type and lower bound, and defaults to ``BudgetMeta.cap``."""
    info = Budget.model_fields[name]
    ge = next(m.ge for m in info.metadata if hasattr(m, "ge"))
    return (info.annotation, Field(default=BUDGET_FIELDS[name].cap, ge=ge))


Caps = create_model(
    "Caps",
    __config__=ConfigDict(extra="forbid"),
    __doc__="The cluster's cap on each budget field (operator configuration), from api.Budget.",
    **{name: _cap_field(name) for name in BUDGET_FIELDS},
)

CLAMPABLE = tuple(name for name, meta in BUDGET_FIELDS.items() if meta.clampable)


class Policy(BaseModel):
    """The cluster's admission policy (from the operator's configuration)."""

    model_config = ConfigDict(extra="forbid")
    mode: Literal["reject", "clamp"] = Field(default="reject", description="what to do with a budget over its cap")
    clamp: list[Literal[CLAMPABLE]] = Field(default_factory=list, description="budget fields clamped even when mode is reject")
    caps: Caps = Field(default_factory=Caps)
    corpusSchemes: list[str] = Field(default_factory=lambda: ["builtin", "s3"])
    allowOpenAI: bool = True
    agentEndpoints: AgentEndpointPolicy = Field(default_factory=AgentEndpointPolicy, description="where openai agents may connect")

    def may_clamp(self, name: str) -> bool:
        """Whether the mutating pass lowers budget ``name`` to its cap rather than rejecting it."""
        return name in CLAMPABLE and (self.mode == "clamp" or name in self.clamp)


@dataclass
class Verdict:
    allowed: bool
    reason: str = ""             # a short code for metrics: invalid, cap, corpus, agent, immutable
    message: str = ""
    spec: Optional[dict] = None  # the spec with defaults filled (and clamped), when allowed
    warnings: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return self.spec is not None


def _scheme(uri: str) -> str:
    if uri.startswith("builtin:"):
        return "builtin"
    if "://" in uri:
        return uri.split("://", 1)[0]
    return "path"


def artifact_store_problem(uri: str) -> Optional[str]:
    """Why ``uri`` cannot be a run's artifact store on a cluster, or None. Step Jobs and the
    operator must share it, so it is an s3:// URI (file:// is for local runs), and one that
    opens as a store (the CRD pattern lets a '.' or '..' prefix segment through)."""
    if not uri.startswith("s3://"):
        return "step Jobs and the operator share the artifact store on a cluster: use s3://bucket/prefix"
    try:
        open_store(uri)
    except ValueError as e:
        return str(e)
    return None


def _defaulted_budget(spec: dict) -> set[str]:
    """The budget fields the user did not write. The API server fills the CRD's defaults before
    the webhooks see the object, so a field that holds its default counts as not written."""
    raw = spec.get("budget")
    raw = raw if isinstance(raw, dict) else {}
    defaults = Budget.model_construct().model_dump()  # the declared defaults (no validation)
    return {n for n, d in defaults.items() if n not in raw or raw[n] == d}


def review(spec: Any, policy: Policy, old_spec: Any = None, clamp: bool = False) -> Verdict:
    """Decide on a SearchRun spec. ``clamp=True`` is the mutating pass."""
    if not isinstance(spec, dict):
        return Verdict(False, "invalid", "spec: must be an object")
    if old_spec is not None and old_spec != spec:
        try:
            same = SearchRunSpec.model_validate(old_spec).model_dump(mode="json") == SearchRunSpec.model_validate(spec).model_dump(mode="json")
        except ValidationError:
            same = False
        if not same:
            return Verdict(False, "immutable", "spec is immutable after creation: delete and re-create the SearchRun to change it "
                           "(a finished run's spec.budget may be raised with `searchrun retry NAME --budget FIELD=VALUE`)")
    try:
        parsed = SearchRunSpec.model_validate(spec)
    except ValidationError as e:
        lines = ["spec." + line for line in describe_validation_error(e)]
        return Verdict(False, "invalid", "; ".join(lines))

    scheme = _scheme(parsed.corpus.uri)
    if scheme not in policy.corpusSchemes:
        allowed = ", ".join(f"{s}:" if s == "builtin" else f"{s}://" for s in policy.corpusSchemes)
        return Verdict(False, "corpus", f"spec.corpus.uri: scheme {scheme!r} cannot be read by step Jobs on this cluster; use one of {allowed}")
    if parsed.artifacts.uri:
        why = artifact_store_problem(parsed.artifacts.uri)
        if why:
            return Verdict(False, "artifacts", f"spec.artifacts.uri: {why}")
    if parsed.agent.type == "openai" and not policy.allowOpenAI:
        return Verdict(False, "agent", "spec.agent.type: openai agents are not allowed by this cluster's policy; use offline")
    if parsed.agent.type == "openai" and (why := url_problem(parsed.agent.baseURL, policy.agentEndpoints)):
        return Verdict(False, "agent", why)

    budget = parsed.budget.model_dump()
    warnings: list[str] = []
    over = []
    defaulted = _defaulted_budget(spec)
    for name, cap in policy.caps.model_dump().items():
        if budget[name] > cap and name in defaulted:
            budget[name] = cap  # a default over the cap: filled at the cap, silently (the user wrote nothing)
            over.append((name, None, cap))
        elif budget[name] > cap:
            over.append((name, budget[name], cap))
    def clampable(n: str) -> bool:
        return clamp and policy.may_clamp(n)

    rejected = [(n, v, c) for n, v, c in over if v is not None and not clampable(n)]
    if rejected:
        msg = "; ".join(f"spec.budget.{n}: {v} exceeds the cluster's limit of {c}" for n, v, c in rejected)
        return Verdict(False, "cap", msg)
    for name, value, cap in over:
        budget[name] = cap
        if value is not None:
            warnings.append(f"spec.budget.{name} clamped from {value} to {cap} by the cluster's policy")
    if over:
        try:
            Budget.model_validate(budget)
        except ValidationError as e:
            return Verdict(False, "cap", "after clamping to the cluster's limits: " + "; ".join("spec.budget." + x for x in describe_validation_error(e)))
    out = parsed.model_dump(mode="json", exclude_none=True)
    out["budget"] = budget
    return Verdict(True, spec=out, warnings=warnings)
