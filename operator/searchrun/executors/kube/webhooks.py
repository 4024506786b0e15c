"""Admission webhooks (kopf): registered only when the operator serves webhooks."""

from __future__ import annotations

import kopf

from ... import metrics
from ...admission import review
from ...api import GROUP, PLURAL, VERSION
from ...retry import new_retry_token, retry_refusal, spec_to_compare
from .handlers import STATE


@kopf.on.validate(GROUP, VERSION, PLURAL, id="validate", operations=["CREATE", "UPDATE"])
def validate(body, old, operation, warnings, subresource=None, **_) -> None:
    if subresource:
        return
    # The raw spec, not kopf's view of it: a spec that is not an object must get a field
    # error, not a crash of the view ("The structure is not a dict ...", HTTP 500).
    spec = body.get("spec")
    old_spec = (old or {}).get("spec") if operation == "UPDATE" else None
    # A retry (a new token in the retry annotation) may raise the budget of a finished run.
    token = new_retry_token((old or {}).get("metadata"), body.get("metadata")) if operation == "UPDATE" else None
    if token is not None and (why := retry_refusal(token, (old or {}).get("status"))):
        metrics.ADMISSION_REJECTIONS.labels(reason="retry").inc()
        raise kopf.AdmissionError(why, code=422)
    old_spec = spec_to_compare(old_spec, spec, retry=token is not None)
    verdict = review(dict(spec) if isinstance(spec, dict) else spec, STATE.config.policy,
                     old_spec=dict(old_spec) if isinstance(old_spec, dict) else old_spec)
    if not verdict.allowed:
        metrics.ADMISSION_REJECTIONS.labels(reason=verdict.reason).inc()
        raise kopf.AdmissionError(verdict.message, code=422)


@kopf.on.mutate(GROUP, VERSION, PLURAL, id="defaults", operations=["CREATE"])
def mutate(body, patch, warnings, **_) -> None:
    spec = body.get("spec")
    if not isinstance(spec, dict):
        return  # the CRD schema rejects it, naming the field
    verdict = review(dict(spec), STATE.config.policy, clamp=True)
    if not verdict.allowed:
        return  # the validating webhook rejects it with the reason
    if verdict.spec != dict(spec):
        patch["spec"] = verdict.spec
    if verdict.warnings:
        metrics.ADMISSION_CLAMPS.inc()
        warnings.extend(verdict.warnings)
