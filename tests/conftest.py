"""Shared fixtures. Keep this small; add fixtures in their own sections.

S3: ``s3_server`` runs a REAL S3-compatible server as a subprocess over HTTP, once per session:
SeaweedFS (built once by hack/build-s3-server.sh and cached), or moto's server mode when that
cannot be had (the console says so and why; ``SEARCHRUN_S3_SERVER=moto`` asks for moto). Env
``SEARCHRUN_S3_HOST`` overrides the bind host (cluster tests set it to an address pods can reach).
If no server can start, tests using it are skipped, unless env ``CI`` is set, in which case they
fail. After ``stop()``/``start()`` (same port) SeaweedFS still has every bucket and object (on
disk); moto has lost them (``s3_server.persistent`` says which).

Model server: ``model_server`` runs a REAL OpenAI-compatible server (llama.cpp through
llama-cpp-python, with SmolLM2-135M-Instruct from a PyPI package) on 127.0.0.1 with an API key,
once per session; ``model_server_build`` is what ``hack/model-server.sh`` built and cached (the
cluster tests start a second server on the bridge address). Skipped when it cannot be had,
failed when ``CI`` is set.

Order: the tests that use the model server run at the end of the session (its wheel may still be
building in the background; see hack/test.sh).

Console: the session's milestones (S3 up, cluster up, image loaded, operator up) and the build
scripts' progress lines reach the console past pytest's capture (``support.console``).
Cache: ``SEARCHRUN_CACHE`` defaults to ``~/.cache/searchrun``, as in the hack/ scripts and CI.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
import uuid
from pathlib import Path

import pytest

from support import console
from support.model_server import ModelServerUnavailable, ensure_built, no_model_server, start_model_server
from support.s3server import S3Server, free_port

# One cache for the session and every script it runs (hack/*.sh default to the same place).
os.environ.setdefault("SEARCHRUN_CACHE", str(Path.home() / ".cache" / "searchrun"))


def pytest_configure(config):
    console.attach(config)


def pytest_collection_modifyitems(session, config, items):
    """The tests that need the model server run last: hack/test.sh builds its wheel in the
    background at the lowest CPU priority, on what the other tests leave idle. After them, the
    tests that disturb the whole cluster: they wait for the other session on it to end."""
    items.sort(key=lambda item: ("model_server_build" in item.fixturenames,
                                 item.get_closest_marker("cluster_exclusive") is not None))  # stable

# ------------------------------------------------------------------ S3 (SeaweedFS, or moto)


@pytest.fixture(scope="session")
def s3_server():
    host = os.environ.get("SEARCHRUN_S3_HOST", "127.0.0.1")
    logdir = Path(tempfile.mkdtemp(prefix="searchrun-s3-"))
    server = None
    try:
        server = S3Server(host, free_port(host), logdir / "s3-server.log")
        server.start()
    except Exception as e:  # noqa: BLE001 - any failure to start means "no S3 here"
        if server is not None:
            server.stop()
        shutil.rmtree(logdir, ignore_errors=True)
        backend = server.backend if server is not None else "S3 server"
        reason = f"cannot start {backend} (S3) on {host}: {e}"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(logdir, ignore_errors=True)


@pytest.fixture
def s3_bucket(s3_server, monkeypatch):
    """A fresh bucket; returns ``s3://<bucket>/prefix``. Also points the S3 env vars
    (``s3_server.env()``) at the server for the test, so ``open_store``/``S3Store`` find it."""
    s3_server.start()  # no-op if running; recovers from a test that stopped it
    for k, v in s3_server.env().items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("AWS_REGION", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    bucket = f"searchrun-test-{uuid.uuid4().hex[:12]}"
    s3_server.client().create_bucket(Bucket=bucket)
    return f"s3://{bucket}/prefix"


# ------------------------------------------------------------------ model server (llama.cpp)


@pytest.fixture(scope="session")
def model_server_build() -> tuple[str, str]:
    """(the model server venv's python, the GGUF), built once and cached by hack/model-server.sh."""
    log = Path(os.environ["SEARCHRUN_CACHE"]) / "test-logs" / "model-server.log"
    console.say(f"model server: building or taking the cached llama-cpp-python wheel and model (log {log})")
    t0 = time.monotonic()
    try:
        built = ensure_built(log)  # waits for hack/test.sh's background build, if one is running
        console.say(f"model server: wheel and model ready after {time.monotonic() - t0:.0f} s")
        return built
    except ModelServerUnavailable as e:
        no_model_server(f"no model server: {e}")


@pytest.fixture(scope="session")
def model_server(model_server_build, tmp_path_factory):
    server = start_model_server(model_server_build, "127.0.0.1", tmp_path_factory.mktemp("model-server"))
    try:
        yield server
    finally:
        server.stop()
