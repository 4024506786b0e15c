"""Helpers of the reliability suite (tests/reliability): S3 behind a proxy, the operator as a
process, watched namespaces, and figures (measured, printed, never asserted on)."""

from __future__ import annotations

import os
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

from .operator_process import Operator
from .runs import BUCKET, REPO, TEST_OPERATOR_CONFIG
from .s3server import S3Server
from .session import label_args, namespace_prefix
from .tcpproxy import TcpProxy

NS_PREFIX = namespace_prefix("srrel")  # the operators started by the suite watch only these namespaces


class ProxiedS3:
    """What ``Operator`` needs of an S3 server, with the endpoint being the proxy."""

    def __init__(self, server: S3Server, proxy: TcpProxy):
        self.server, self.proxy = server, proxy
        self.access_key, self.secret_key, self.region = server.access_key, server.secret_key, server.region

    @property
    def endpoint_url(self) -> str:
        return f"http://{self.proxy.host}:{self.proxy.port}"

    def env(self) -> dict[str, str]:
        return {**self.server.env(), "SEARCHRUN_S3_ENDPOINT_URL": self.endpoint_url}

    def client(self):
        """A client that talks to the S3 server directly (not through the proxy)."""
        return self.server.client()

    def keys(self, prefix: str = "") -> list[str]:
        out: list[str] = []
        for page in self.client().get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix):
            out += [o["Key"] for o in page.get("Contents", [])]
        return out


DEFAULT_CONFIG = TEST_OPERATOR_CONFIG


@contextmanager
def running_operator(cluster, s3, workdir: Path, config: dict | None = None):
    """The operator as a process watching ``srrel-<session>-*``, with kopf-managed webhooks (failurePolicy Fail)."""
    cluster.kubectl("apply", "-f", str(REPO / "crds"))
    cluster.kubectl("wait", "--for=condition=Established", "crd/searchruns.searchrun.dev", "--timeout=60s")
    op = Operator(cluster, s3, config or DEFAULT_CONFIG, workdir, namespaces=f"{NS_PREFIX}*", bucket=BUCKET)
    op.start()
    try:
        yield op
    finally:
        op.stop()
        op.delete_webhook_configurations()


def make_namespace(cluster, s3, labels: dict[str, str] | None = None) -> str:
    """A fresh watched namespace with the Secret step pods read their S3 credentials from."""
    ns = f"{NS_PREFIX}{uuid.uuid4().hex[:8]}"
    cluster.kubectl("create", "namespace", ns)
    cluster.kubectl("label", "namespace", ns, *label_args(), *[f"{k}={v}" for k, v in (labels or {}).items()])
    cluster.kubectl("-n", ns, "create", "secret", "generic", "searchrun-s3",
                    f"--from-literal=AWS_ACCESS_KEY_ID={s3.access_key}",
                    f"--from-literal=AWS_SECRET_ACCESS_KEY={s3.secret_key}")
    deadline = time.monotonic() + 60
    while cluster.kubectl("-n", ns, "get", "serviceaccount", "default", check=False).returncode != 0:
        assert time.monotonic() < deadline, f"no default ServiceAccount in {ns}"
        time.sleep(0.3)
    return ns


def delete_namespace(cluster, ns: str) -> None:
    cluster.kubectl("delete", "namespace", ns, "--wait=false", "--ignore-not-found", check=False)


FIGURES: list[tuple[str, str]] = []
FIGURES_FILE = Path(os.environ.get("SEARCHRUN_CACHE", Path.home() / ".cache" / "searchrun")) / "test-logs" / "reliability-figures.txt"


def figure(name: str, value) -> None:
    """Record a measured figure: printed at the end of the session and appended to
    FIGURES_FILE (RELIABILITY.md quotes them). Figures are reported, never asserted on."""
    FIGURES.append((name, str(value)))
    FIGURES_FILE.parent.mkdir(parents=True, exist_ok=True)
    with FIGURES_FILE.open("a") as f:
        f.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')}  {name}: {value}\n")


class JobRecorder:
    """Every Job the API server ever showed in a namespace (name -> set of uids), from a list
    and a watch kept from the start of a test to its end. A Job created twice (deleted and
    created again under its deterministic name) shows up as two uids."""

    def __init__(self, cluster, namespace: str):
        import threading

        self.cluster, self.namespace = cluster, namespace
        self.uids: dict[str, set[str]] = {}
        self.labels: dict[str, dict] = {}
        self.watch_restarts = 0
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name=f"jobrecorder-{namespace}")

    def __enter__(self) -> "JobRecorder":
        self._thread.start()
        assert self._ready.wait(30), "job recorder: no initial list"
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(15)

    def _see(self, job: dict) -> None:
        meta = job["metadata"]
        self.uids.setdefault(meta["name"], set()).add(meta["uid"])
        self.labels[meta["name"]] = dict(meta.get("labels") or {})

    def _run(self) -> None:
        from kubernetes import client, watch

        api = self.cluster.api_client()
        batch = client.BatchV1Api(api)
        while not self._stop.is_set():
            try:
                lst = batch.list_namespaced_job(self.namespace)
                for j in lst.items:
                    self._see(api.sanitize_for_serialization(j))
                self._ready.set()
                w = watch.Watch()
                for ev in w.stream(batch.list_namespaced_job, self.namespace, resource_version=lst.metadata.resource_version,
                                   timeout_seconds=5, _request_timeout=15):
                    if ev["type"] in ("ADDED", "MODIFIED", "DELETED"):
                        self._see(api.sanitize_for_serialization(ev["object"]))
                    if self._stop.is_set():
                        w.stop()
                        break
            except Exception:  # the API server restarts in one test: list again
                self.watch_restarts += 1
                time.sleep(0.5)

    def duplicates(self) -> dict[str, set[str]]:
        return {n: u for n, u in self.uids.items() if len(u) > 1}
