"""The operator's webhook server reads AdmissionReviews as big as the API server sends (a real
aiohttp server on loopback; kopf's own takes 1 MiB and answers 413 beyond)."""

from __future__ import annotations

import asyncio
import json
import socket
import urllib.error
import urllib.request

import kopf
import pytest

from searchrun.executors.kube.handlers import WEBHOOK_MAX_BODY_BYTES, LargeBodyWebhookServer


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _post(server_cls, body: bytes) -> tuple[int, dict]:
    seen: list[int] = []

    async def fn(data, **_):
        seen.append(len(data["request"]["object"]["spec"]["query"]))
        return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                "response": {"uid": data["request"]["uid"], "allowed": True}}

    async def main():
        port = _free_port()
        server = server_cls(addr="127.0.0.1", port=port, insecure=True)
        gen = server(fn).__aiter__()
        await gen.__anext__()  # listening
        loop = asyncio.get_running_loop()

        def call():
            req = urllib.request.Request(f"http://127.0.0.1:{port}/validate", data=body,
                                         headers={"Content-Type": "application/json"}, method="POST")
            try:
                with urllib.request.urlopen(req, timeout=30) as r:
                    return r.status, json.loads(r.read())
            except urllib.error.HTTPError as e:
                return e.code, {}
        try:
            return await loop.run_in_executor(None, call)
        finally:
            await gen.aclose()

    return asyncio.run(main())


def _review(query_bytes: int) -> bytes:
    return json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                       "request": {"uid": "u1", "object": {"spec": {"query": "q" * query_bytes}}}}).encode()


@pytest.mark.parametrize("size", [1200 * 1024, 3 * 1024 * 1024])
def test_the_webhook_server_reads_bodies_over_1_mib(size):
    status, answer = _post(LargeBodyWebhookServer, _review(size))
    assert status == 200 and answer["response"]["allowed"] is True
    assert WEBHOOK_MAX_BODY_BYTES > 2 * 3 * 1024 * 1024, "an update's review holds the object and the old one"


def test_kopfs_own_server_refuses_them():
    """Why the subclass exists: if kopf ever sets a bigger limit itself, it can go."""
    status, _ = _post(kopf.WebhookServer, _review(1200 * 1024))
    assert status == 413
