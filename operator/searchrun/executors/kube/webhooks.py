"""Admission webhooks (kopf): registered only when the operator serves webhooks."""

from __future__ import annotations

import kopf

from ... import metrics
from ...admission import review
from ...api import GROUP, PLURAL, VERSION
from .handlers import STATE


@kopf.on.validate(GROUP, VERSION, PLURAL, id="validate", operations=["CREATE", "UPDATE"])
def validate(spec, old, operation, warnings, subresource=None, **_) -> None:
    if subresource:
        return
    old_spec = (old or {}).get("spec") if operation == "UPDATE" else None
    verdict = review(dict(spec or {}), STATE.config.policy, old_spec=dict(old_spec) if old_spec is not None else None)
    if not verdict.allowed:
        metrics.ADMISSION_REJECTIONS.labels(reason=verdict.reason).inc()
        raise kopf.AdmissionError(verdict.message, code=422)


@kopf.on.mutate(GROUP, VERSION, PLURAL, id="defaults", operations=["CREATE"])
def mutate(spec, patch, warnings, **_) -> None:
    verdict = review(dict(spec or {}), STATE.config.policy, clamp=True)
    if not verdict.allowed:
        return  # the validating webhook rejects it with the reason
    if verdict.spec != dict(spec or {}):
        patch["spec"] = verdict.spec
    if verdict.warnings:
        metrics.ADMISSION_CLAMPS.inc()
        warnings.extend(verdict.warnings)
