"""Job manifests built from step decisions, and Jobs read back as observations (pure)."""

import json
import re

from searchrun.api import SearchRunSpec
from searchrun.engine import StartStep, reconcile
from searchrun.executors.kube.config import OperatorConfig
from searchrun.executors.kube.jobs import JOB_SELECTOR, build_job, job_name, observe_job, pod_error

UID = "0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0"
HOSTILE = 'quantum"; rm -rf / <script>\u202e\U0001F600'


def _job(spec=None, cfg=None):
    spec = spec or SearchRunSpec(query=HOSTILE, agent={"type": "openai", "baseURL": "http://h/v1", "model": "m",
                                                        "apiKeySecretRef": {"name": "llm", "key": "api-key"}})
    from datetime import datetime, timezone

    d = reconcile(spec, None, {}, datetime(2026, 1, 1, tzinfo=timezone.utc), UID, job_namer=job_name)
    a: StartStep = d.start[0]
    return a, build_job(a, "My.Run", "ns1", UID, spec, '{"x":1}', cfg or OperatorConfig(stepS3EndpointURL="http://10.0.0.1:9000"))


def test_job_is_deterministic_owned_labelled_and_secure():
    a, job = _job()
    meta = job["metadata"]
    assert meta["name"] == "sr-0b1c2d3e4f-detect" == a.job
    assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", meta["name"]) and len(meta["name"]) <= 63
    assert meta["ownerReferences"] == [{"apiVersion": "searchrun.dev/v1alpha1", "kind": "SearchRun", "name": "My.Run",
                                        "uid": UID, "controller": True, "blockOwnerDeletion": True}]
    labels = meta["labels"]
    assert labels["searchrun.dev/run-uid"] == UID and labels["searchrun.dev/step-id"] == "detect"
    assert labels["searchrun.dev/step-type"] == "detect-intent"
    for k, v in JOB_SELECTOR and [p.split("=") for p in JOB_SELECTOR.split(",")]:
        assert labels[k] == v
    for v in labels.values():
        assert re.fullmatch(r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?", v) and len(v) <= 63
        assert HOSTILE not in v
    spec = job["spec"]
    assert spec["backoffLimit"] == 2
    pod = spec["template"]["spec"]
    assert pod["activeDeadlineSeconds"] == 300 and spec["activeDeadlineSeconds"] > 3 * 300
    assert pod["automountServiceAccountToken"] is False and pod["restartPolicy"] == "Never"
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    c = pod["containers"][0]
    assert c["securityContext"] == {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                    "runAsNonRoot": True, "capabilities": {"drop": ["ALL"]}}
    assert c["args"][0] == "step"
    env = {e["name"]: e for e in c["env"]}
    assert env["OPENAI_API_KEY"]["valueFrom"]["secretKeyRef"] == {"name": "llm", "key": "api-key"}
    assert env["SEARCHRUN_S3_ENDPOINT_URL"]["value"] == "http://10.0.0.1:9000"
    assert "value" not in env["AWS_SECRET_ACCESS_KEY"], "credentials come from a Secret, never inline"


def _job_with_status(status, failed=0):
    return {"metadata": {"name": "sr-x-t0", "labels": {"searchrun.dev/step-id": "t0"}, "annotations": {"searchrun.dev/attempt": "1"}},
            "status": {**status, "failed": failed}}


def test_observing_jobs():
    ok = _job_with_status({"conditions": [{"type": "Complete", "status": "True"}]})
    o = observe_job(ok, {"tokens": 5, "found": True, "next": ["a"]})
    assert o.state == "succeeded" and o.result.tokens == 5 and o.result.next == ("a",)
    o = observe_job(ok, {"tokens": "lots"})
    assert o.state == "failed" and o.final and "malformed step result" in o.message and "tokens" in o.message
    o = observe_job(ok, None)
    assert o.state == "failed" and "missing" in o.message
    bad = _job_with_status({"conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
                                            "message": "Job has reached the specified backoff limit"}]}, failed=3)
    o = observe_job(bad, pod_message="CorpusError: not JSON")
    assert o.state == "failed" and o.final and o.attempts == 3
    assert "BackoffLimitExceeded" in o.message and "CorpusError: not JSON" in o.message
    running = _job_with_status({"active": 1}, failed=1)
    o = observe_job(running)
    assert o.state == "running" and o.attempts == 2
    # a retried pod succeeded: the earlier pod's error is kept, only when there was one
    retried = _job_with_status({"conditions": [{"type": "Complete", "status": "True"}]}, failed=1)
    o = observe_job(retried, {"tokens": 5}, pod_message="ArtifactError: the store is unreachable")
    assert o.state == "succeeded" and o.attempts == 2 and o.message == "ArtifactError: the store is unreachable"
    assert observe_job(ok, {"tokens": 5}, pod_message="stale").message == ""


