"""The operator as a process on this machine, against a cluster (as a developer runs it)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import yaml

from .console import say
from .runs import with_test_agent_endpoints
from .s3server import S3Server, free_port
from .session import WEBHOOK_CONFIG, operator_webhook_config


class Operator:
    """``kubectl(*args, check=...)`` is the only thing it needs of ``cluster`` besides ``kubeconfig``."""

    def __init__(self, cluster, s3: S3Server, config: dict, workdir: Path, namespaces: str, bucket: str = "searchrun"):
        self.cluster, self.s3, self.workdir = cluster, s3, workdir
        self.config_path = workdir / "operator.yaml"
        config = {**with_test_agent_endpoints(config, getattr(cluster, "host_ip", None)), **operator_webhook_config()}
        self.config_path.write_text(yaml.safe_dump(config))
        self.namespace_selector = config["webhookNamespaceSelector"]
        self.namespaces, self.bucket = namespaces, bucket
        self.metrics_port = free_port("127.0.0.1")
        self.webhook_port = free_port("127.0.0.1")
        self.liveness_port = free_port("127.0.0.1")
        self.proc: subprocess.Popen | None = None
        self.log_path = workdir / "operator.log"
        self.starts = 0

    def start(self) -> None:
        env = dict(os.environ)
        env.update(self.s3.env())
        env["KUBECONFIG"] = self.cluster.kubeconfig
        cmd = [sys.executable, "-m", "searchrun", "operator", "--config", str(self.config_path),
               "--artifacts", f"s3://{self.bucket}", "--step-s3-endpoint-url", self.s3.endpoint_url,
               "--metrics-port", str(self.metrics_port), "--metrics-addr", "127.0.0.1",
               "--webhook-addr", "127.0.0.1", "--webhook-host", "127.0.0.1", "--webhook-port", str(self.webhook_port),
               "--webhook-managed", "--liveness", f"http://127.0.0.1:{self.liveness_port}/healthz",
               "--namespace", self.namespaces]
        self.starts += 1
        with open(self.log_path, "ab") as log:
            log.write(f"\n===== start {self.starts} =====\n".encode())
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
        t0 = time.monotonic()
        deadline = t0 + 60
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"operator exited: {self.log_tail()}"
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.liveness_port}/healthz", timeout=1):
                    pass
                if self.webhooks_in_place():
                    if self.starts == 1:  # restarts (crash tests) stay quiet
                        say(f"operator up in {time.monotonic() - t0:.0f} s (log {self.log_path})")
                    return
            except OSError:
                pass
            time.sleep(0.3)
        raise AssertionError(f"operator not ready in 60s: {self.log_tail()}")

    def webhooks_in_place(self) -> bool:
        """Both managed configurations hold their webhooks, each scoped to this session's
        namespaces (kopf creates a configuration empty, then fills it)."""
        got = self.cluster.kubectl("get", f"validatingwebhookconfiguration/{WEBHOOK_CONFIG}",
                                   f"mutatingwebhookconfiguration/{WEBHOOK_CONFIG}", "-o", "json", check=False)
        if got.returncode != 0:
            return False
        items = json.loads(got.stdout).get("items", [])
        hooks = [h for item in items for h in item.get("webhooks") or []]
        if len(items) != 2 or not all(item.get("webhooks") for item in items):
            return False
        scoped = [h.get("namespaceSelector") == self.namespace_selector for h in hooks]
        assert all(scoped), f"managed webhooks not scoped to {self.namespace_selector}: {hooks}"
        return True

    def kill(self) -> None:
        """SIGKILL: no cleanup, as a crash."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as r:
            return r.read().decode()

    def log_tail(self, n: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return ""


    def status_kib(self, field: str) -> int:
        """A /proc/PID/status figure in KiB (VmRSS, VmHWM); 0 once the process is gone."""
        try:
            with open(f"/proc/{self.proc.pid}/status") as f:
                for line in f:
                    if line.startswith(field + ":"):
                        return int(line.split()[1])
        except OSError:
            pass
        return 0

    def rss_kib(self) -> int:
        return self.status_kib("VmRSS")

    def cpu_seconds(self) -> float:
        with open(f"/proc/{self.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def delete_webhook_configurations(self) -> None:
        """kopf leaves its managed configurations behind; with failurePolicy Fail they would
        block SearchRuns once no operator answers."""
        for kind in ("validatingwebhookconfiguration", "mutatingwebhookconfiguration"):
            self.cluster.kubectl("delete", kind, WEBHOOK_CONFIG, "--ignore-not-found", check=False)
