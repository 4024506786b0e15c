"""Error bodies never reach what users read (issue 15, item 1): an agent endpoint or an S3
server that answers with a page holding a secret-looking string fails the step with the
HTTP status, a fixed reason and the request id, and the string is in no message: not the
step's result (a Job's termination message), not its output, not the run's status.

The peers are local HTTP servers (tests/support/fake_openai.py, and a server here that
answers every S3 request with a page of its own) on 127.0.0.1."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from searchrun.api import AgentSpec, CorpusRef
from searchrun.artifacts import ArtifactError, S3Store, s3_client_from_env
from searchrun.endpoint_policy import POLICY_ENV, AgentEndpointPolicy
from searchrun.steps import STEP_ENV, StepContext
from support.fake_openai import FakeOpenAI

SECRET = "AKIAIOSFODNN7EXAMPLE-leak"
PAGE = f"<html><body><h1>Internal error</h1><p>aws_access_key_id = {SECRET}</p><pre>trace at node-7</pre></body></html>"
# what a cluster's operator passes: the local server is allowed explicitly (it listens on loopback)
POLICY = AgentEndpointPolicy(allow=["127.0.0.1"], cidrs=["127.0.0.1/32"])


@pytest.fixture
def leaky_llm():
    server = FakeOpenAI("127.0.0.1")
    server.error_reply = (500, PAGE)
    yield server
    server.close()


def assert_clean(where: str, text: str) -> None:
    assert SECRET not in text and "AKIAIOSFODNN7EXAMPLE" not in text, f"the secret is in {where}: {text[:2000]}"
    assert "Internal error" not in text and "node-7" not in text, f"the error body is in {where}: {text[:2000]}"


def test_a_step_whose_endpoint_answers_500_with_a_secret_reports_only_status_and_request_id(tmp_path, leaky_llm):
    ctx = StepContext(run_uid="run-1", run_name="r", query="What is BM25?", corpus=CorpusRef(uri="builtin:sample"),
                      agent=AgentSpec(type="openai", baseURL=leaky_llm.base_url, model="m", requestTimeoutSeconds=5),
                      store_uri=f"file://{tmp_path / 'store'}",
                      step={"type": "detect_intent", "stepId": "intent", "attempt": 1, "tokenAllowance": 500})
    result = tmp_path / "termination-log"
    env = {**os.environ, STEP_ENV: ctx.to_json(), POLICY_ENV: POLICY.model_dump_json()}
    r = subprocess.run([sys.executable, "-m", "searchrun", "step", "--result-file", str(result)], env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 1, r.stdout + r.stderr
    assert len(leaky_llm.requests) == 4, "the agent retried the 500s, then gave up"
    error = json.loads(result.read_text())["error"]
    assert "returned HTTP 500 (Internal Server Error), request id req-fake-0001" in error, error
    for where, text in {"termination message": result.read_text(), "stdout": r.stdout, "stderr": r.stderr}.items():
        assert_clean(where, text)
    for f in (tmp_path / "store").rglob("*") if (tmp_path / "store").exists() else []:
        if f.is_file():
            assert_clean(str(f), f.read_text(errors="replace"))


def test_a_local_run_against_that_endpoint_fails_without_the_secret_in_its_status(tmp_path, leaky_llm):
    """What the engine records (step and run messages, the lineage) from the same failure."""
    manifest = tmp_path / "leaky.yaml"
    manifest.write_text(yaml.safe_dump({
        "apiVersion": "searchrun.dev/v1alpha1", "kind": "SearchRun", "metadata": {"name": "leaky"},
        "spec": {"query": "What is BM25?", "steps": {"retries": 0},
                 "agent": {"type": "openai", "baseURL": leaky_llm.base_url, "model": "m", "requestTimeoutSeconds": 5}}}))
    env = {**os.environ, POLICY_ENV: POLICY.model_dump_json()}
    r = subprocess.run([sys.executable, "-m", "searchrun", "run", str(manifest)], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 1, r.stdout + r.stderr
    (run_dir,) = (tmp_path / "searchrun-runs" / "runs").iterdir()
    status = json.loads((run_dir / "lineage.json").read_text())["status"]
    assert status["phase"] == "Failed"
    messages = [status.get("message", "")] + [s.get("message", "") for s in status["steps"]]
    assert any("HTTP 500 (Internal Server Error)" in m for m in messages), messages
    assert_clean("the run's status", json.dumps(status))
    assert_clean("the run's output", r.stdout + r.stderr)
    for f in run_dir.rglob("*"):
        if f.is_file():
            assert_clean(str(f), f.read_text(errors="replace"))


# ------------------------------------------------------------------ S3


class PageServer:
    """Answers every request with (status, content type, body): an S3 endpoint that is not S3,
    or an S3 that puts a secret in its error message."""

    def __init__(self, status: int, content_type: str, body: str, headers: dict | None = None):
        outer = self
        self.requests = 0

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _answer(self):
                outer.requests += 1
                n = int(self.headers.get("Content-Length") or 0)
                if n:
                    self.rfile.read(n)
                data = body.encode()
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_PUT = do_HEAD = do_POST = do_DELETE = _answer

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def store_at(url: str) -> S3Store:
    client = s3_client_from_env(endpoint_url=url, aws_access_key_id="k", aws_secret_access_key="s", region_name="us-east-1")
    return S3Store("searchrun", "runs", client=client)


def test_an_s3_error_message_from_the_server_is_not_repeated():
    xml = ("<?xml version='1.0' encoding='UTF-8'?><Error><Code>AccessDenied</Code>"
           f"<Message>Access Denied for {SECRET} (Internal error at node-7)</Message><RequestId>REQ123</RequestId></Error>")
    server = PageServer(403, "application/xml", xml, {"x-amz-request-id": "REQ123"})
    try:
        store = store_at(server.url)
        with pytest.raises(ArtifactError) as ei:
            store.get_bytes("a/b.json")
        msg = str(ei.value)
        assert msg == "s3 get_object failed for bucket 'searchrun' key 'runs/a/b.json': AccessDenied, HTTP 403, request id REQ123"
        with pytest.raises(ArtifactError) as ei:
            store.put_bytes("a/c.json", b"{}", overwrite=True)
        assert "AccessDenied, HTTP 403, request id REQ123" in str(ei.value)
        assert_clean("the artifact error", str(ei.value))
        assert ei.value.__cause__ is None and ei.value.__suppress_context__, "no chained body in tracebacks"
    finally:
        server.close()


def test_an_s3_endpoint_that_answers_with_a_web_page_is_named_not_quoted():
    server = PageServer(200, "text/html", PAGE.replace("<h1>", "<br><h1>"))  # HTML, not XML: botocore cannot parse it
    try:
        with pytest.raises(ArtifactError) as ei:
            store_at(server.url).list("a")
        assert_clean("the artifact error", str(ei.value))
        assert str(ei.value).startswith("s3 list_objects_v2 failed for bucket 'searchrun' key 'runs/a': "), str(ei.value)
    finally:
        server.close()


def test_an_unreachable_s3_endpoint_keeps_its_connection_error():
    """A connection error is about the connection, not a reply: it stays in the message."""
    import socket

    import boto3
    from botocore.config import Config

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    client = boto3.session.Session().client("s3", endpoint_url=f"http://127.0.0.1:{port}", aws_access_key_id="k",
                                            aws_secret_access_key="s", region_name="us-east-1",
                                            config=Config(retries={"max_attempts": 1}, connect_timeout=2))
    with pytest.raises(ArtifactError, match="EndpointConnectionError: Could not connect to the endpoint URL"):
        S3Store("searchrun", "", client=client).get_bytes("x.json")
