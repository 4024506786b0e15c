"""A real S3-compatible server (moto's server mode) as a subprocess, over HTTP."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from .console import say


class S3Server:
    """A moto_server subprocess. ``stop()``/``start()`` reuse the same host and port."""

    access_key = "testing"
    secret_key = "testing"
    region = "us-east-1"

    def __init__(self, host: str, port: int, log_path: Path):
        self.host = host
        self.port = port
        self.log_path = log_path
        self.proc: subprocess.Popen | None = None
        self._client = None
        self._announced = False

    @property
    def endpoint_url(self) -> str:
        host = "127.0.0.1" if self.host in ("", "0.0.0.0") else self.host
        if ":" in host:  # IPv6 literal
            host = f"[{host}]"
        return f"http://{host}:{self.port}"

    def env(self) -> dict[str, str]:
        return {
            "SEARCHRUN_S3_ENDPOINT_URL": self.endpoint_url,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_DEFAULT_REGION": self.region,
        }

    def client(self):
        """A boto3 client for this server (cached; boto3 clients are thread-safe)."""
        if self._client is not None:
            return self._client
        import boto3
        from botocore.config import Config

        self._client = boto3.session.Session().client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name=self.region,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            config=Config(s3={"addressing_style": "path"}),
        )
        return self._client

    def _command(self) -> list[str]:
        exe = Path(sys.executable).with_name("moto_server")
        if exe.exists():
            return [str(exe), "-H", self.host, "-p", str(self.port)]
        return [sys.executable, "-m", "moto.server", "-H", self.host, "-p", str(self.port)]

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout: float = 30.0) -> None:
        if self.running:
            return
        env = dict(os.environ)
        env.pop("MOTO_CALL_RESET_API", None)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                self._command(), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env
            )
        t0 = time.monotonic()
        deadline = t0 + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"moto_server exited with {self.proc.returncode}: {self._log_tail()}")
            try:
                with urllib.request.urlopen(self.endpoint_url + "/moto-api/", timeout=1) as r:
                    if r.status < 500:
                        return self._up(t0)
            except urllib.error.HTTPError as e:
                if e.code < 500:
                    return self._up(t0)
            except (OSError, urllib.error.URLError):
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"moto_server did not answer on {self.endpoint_url} within {timeout}s: {self._log_tail()}")

    def _up(self, t0: float) -> None:
        if not self._announced:  # the first start only: some tests restart it many times
            self._announced = True
            say(f"S3 server (moto) up at {self.endpoint_url} in {time.monotonic() - t0:.1f} s")

    def stop(self) -> None:
        """Stop the server (by its own pid). State is lost: moto keeps it in memory."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)

    def _log_tail(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-800:]
        except OSError:
            return "(no log)"


def free_port(host: str) -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((host or "0.0.0.0", 0))
        return s.getsockname()[1]
