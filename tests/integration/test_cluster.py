"""The test cluster is a real one: the project image runs as Jobs through the kubelet.

Needs the ``cluster`` fixture (tests/integration/conftest.py): a local single-node cluster started
by hack/local-cluster.sh, or an existing one named by SEARCHRUN_TEST_KUBECONFIG.
"""

from __future__ import annotations

import http.server
import threading
import time
from typing import Any

import pytest

pytestmark = pytest.mark.cluster

JOB_TIMEOUT = "180s"


def step_job(cluster, name: str, args: list[str] | None = None, command: list[str] | None = None,
             env: list[dict[str, str]] | None = None, backoff_limit: int = 0) -> dict[str, Any]:
    """A Job shaped like the operator's step Jobs: restricted pod security, no token, local image."""
    container: dict[str, Any] = {
        "name": "step",
        "image": cluster.image,
        "imagePullPolicy": "Never",
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "runAsNonRoot": True,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "resources": {"requests": {"cpu": "10m", "memory": "32Mi"}, "limits": {"memory": "256Mi"}},
    }
    if command is not None:
        container["command"] = command
    if args is not None:
        container["args"] = args
    if env:
        container["env"] = env
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "labels": {"app.kubernetes.io/part-of": "searchrun-tests"}},
        "spec": {
            "backoffLimit": backoff_limit,
            "ttlSecondsAfterFinished": 600,
            "template": {
                "metadata": {"labels": {"app.kubernetes.io/part-of": "searchrun-tests"}},
                "spec": {
                    "restartPolicy": "Never",
                    "automountServiceAccountToken": False,
                    "terminationGracePeriodSeconds": 2,
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": 65532,
                        "runAsGroup": 65532,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "containers": [container],
                },
            },
        },
    }


def job_pods(cluster, namespace: str, job: str) -> list[dict[str, Any]]:
    return cluster.kubectl_json("-n", namespace, "get", "pods", "-l", f"job-name={job}")["items"]


def describe(cluster, namespace: str) -> str:
    """Diagnostics for a failed assertion."""
    out = cluster.kubectl("-n", namespace, "get", "jobs,pods", "-o", "wide", check=False).stdout
    ev = cluster.kubectl("-n", namespace, "get", "events", "--sort-by=.lastTimestamp", check=False).stdout
    return f"{out}\n{ev}"


def test_job_runs_project_image_and_logs_are_read_back(cluster, namespace):
    cluster.apply(step_job(cluster, "version", args=["--version"]), namespace)
    done = cluster.kubectl("-n", namespace, "wait", "--for=condition=Complete", "job/version",
                           f"--timeout={JOB_TIMEOUT}", check=False, timeout=200)
    assert done.returncode == 0, describe(cluster, namespace)
    logs = cluster.kubectl("-n", namespace, "logs", "job/version").stdout
    assert "searchrun 0.1.0" in logs

    (pod,) = job_pods(cluster, namespace, "version")
    assert pod["spec"]["nodeName"]
    state = pod["status"]["containerStatuses"][0]["state"]["terminated"]
    assert state["exitCode"] == 0
    # the pod ran without a service-account token mounted
    mounts = pod["spec"]["containers"][0].get("volumeMounts", [])
    assert not any("serviceaccount" in m["mountPath"] for m in mounts)


def test_nonzero_exit_fails_the_job(cluster, namespace):
    job = step_job(cluster, "fails", command=["python3", "-c", "import sys; print('step failed'); sys.exit(3)"])
    cluster.apply(job, namespace)
    failed = cluster.kubectl("-n", namespace, "wait", "--for=condition=Failed", "job/fails",
                             f"--timeout={JOB_TIMEOUT}", check=False, timeout=200)
    assert failed.returncode == 0, describe(cluster, namespace)

    status = cluster.kubectl_json("-n", namespace, "get", "job", "fails")["status"]
    conditions = {c["type"]: c for c in status.get("conditions", [])}
    assert conditions["Failed"]["status"] == "True"
    assert conditions["Failed"]["reason"] == "BackoffLimitExceeded"
    assert "Complete" not in conditions or conditions["Complete"]["status"] != "True"
    assert status.get("failed") == 1

    (pod,) = job_pods(cluster, namespace, "fails")
    assert pod["status"]["phase"] == "Failed"
    assert pod["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 3
    assert "step failed" in cluster.kubectl("-n", namespace, "logs", pod["metadata"]["name"]).stdout


def test_background_deletion_of_job_removes_its_pods(cluster, namespace):
    from kubernetes import client

    cluster.apply(step_job(cluster, "sleeper", command=["python3", "-c", "import time; time.sleep(600)"]), namespace)
    deadline = time.monotonic() + 180
    while True:
        pods = job_pods(cluster, namespace, "sleeper")
        if pods and pods[0]["status"].get("phase") == "Running":
            break
        assert time.monotonic() < deadline, "pod never ran:\n" + describe(cluster, namespace)
        time.sleep(0.5)

    api = cluster.api_client()
    try:
        client.BatchV1Api(api).delete_namespaced_job(
            "sleeper", namespace, body=client.V1DeleteOptions(propagation_policy="Background")
        )
        core = client.CoreV1Api(api)
        deadline = time.monotonic() + 120
        while True:
            jobs = client.BatchV1Api(api).list_namespaced_job(namespace).items
            pods = core.list_namespaced_pod(namespace, label_selector="job-name=sleeper").items
            if not jobs and not pods:
                break
            assert time.monotonic() < deadline, "pods outlived their Job:\n" + describe(cluster, namespace)
            time.sleep(0.5)
    finally:
        api.close()


class _Hello(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 (http.server's API)
        body = b"hello from the host"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):  # keep pytest output clean
        pass


def test_pod_reaches_host_ip_and_api_server(cluster, namespace):
    """Step pods reach a server on host_ip (where the tests run S3) and the API server's Service."""
    if not cluster.host_ip:
        pytest.skip("no host_ip for this cluster (set SEARCHRUN_TEST_HOST_IP)")
    server = http.server.ThreadingHTTPServer((cluster.host_ip, 0), _Hello)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    port = server.server_address[1]
    check_services = cluster.info.get("KUBE_PROXY", "1") == "1"
    script = "\n".join([
        "import os, socket, urllib.request",
        f"body = urllib.request.urlopen('http://{cluster.host_ip}:{port}/', timeout=10).read()",
        "assert body == b'hello from the host', body",
        "print('host ok')",
        "if os.environ['CHECK_SERVICES'] == '1':",
        "    host, port = os.environ['KUBERNETES_SERVICE_HOST'], int(os.environ['KUBERNETES_SERVICE_PORT'])",
        "    socket.create_connection((host, port), timeout=10).close()",
        "    print('api service ok', host, port)",
    ])
    try:
        cluster.apply(step_job(cluster, "reach", command=["python3", "-c", script],
                               env=[{"name": "CHECK_SERVICES", "value": "1" if check_services else "0"}]),
                      namespace)
        done = cluster.kubectl("-n", namespace, "wait", "--for=condition=Complete", "job/reach",
                               f"--timeout={JOB_TIMEOUT}", check=False, timeout=200)
        logs = cluster.kubectl("-n", namespace, "logs", "job/reach", check=False).stdout
        assert done.returncode == 0, logs + describe(cluster, namespace)
        assert "host ok" in logs
        if check_services:
            assert "api service ok" in logs
    finally:
        server.shutdown()
        server.server_close()