def test_pod_error_reads_the_termination_message():
    pod = {"status": {"containerStatuses": [{"state": {"terminated": {"exitCode": 1, "reason": "Error",
                                                                      "message": json.dumps({"error": "StepError: boom"})}}}]}}
    assert pod_error(pod) == "StepError: boom"
    pod = {"status": {"containerStatuses": [{"state": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}}}]}}
    assert pod_error(pod) == "OOMKilled (exit code 137)"


def test_step_pod_template_places_step_pods():
    """stepPodTemplate (operator config) sets the step pods' nodeSelector and tolerations, nothing else."""
    _, plain = _job()
    assert "nodeSelector" not in plain["spec"]["template"]["spec"] and "tolerations" not in plain["spec"]["template"]["spec"]
    cfg = OperatorConfig.model_validate({"stepS3EndpointURL": "http://10.0.0.1:9000", "stepPodTemplate": {
        "nodeSelector": {"type": "kwok"},
        "tolerations": [{"key": "kwok.x-k8s.io/node", "operator": "Equal", "value": "fake", "effect": "NoSchedule"}]}})
    _, job = _job(cfg=cfg)
    pod = job["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"type": "kwok"}
    assert pod["tolerations"] == [{"key": "kwok.x-k8s.io/node", "operator": "Equal", "value": "fake", "effect": "NoSchedule"}]
    assert {k: v for k, v in pod.items() if k not in ("nodeSelector", "tolerations")} == plain["spec"]["template"]["spec"]
    import pytest
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        OperatorConfig.model_validate({"stepPodTemplate": {"containers": []}})


def test_step_jobs_can_be_managed_by_another_job_controller():
    """stepJobManagedBy sets the Jobs' spec.managedBy (MultiKueue, the benchmark's simulated controller)."""
    _, plain = _job()
    assert "managedBy" not in plain["spec"]
    _, job = _job(cfg=OperatorConfig(stepS3EndpointURL="http://10.0.0.1:9000", stepJobManagedBy="kueue.x-k8s.io/multikueue"))
    assert job["spec"]["managedBy"] == "kueue.x-k8s.io/multikueue"
    assert {k: v for k, v in job["spec"].items() if k != "managedBy"} == plain["spec"]
    import pytest
    from pydantic import ValidationError

    for bad in ("no-slash", "Upper.io/x", "a/" + "x" * 70):
        with pytest.raises(ValidationError):
            OperatorConfig(stepJobManagedBy=bad)


def test_a_permanent_failure_fails_the_job_at_once():
    """Exit code EXIT_PERMANENT (bad input, a document not in the corpus, a malformed agent reply)
    fails the Job without pod retries: a podFailurePolicy on the step container (which needs
    restartPolicy Never); other failures keep backoffLimit."""
    from searchrun.steps import EXIT_PERMANENT

    a, job = _job()
    spec = job["spec"]
    pod = spec["template"]["spec"]
    assert pod["restartPolicy"] == "Never" and spec["backoffLimit"] == a.retries
    rules = spec["podFailurePolicy"]["rules"]
    assert rules == [{"action": "FailJob", "onExitCodes": {"containerName": "step", "operator": "In", "values": [EXIT_PERMANENT]}}]
    assert [c["name"] for c in pod["containers"]] == ["step"]
    assert EXIT_PERMANENT not in (0, 1)
