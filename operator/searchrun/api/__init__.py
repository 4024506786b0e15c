"""The SearchRun API: pydantic models that are the single source of truth.

The CRD in ``crds/`` is generated from these models (see ``crd.py``), so the
schema the API server enforces and the checks the engine relies on cannot drift
apart. Field names are camelCase, as Kubernetes users expect.
"""

from .base import GROUP, VERSION, KIND, PLURAL, SINGULAR, SHORT_NAMES, API_VERSION, MAX_QUERY_CHARS, MAX_NOTE_CHARS, MAX_RELATION_CHARS, MAX_REASON_CHARS, BUILTIN_NAMES, CORPUS_URI_PATTERN, QUERY_CONTROL, query_problem, corpus_uri_problem, DEFAULT_IMAGE, Model
from .spec import CorpusFormat, CorpusRef, CEL_CORPUS_RULES, AgentType, SecretKeyRef, AgentSpec, BudgetMeta, Budget, BUDGET_FIELDS, CEL_BUDGET_RULES, CEL_AGENT_RULES, ResourceList, Resources, JobGrouping, StepSettings, ArtifactSettings, CacheMode, CacheSettings, SearchRunSpec, CEL_SPEC_RULES
from .status import Phase, StepPhase, TERMINAL_STEP_PHASES, Proposal, StepRef, StepStatus, BudgetUsage, Condition, LineageSummary, Resume, WavePlan, SearchRunStatus
from .resource import DNS_SUBDOMAIN, DNS_LABEL, MAX_ANNOTATIONS_BYTES, ObjectMeta, SearchRun, parse_manifest

__all__ = [
    "GROUP",
    "VERSION",
    "KIND",
    "PLURAL",
    "SINGULAR",
    "SHORT_NAMES",
    "API_VERSION",
    "MAX_QUERY_CHARS",
    "MAX_NOTE_CHARS",
    "MAX_RELATION_CHARS",
    "MAX_REASON_CHARS",
    "BUILTIN_NAMES",
    "CORPUS_URI_PATTERN",
    "QUERY_CONTROL",
    "query_problem",
    "corpus_uri_problem",
    "DEFAULT_IMAGE",
    "Model",
    "CorpusFormat",
    "CorpusRef",
    "CEL_CORPUS_RULES",
    "AgentType",
    "SecretKeyRef",
    "AgentSpec",
    "BudgetMeta",
    "Budget",
    "BUDGET_FIELDS",
    "CEL_BUDGET_RULES",
    "CEL_AGENT_RULES",
    "ResourceList",
    "Resources",
    "StepSettings",
    "ArtifactSettings",
    "CacheMode",
    "JobGrouping",
    "CacheSettings",
    "SearchRunSpec",
    "CEL_SPEC_RULES",
    "Phase",
    "StepPhase",
    "TERMINAL_STEP_PHASES",
    "Proposal",
    "StepRef",
    "StepStatus",
    "BudgetUsage",
    "Condition",
    "LineageSummary",
    "Resume",
    "WavePlan",
    "SearchRunStatus",
    "DNS_SUBDOMAIN",
    "DNS_LABEL",
    "MAX_ANNOTATIONS_BYTES",
    "ObjectMeta",
    "SearchRun",
    "parse_manifest",
]
