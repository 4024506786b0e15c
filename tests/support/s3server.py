"""A real S3-compatible server as a subprocess, over HTTP: SeaweedFS (``weed server -s3``, built
from its Go module by hack/build-s3-server.sh), or moto's server mode only when that binary
cannot be had (or ``SEARCHRUN_S3_SERVER=moto`` asks for it); the console line says which."""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from . import seaweedfs
from .console import say

_announced_backend: set[str] = set()


def choose_backend() -> tuple[str, Path | None, str]:
    """``(backend, weed, why)``: "seaweedfs" with its binary, or "moto" and why not SeaweedFS."""
    wanted = os.environ.get("SEARCHRUN_S3_SERVER", "seaweedfs")
    if wanted == "moto":
        return "moto", None, os.environ.get("SEARCHRUN_S3_MOTO_WHY") or "SEARCHRUN_S3_SERVER=moto"
    if wanted != "seaweedfs":
        raise ValueError(f"SEARCHRUN_S3_SERVER must be 'seaweedfs' or 'moto', not {wanted!r}")
    weed, why = seaweedfs.weed_binary()
    return ("seaweedfs", weed, "") if weed else ("moto", None, why)


class S3Server:
    """One S3 server on ``host:port``. ``stop()``/``start()`` reuse the same host and port.

    SeaweedFS keeps its buckets and objects on disk (a folder beside ``log_path``), so they
    survive a restart, as on any real server; moto keeps them in memory and loses them
    (``persistent`` says which)."""

    access_key = "searchrun-tests"
    region = "us-east-1"

    def __init__(self, host: str, port: int, log_path: Path):
        self.host = host
        self.port = port
        self.log_path = log_path
        self.backend, self._weed, self.fallback_reason = choose_backend()
        self.persistent = self.backend == "seaweedfs"
        # moto accepts any key; SeaweedFS checks every request's signature against this one
        self.secret_key = secrets.token_hex(20) if self.persistent else "testing"
        self.data_dir = log_path.parent / f"seaweedfs-{port}"
        self._ports: dict[str, int] = {}
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
            config=Config(s3={"addressing_style": "path"}, request_checksum_calculation="when_required",
                          response_checksum_validation="when_required"),
        )
        return self._client

    def _command(self) -> list[str]:
        if self.backend == "seaweedfs":
            if not self._ports:  # chosen once: a restart listens where the first start did
                names = ("master", "master_grpc", "volume", "volume_grpc", "filer", "filer_grpc")
                self._ports = {n: free_port(seaweedfs.LOOPBACK) for n in names}
                self._ports["s3_grpc"] = free_port(self.host)
            self.data_dir.mkdir(parents=True, exist_ok=True)
            config = self.data_dir / "s3-identities.json"
            seaweedfs.write_identities(config, self.access_key, self.secret_key)
            return seaweedfs.server_command(self._weed, self.data_dir, config, self.host, self.port, self._ports)
        exe = Path(sys.executable).with_name("moto_server")
        if exe.exists():
            return [str(exe), "-H", self.host, "-p", str(self.port)]
        return [sys.executable, "-m", "moto.server", "-H", self.host, "-p", str(self.port)]

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout: float = 90.0) -> None:
        if self.running:
            return
        command = self._command()
        if self.backend == "seaweedfs":
            env, cwd = seaweedfs.server_env(), self.data_dir  # weed reads *.toml from its cwd
        else:
            env, cwd = dict(os.environ), None
            env.pop("MOTO_CALL_RESET_API", None)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         env=env, cwd=cwd)
        t0 = time.monotonic()
        deadline = t0 + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.backend} exited with {self.proc.returncode}: {self._log_tail()}")
            if self._ready():
                self._warm_up()
                return self._up(t0)
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"{self.backend} did not answer on {self.endpoint_url} within {timeout}s: {self._log_tail()}")

    def _ready(self) -> bool:
        """Ready for writes: SeaweedFS's master hands out a file id (a volume is writable) and
        the S3 gateway answers a signed request; moto answers its own API."""
        if self.backend == "moto":
            return _http_ok(self.endpoint_url + "/moto-api/")
        if not _http_ok(f"http://{seaweedfs.LOOPBACK}:{self._ports['master']}/dir/assign", expect=b'"fid"'):
            return False
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.client().list_buckets()
            return True
        except (BotoCoreError, ClientError):
            return False

    def _warm_up(self) -> None:
        """A fresh SeaweedFS takes ~5 s over its first object write (the first volume it grows),
        later buckets' first writes ~0.2 s: pay it here, once, so that it does not land in the
        first test or benchmark run (whose first step's result would not be readable in time)."""
        if self.backend != "seaweedfs" or self._announced:
            return
        from botocore.exceptions import BotoCoreError, ClientError

        c, bucket = self.client(), "s3server-warm-up"
        try:
            c.create_bucket(Bucket=bucket)
            c.put_object(Bucket=bucket, Key="warm-up", Body=b"")
            c.delete_object(Bucket=bucket, Key="warm-up")
            c.delete_bucket(Bucket=bucket)
        except (BotoCoreError, ClientError) as e:  # only a head start: the server is up either way
            say(f"S3 server: warm-up write failed ({e}); the first write may take seconds")

    def _up(self, t0: float) -> None:
        if not self._announced:  # the first start only: some tests restart it many times
            self._announced = True
            say(f"S3 server ({self.backend}) up at {self.endpoint_url} in {time.monotonic() - t0:.1f} s")
            if self.fallback_reason and self.backend not in _announced_backend:
                _announced_backend.add(self.backend)
                say(f"S3 server: moto instead of SeaweedFS: {self.fallback_reason}")

    def stop(self) -> None:
        """Stop the server (by its own pid). SeaweedFS keeps its data for the next start()."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)

    def close(self) -> None:
        """Stop the server and delete its data (the end of the fixture that started it)."""
        self.stop()
        shutil.rmtree(self.data_dir, ignore_errors=True)

    def _log_tail(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-800:]
        except OSError:
            return "(no log)"


def _http_ok(url: str, expect: bytes = b"") -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status < 500 and expect in r.read()
    except urllib.error.HTTPError as e:
        return e.code < 500 and not expect
    except (OSError, urllib.error.URLError):
        return False


def free_port(host: str) -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((host or "0.0.0.0", 0))
        return s.getsockname()[1]
