"""SeaweedFS as the tests' S3 server: where its binary comes from, and how it is started.

The binary is ``weed`` from the Go module github.com/seaweedfs/seaweedfs at the version pinned in
hack/versions.env, built once by hack/build-s3-server.sh into the cache (as the cluster's binaries
are). One ``weed server -s3`` process runs a master, a volume server, a filer (its metadata in
leveldb under the data folder) and the S3 gateway. Only the gateway listens on the address the
caller gives (the cluster bridge, for step pods); the rest listen on loopback. Telemetry is off:
nothing leaves the machine.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from functools import lru_cache
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO / "hack" / "build-s3-server.sh"
LOOPBACK = "127.0.0.1"


def pinned_version() -> str:
    for line in (REPO / "hack" / "versions.env").read_text().splitlines():
        if line.startswith("SEAWEEDFS_VERSION="):
            return line.split("=", 1)[1].strip()
    raise RuntimeError("hack/versions.env pins no SEAWEEDFS_VERSION")


def cache_dir() -> Path:
    return Path(os.environ.get("SEARCHRUN_CACHE") or Path.home() / ".cache" / "searchrun")


@lru_cache(maxsize=1)
def weed_binary() -> tuple[Path | None, str]:
    """``(path, "")`` of the cached ``weed``, building it first if needed (minutes when cold; the
    script's progress lines reach the console), or ``(None, why)`` when it cannot be had."""
    out = cache_dir() / "bin" / f"seaweedfs-{pinned_version()}"
    if (out / ".complete").is_file() and (out / "weed").is_file():
        return out / "weed", ""
    if shutil.which("go") is None:
        return None, "no Go toolchain to build SeaweedFS (hack/build-s3-server.sh)"
    log = cache_dir() / "test-logs" / "build-s3-server.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as f:
        proc = subprocess.run([str(BUILD_SCRIPT)], stdout=subprocess.PIPE, stderr=f, stdin=subprocess.DEVNULL, timeout=3600)
    path = Path(proc.stdout.decode().strip().splitlines()[-1]) if proc.stdout.strip() else None
    if proc.returncode != 0 or path is None or not path.is_file():
        return None, f"hack/build-s3-server.sh failed (exit {proc.returncode}; see {log})"
    return path, ""


def write_identities(path: Path, access_key: str, secret_key: str) -> None:
    """The S3 gateway's static identities (``-s3.config``): one user allowed everything."""
    config = {"identities": [{"name": "searchrun-tests",
                              "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
                              "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}
    path.write_text(json.dumps(config, indent=2))
    path.chmod(0o600)


def server_command(weed: Path, data_dir: Path, config: Path, host: str, port: int, ports: dict[str, int]) -> list[str]:
    """``weed server`` with master, volume, filer and S3 in one process, every port chosen by the
    caller (``ports``: master, master_grpc, volume, volume_grpc, filer, filer_grpc, s3_grpc)."""
    p = ports
    return [
        str(weed), "server",
        f"-dir={data_dir}", f"-ip={LOOPBACK}", f"-ip.bind={LOOPBACK}",
        "-master.peers=none", "-master.telemetry=false", "-master.volumeSizeLimitMB=64",
        f"-master.port={p['master']}", f"-master.port.grpc={p['master_grpc']}",
        f"-volume.port={p['volume']}", f"-volume.port.grpc={p['volume_grpc']}",
        "-volume.max=1000", "-volume.preStopSeconds=0",
        "-filer", f"-filer.port={p['filer']}", f"-filer.port.grpc={p['filer_grpc']}",
        f"-filer.localSocket={data_dir / 'filer.sock'}",
        "-s3", f"-s3.ip.bind={host}", f"-s3.port={port}", f"-s3.port.grpc={p['s3_grpc']}",
        "-s3.port.iceberg=0", "-s3.port.lance=0", f"-s3.localSocket={data_dir / 's3.sock'}",
        f"-s3.config={config}",
        # as on AWS: a PUT into a bucket that does not exist fails (NoSuchBucket)
        "-s3.autoCreateBucket=false",
    ]


def server_env() -> dict[str, str]:
    """The caller's environment without what would configure weed behind the command line, and
    one volume per bucket (each bucket is a collection; the default of 7 would run a session
    that creates hundreds of buckets out of volumes)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "WEED_"))}
    env["WEED_MASTER_VOLUME_GROWTH_COPY_1"] = "1"
    return env
