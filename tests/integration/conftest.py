"""Fixtures for tests that need a real Kubernetes cluster.

``cluster`` (session scope) gives the tests a cluster:

* ``SEARCHRUN_TEST_KUBECONFIG=<path>`` (or ``KUBECONFIG`` together with
  ``SEARCHRUN_USE_EXISTING_CLUSTER=1``): use that cluster as it is (e.g. kind). The project image
  must already be loaded there (``kind load docker-image localhost/searchrun:0.1.0``).
  ``SEARCHRUN_TEST_HOST_IP`` names the address at which pods reach this host (tests start
  servers there); ``SEARCHRUN_TEST_IMAGE`` overrides the image tag.
* otherwise: ``hack/local-cluster.sh up`` then ``hack/build-images.sh`` (a real single-node
  cluster on this machine, needs root), and ``hack/local-cluster.sh down`` at the end of the
  session if this session started it. ``SEARCHRUN_KEEP_CLUSTER=1`` leaves it up for the next run.

When a cluster cannot be had the tests are skipped with the reason; when ``CI`` is set they fail.

``namespace`` (function scope) makes a fresh namespace per test and deletes it afterwards.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from support.console import say
from support.session import SESSION

REPO_ROOT = Path(__file__).resolve().parents[2]
HACK = REPO_ROOT / "hack"
DEFAULT_IMAGE = "localhost/searchrun:0.1.0"
CACHE = Path(os.environ.get("SEARCHRUN_CACHE", Path.home() / ".cache" / "searchrun"))


def _truthy(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


def _unavailable(reason: str) -> None:
    """Skip, or fail when running in CI (where a missing cluster is a broken setup)."""
    if os.environ.get("CI", "").strip().lower() not in {"", "0", "false", "no"}:
        pytest.fail(f"Kubernetes cluster unavailable in CI: {reason}", pytrace=False)
    pytest.skip(f"Kubernetes cluster unavailable: {reason}")


def _tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


@dataclass
class Cluster:
    """What a test needs to talk to the cluster."""

    kubeconfig: str
    kubectl_path: str
    helm_path: str | None
    host_ip: str | None
    image: str
    started_here: bool = False
    info: dict[str, str] = field(default_factory=dict)

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["KUBECONFIG"] = self.kubeconfig
        return env

    def kubectl(
        self,
        *args: str,
        input: str | None = None,
        check: bool = True,
        timeout: float = 180,
    ) -> subprocess.CompletedProcess[str]:
        """Run kubectl against the cluster; raises with kubectl's stderr on failure when check."""
        proc = subprocess.run(
            [self.kubectl_path, "--kubeconfig", self.kubeconfig, *args],
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"kubectl {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}{proc.stdout}"
            )
        return proc

    def kubectl_json(self, *args: str, **kw: Any) -> Any:
        return json.loads(self.kubectl(*args, "-o", "json", **kw).stdout)

    def apply(self, obj: dict[str, Any] | list[dict[str, Any]], namespace: str | None = None) -> None:
        items = obj if isinstance(obj, list) else [obj]
        doc = json.dumps({"apiVersion": "v1", "kind": "List", "items": items})
        args = ["apply", "-f", "-"]
        if namespace:
            args += ["-n", namespace]
        self.kubectl(*args, input=doc)

    def helm(self, *args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        if not self.helm_path:
            pytest.skip("helm is not available")
        proc = subprocess.run(
            [self.helm_path, "--kubeconfig", self.kubeconfig, *args],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"helm {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}{proc.stdout}")
        return proc

    def api_client(self):  # -> kubernetes.client.ApiClient
        """A kubernetes Python client bound to this cluster (not the process-wide default)."""
        from kubernetes import config

        return config.new_client_from_config(config_file=self.kubeconfig)


def _find_tool(env_var: str, name: str, cached: Path | None) -> str | None:
    if os.environ.get(env_var):
        return os.environ[env_var]
    if cached is not None and cached.is_file() and os.access(cached, os.X_OK):
        return str(cached)
    return shutil.which(name)


def _versions() -> dict[str, str]:
    out: dict[str, str] = {}
    for line in (HACK / "versions.env").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            k, v = line.split("=", 1)
            out[k] = v.strip().strip('"')
    return out


def _existing_cluster() -> Cluster | None:
    kubeconfig = os.environ.get("SEARCHRUN_TEST_KUBECONFIG")
    if not kubeconfig and _truthy("SEARCHRUN_USE_EXISTING_CLUSTER"):
        kubeconfig = os.environ.get("KUBECONFIG", str(Path.home() / ".kube" / "config"))
        kubeconfig = kubeconfig.split(os.pathsep)[0]
    if not kubeconfig:
        return None
    v = _versions()
    kubectl = _find_tool("SEARCHRUN_KUBECTL", "kubectl", CACHE / "bin" / f"k8s-{v.get('K8S_VERSION')}" / "kubectl")
    helm = _find_tool("SEARCHRUN_HELM", "helm", CACHE / "bin" / f"helm-{v.get('HELM_VERSION')}" / "helm")
    if not Path(kubeconfig).is_file():
        _unavailable(f"kubeconfig {kubeconfig} does not exist")
    if not kubectl:
        _unavailable("kubectl not found (put it on PATH or set SEARCHRUN_KUBECTL)")
    return Cluster(
        kubeconfig=kubeconfig,
        kubectl_path=kubectl,
        helm_path=helm,
        host_ip=os.environ.get("SEARCHRUN_TEST_HOST_IP") or None,
        image=os.environ.get("SEARCHRUN_TEST_IMAGE", DEFAULT_IMAGE),
    )


def _read_env_file(path: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in path.read_text().splitlines():
        if "=" in line:
            k, v = line.split("=", 1)
            out[k.strip()] = v.strip()
    return out


def _run_logged(cmd: list[str], log: Path, timeout: float) -> subprocess.CompletedProcess[str]:
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as f:
        return subprocess.run(cmd, stdout=subprocess.PIPE, stderr=f, text=True, timeout=timeout)


def _local_cluster() -> Cluster:
    if not sys.platform.startswith("linux"):
        _unavailable(f"the local cluster needs Linux (this is {sys.platform}); set SEARCHRUN_TEST_KUBECONFIG")
    if os.geteuid() != 0:
        _unavailable(
            "the local cluster (hack/local-cluster.sh) must run as root; run the tests as root "
            "or set SEARCHRUN_TEST_KUBECONFIG to an existing cluster (e.g. kind)"
        )
    v = _versions()
    k8s_bin = CACHE / "bin" / f"k8s-{v.get('K8S_VERSION')}"
    if not (k8s_bin / ".complete").is_file() and not shutil.which("go"):
        _unavailable(f"Kubernetes binaries are not cached in {k8s_bin} and `go` is not installed to build them")
    script = HACK / "local-cluster.sh"
    logs = CACHE / "test-logs"
    with _setup_lock(logs):  # two sessions at once (hack/test.sh): one builds the image, the other waits
        return _local_cluster_up(script, logs)


@contextmanager
def _setup_lock(logs: Path):
    logs.mkdir(parents=True, exist_ok=True)
    with (logs / ".cluster-setup.lock").open("w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _local_cluster_up(script: Path, logs: Path) -> Cluster:
    suffix = "" if SESSION == "solo" else f"-{SESSION}"  # each session's own logs

    already_up = subprocess.run([str(script), "status"], capture_output=True, text=True).returncode == 0
    t0 = time.monotonic()
    up_log, image_log = logs / f"local-cluster-up{suffix}.log", logs / f"build-images{suffix}.log"
    say(f"local cluster: {'already up, checking it' if already_up else 'bringing it up'} "
        f"(cache {CACHE}; logs {up_log}, {image_log})")
    try:
        up = _run_logged([str(script), "up"], up_log, timeout=3600)
    except subprocess.TimeoutExpired:
        _unavailable(f"hack/local-cluster.sh up timed out (log: {up_log})")
    if up.returncode != 0:
        _unavailable(
            f"hack/local-cluster.sh up failed (exit {up.returncode}); log {up_log}:\n" + _tail(up_log)
        )
    started_here = not already_up
    cluster: Cluster | None = None
    try:
        env = _read_env_file(Path(up.stdout.strip().splitlines()[-1]).parent / "env")
        say(f"local cluster ready in {time.monotonic() - t0:.0f} s; building and loading the image")
        t1 = time.monotonic()
        try:
            img = _run_logged([str(HACK / "build-images.sh")], image_log, timeout=3600)
        except subprocess.TimeoutExpired:
            _unavailable(f"hack/build-images.sh timed out (log: {image_log})")
        if img.returncode != 0:
            _unavailable(
                f"hack/build-images.sh failed (exit {img.returncode}); log {image_log}:\n" + _tail(image_log)
            )
        cluster = Cluster(
            kubeconfig=env["KUBECONFIG"],
            kubectl_path=env["KUBECTL"],
            helm_path=env.get("HELM"),
            host_ip=env.get("HOST_IP"),
            image=img.stdout.strip().splitlines()[-1],
            started_here=started_here,
            info=env,
        )
        say(f"image {cluster.image} loaded in {time.monotonic() - t1:.0f} s; cluster and image ready in "
            f"{time.monotonic() - t0:.0f} s (started here: {started_here}); KUBECONFIG={cluster.kubeconfig}")
        return cluster
    finally:
        if cluster is None and started_here and not _truthy("SEARCHRUN_KEEP_CLUSTER"):
            subprocess.run([str(script), "down"], capture_output=True, text=True)


# Every session on the cluster holds this lock shared; a test that disturbs the whole cluster
# (cluster_to_itself) holds it exclusive, so that it waits for the other sessions to end.
SESSIONS_LOCK = CACHE / "test-logs" / ".cluster-sessions.lock"
_sessions_lock: dict = {}


@pytest.fixture(scope="session")
def cluster() -> Cluster:
    c = _existing_cluster() or _local_cluster()
    SESSIONS_LOCK.parent.mkdir(parents=True, exist_ok=True)
    _sessions_lock["file"] = SESSIONS_LOCK.open("w")
    fcntl.flock(_sessions_lock["file"], fcntl.LOCK_SH)
    try:
        probe = c.kubectl("get", "--raw", "/readyz", check=False, timeout=30)
        if probe.returncode != 0:
            _unavailable(f"API server at {c.kubeconfig} is not ready: {probe.stderr.strip()}")
        yield c
    finally:
        _sessions_lock.pop("file").close()  # closing releases it
        if c.started_here and not _truthy("SEARCHRUN_KEEP_CLUSTER"):
            subprocess.run([str(HACK / "local-cluster.sh"), "down"], capture_output=True, text=True)


@pytest.fixture
def cluster_to_itself(cluster: Cluster):
    """The cluster, once no other test session uses it (for tests marked cluster_exclusive, which
    tests/conftest.py orders last): this session's shared lock becomes exclusive for the test."""
    f = _sessions_lock["file"]
    t0 = time.monotonic()
    fcntl.flock(f, fcntl.LOCK_EX)  # converts this session's shared lock
    if (waited := time.monotonic() - t0) > 1:
        say(f"waited {waited:.0f} s for the other test sessions on the cluster to end")
    try:
        yield cluster
    finally:
        fcntl.flock(f, fcntl.LOCK_SH)


@pytest.fixture
def namespace(cluster: Cluster):
    """A fresh namespace for one test, deleted afterwards (with everything in it)."""
    name = f"srtest-{uuid.uuid4().hex[:8]}"
    cluster.kubectl("create", "namespace", name)
    # Pods cannot be created before the namespace's default ServiceAccount exists.
    deadline = time.monotonic() + 60
    while cluster.kubectl("-n", name, "get", "serviceaccount", "default", check=False).returncode != 0:
        if time.monotonic() > deadline:
            raise AssertionError(f"no default ServiceAccount in {name} after 60 s")
        time.sleep(0.3)
    try:
        yield name
    finally:
        cluster.kubectl("delete", "namespace", name, "--wait=false", "--ignore-not-found", check=False)
