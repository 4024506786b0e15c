"""Pure builders: a step decision to a Job manifest, and a Job back to an observation."""

from __future__ import annotations

import json
from typing import Any, Mapping

from ...api import API_VERSION, KIND, SearchRunSpec
from ...endpoint_policy import POLICY_ENV
from ...engine import Observation, StartStep
from ...retry import run_epoch
from ...steps import EXIT_PERMANENT, STEP_ENV
from ..base import CommittedResult, committed_observation
from .config import OperatorConfig

MANAGED_BY = "searchrun"
L_MANAGED = "app.kubernetes.io/managed-by"
L_NAME = "app.kubernetes.io/name"
L_RUN = "searchrun.dev/run-uid"
L_STEP = "searchrun.dev/step-id"
L_TYPE = "searchrun.dev/step-type"
A_ATTEMPT = "searchrun.dev/attempt"
A_RUN_NAME = "searchrun.dev/run-name"
JOB_SELECTOR = f"{L_MANAGED}={MANAGED_BY},{L_NAME}=searchrun-step"
STEP_UID = 65532


def job_name(run_uid: str, step_id: str) -> str:
    """Deterministic Job name from the run's uid and the step path (never user text): a DNS
    label, so that a re-created decision answers AlreadyExists. A resumed run's epoch
    (run id ``<uid>-r<n>``, ``searchrun.retry``) is in the name: ``sr-<uid>-r<n>-<step>``, so a
    step planned again never meets the Job of the attempt before."""
    uid, epoch = run_epoch(run_uid)
    token = "".join(c for c in uid.lower() if c in "0123456789abcdef")[:10] or "0"
    return f"sr-{token}-r{epoch}-{step_id}" if epoch else f"sr-{token}-{step_id}"


def _k8s_backoff_total(retries: int) -> int:
    """Kubernetes waits 10 s, 20 s, 40 s ... (capped at 6 min) between a Job's pod retries."""
    return sum(min(360, 10 * 2 ** i) for i in range(retries))


def build_job(action: StartStep, run_name: str, namespace: str, run_uid: str, spec: SearchRunSpec,
              context_json: str, config: OperatorConfig) -> dict:
    labels = {L_MANAGED: MANAGED_BY, L_NAME: "searchrun-step", L_RUN: run_uid, L_STEP: action.step_id,
              L_TYPE: action.step_type.replace("_", "-")}
    env: list[dict[str, Any]] = [{"name": STEP_ENV, "value": context_json},
                                 {"name": "AWS_DEFAULT_REGION", "value": config.stepS3Region}]
    if config.stepS3EndpointURL:
        env.append({"name": "SEARCHRUN_S3_ENDPOINT_URL", "value": config.stepS3EndpointURL})
    if config.stepS3Secret:
        for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
            env.append({"name": key, "valueFrom": {"secretKeyRef": {"name": config.stepS3Secret, "key": key, "optional": True}}})
    ref = spec.agent.apiKeySecretRef
    if ref is not None:
        env.append({"name": spec.agent.apiKeyEnv, "valueFrom": {"secretKeyRef": {"name": ref.name, "key": ref.key}}})
    if spec.agent.type == "openai":  # checked by the step at every connection; last, so that it wins over any same name
        env.append({"name": POLICY_ENV, "value": config.policy.agentEndpoints.model_dump_json()})
    res = spec.steps.resources.model_dump(exclude_none=True)
    pod_deadline = action.timeout_seconds
    job_deadline = pod_deadline * (action.retries + 1) + _k8s_backoff_total(action.retries) + 60
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "activeDeadlineSeconds": pod_deadline,
        "securityContext": {"runAsNonRoot": True, "runAsUser": STEP_UID, "runAsGroup": STEP_UID,
                            "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [{
            "name": "step",
            "image": config.stepImage or spec.steps.image,
            "imagePullPolicy": spec.steps.imagePullPolicy,
            "args": ["step", "--result-file", "/dev/termination-log"],
            "env": env,
            "resources": {k: v for k, v in res.items() if v},
            "terminationMessagePolicy": "File",
            "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                "runAsNonRoot": True, "capabilities": {"drop": ["ALL"]}},
            "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
        }],
        "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}}],
    }
    if config.stepServiceAccount:
        pod_spec["serviceAccountName"] = config.stepServiceAccount
    placement = config.stepPodTemplate
    if placement.nodeSelector:
        pod_spec["nodeSelector"] = dict(placement.nodeSelector)
    if placement.tolerations:
        pod_spec["tolerations"] = [dict(t) for t in placement.tolerations]
    job_spec: dict[str, Any] = {
        "backoffLimit": action.retries,
        "activeDeadlineSeconds": job_deadline,
        # a step that failed for good (bad input, a document not in the corpus) fails its Job at once
        "podFailurePolicy": {"rules": [{"action": "FailJob", "onExitCodes": {
            "containerName": "step", "operator": "In", "values": [EXIT_PERMANENT]}}]},
        "template": {"metadata": {"labels": labels}, "spec": pod_spec},
    }
    if config.stepJobManagedBy:
        job_spec["managedBy"] = config.stepJobManagedBy
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": action.job,
            "namespace": namespace,
            "labels": labels,
            "annotations": {A_ATTEMPT: str(action.attempt), A_RUN_NAME: run_name},
            "ownerReferences": [{"apiVersion": API_VERSION, "kind": KIND, "name": run_name, "uid": run_uid,
                                 "controller": True, "blockOwnerDeletion": True}],
        },
        "spec": job_spec,
    }


