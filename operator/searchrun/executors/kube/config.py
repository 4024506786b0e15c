"""The operator's configuration: flags, environment, and the admission policy file."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal, Optional

import yaml
from pydantic import BaseModel, ConfigDict, Field

from ...admission import Policy


class StepPodTemplate(BaseModel):
    """Scheduling fields copied into every step pod: where step pods may run (e.g. a node pool,
    or the simulated kwok nodes of bench/bench_scale.py). Nothing else of the pod is configurable."""

    model_config = ConfigDict(extra="forbid")

    nodeSelector: dict[str, str] = Field(default_factory=dict, description="the pod's spec.nodeSelector")
    tolerations: list[dict[str, Any]] = Field(default_factory=list, description="the pod's spec.tolerations (Kubernetes Toleration objects)")


class LabelSelectorRequirement(BaseModel):
    model_config = ConfigDict(extra="forbid")

    key: str = Field(min_length=1, max_length=317)
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"]
    values: list[str] = Field(default_factory=list)


class LabelSelector(BaseModel):
    """A Kubernetes LabelSelector (of namespaces, for the managed webhooks)."""

    model_config = ConfigDict(extra="forbid")

    matchLabels: dict[str, str] = Field(default_factory=dict)
    matchExpressions: list[LabelSelectorRequirement] = Field(default_factory=list)


class OperatorConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    namespaces: list[str] = Field(default_factory=list, description="watch these namespaces; empty: all")
    artifacts: str = Field(default="s3://searchrun", description="default artifact store for runs that name none")
    # What step pods need to reach the store: endpoint and a Secret (in the run's namespace) with credentials.
    stepS3EndpointURL: Optional[str] = None
    stepS3Region: str = "us-east-1"
    stepS3Secret: Optional[str] = Field(default="searchrun-s3", description="Secret with AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
    stepImage: Optional[str] = Field(default=None, description="override the image of every step (else spec.steps.image)")
    stepServiceAccount: Optional[str] = None
    stepPodTemplate: StepPodTemplate = Field(default_factory=StepPodTemplate, description="nodeSelector and tolerations of step pods")
    stepJobManagedBy: Optional[str] = Field(
        default=None, max_length=63, pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?/[-A-Za-z0-9_.]+$",
        description="spec.managedBy of step Jobs: another Job controller runs them (e.g. MultiKueue, or the "
                    "simulated one of bench/bench_scale.py); unset: Kubernetes' own Job controller")
    lineageOffloadBytes: int = Field(default=262144, ge=4096, description="past this, the full lineage moves to the artifact store")
    resyncSeconds: float = Field(default=30.0, gt=0)
    resultWaitSeconds: float = Field(default=180.0, gt=0, description="how long a finished step's unreadable result is waited for")
    metricsPort: int = 8080
    metricsAddr: str = "0.0.0.0"
    webhookPort: int = 9443
    webhookAddr: str = "0.0.0.0"
    webhookHost: Optional[str] = Field(default=None, description="hostname the API server uses for a self-managed webhook")
    webhookCertDir: Optional[str] = Field(default=None, description="tls.crt/tls.key (and ca.crt) mounted here; else self-signed")
    webhookManaged: bool = Field(default=False, description="create the webhook configurations ourselves (development)")
    webhookManagedName: str = Field(
        default="searchrun.dev", min_length=1, max_length=253, pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$",
        description="name of the managed webhook configurations (one per development operator on a cluster)")
    webhookNamespaceSelector: Optional[LabelSelector] = Field(
        default=None, description="namespaces whose SearchRuns the managed webhooks judge; unset: the watched "
                                  "namespaces when they are names, else every namespace")
    webhooks: bool = True
    policy: Policy = Field(default_factory=Policy)

    @classmethod
    def load(cls, path: Optional[str] = None, **overrides) -> "OperatorConfig":
        data: dict = {}
        path = path or os.environ.get("SEARCHRUN_CONFIG")
        if path:
            data = yaml.safe_load(Path(path).read_text()) or {}
        env_map = {
            "SEARCHRUN_ARTIFACTS": "artifacts",
            "SEARCHRUN_STEP_S3_ENDPOINT_URL": "stepS3EndpointURL",
            "SEARCHRUN_STEP_S3_SECRET": "stepS3Secret",
            "SEARCHRUN_STEP_IMAGE": "stepImage",
        }
        for env, key in env_map.items():
            if os.environ.get(env):
                data.setdefault(key, os.environ[env])
        data.update({k: v for k, v in overrides.items() if v is not None})
        return cls.model_validate(data)