def _conditions(job: Mapping) -> dict[str, Mapping]:
    return {c.get("type"): c for c in (job.get("status") or {}).get("conditions") or [] if c.get("status") == "True"}


def job_state(job: Mapping) -> str:
    conds = _conditions(job)
    if "Complete" in conds or "SuccessCriteriaMet" in conds:
        return "succeeded"
    if "Failed" in conds or "FailureTarget" in conds:
        return "failed"
    return "running"


def observe_job(job: Mapping, result: CommittedResult = None, pod_message: str = "") -> Observation:
    """What the engine needs of a Job. ``result`` is the step's result.json as read from the store,
    for a Job that succeeded (``executors.base.parse_result`` reads it)."""
    meta = job.get("metadata") or {}
    labels = meta.get("labels") or {}
    step_id = labels.get(L_STEP, "")
    attempt = int((meta.get("annotations") or {}).get(A_ATTEMPT, "1"))
    status = job.get("status") or {}
    failed = int(status.get("failed") or 0)
    state = job_state(job)
    if state == "succeeded":
        # pod_message: why an earlier pod of this Job failed (its retry succeeded)
        return committed_observation(step_id, attempt, result, final=True, attempts=failed + 1,
                                     message=pod_message if failed else "")
    if state == "failed":
        cond = _conditions(job).get("Failed") or _conditions(job).get("FailureTarget") or {}
        why = f"{cond.get('reason', 'Failed')}: {cond.get('message', '')}".strip(": ")
        if pod_message:
            why += f"; last error: {pod_message}"
        return Observation(step_id, attempt, "failed", message=why, final=True, attempts=max(1, failed))
    return Observation(step_id, attempt, "running", attempts=failed + 1)


def pod_error(pod: Mapping) -> str:
    """The error a failed step left in its termination message (JSON ``{"error": ...}``) or its exit reason."""
    for cs in (pod.get("status") or {}).get("containerStatuses") or []:
        term = (cs.get("state") or {}).get("terminated") or (cs.get("lastState") or {}).get("terminated")
        if not term:
            continue
        msg = term.get("message") or ""
        try:
            data = json.loads(msg)
            if isinstance(data, dict) and data.get("error"):
                return str(data["error"])[:400]
        except ValueError:
            pass
        return f"{term.get('reason', 'Error')} (exit code {term.get('exitCode')})" + (f": {msg[:300]}" if msg else "")
    reason = (pod.get("status") or {}).get("reason")
    return reason or ""
