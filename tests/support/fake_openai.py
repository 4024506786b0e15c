"""A fake OpenAI-compatible chat completions server (a test peer): it answers the openai
agent's four questions from the prompt itself, records what it was sent, can be slowed down
(to keep a step's pod busy) and can misbehave like some real servers do (echo the key back in
an error, or answer every request with an error page of its choosing)."""

from __future__ import annotations

import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable

from .s3server import free_port


class FakeOpenAI:
    def __init__(self, host: str):
        self.host = host
        self.port = free_port(host)
        self.requests: list[dict] = []          # {"auth": ..., "prompt": ..., "t": ...}
        self.delay_seconds = 0.0                 # every answer waits this long
        self.echo_key_status: int | None = None  # e.g. 401: answer with an error that quotes the key ...
        self.echo_key_models: set[str] = set()   # ... to every request, or to requests for these models
        self.prose_models: set[str] = set()      # answer requests for these models in prose (no JSON object)
        self.error_reply: tuple[int, str] | None = None  # (status, body): every request gets this, as text/html
        self.refuse: Callable[[str], bool] | None = None  # prompt -> True: answer it with a 400 error (a failing step)
        self._lock = threading.Lock()
        # a scripted model: prompt -> reply (a dict is sent as JSON, a str as is, None: ``answer``)
        self.model: Callable[[str], dict | str | None] | None = None
        self.json_schema = True  # False: refuse a json_schema response_format (HTTP 400), as some servers do
        self.json_schema_status = 400  # how it refuses json_schema (llama-cpp-python: 500, its error naming response_format)
        self.schema_in_json_object = True  # False: refuse a json_object response_format with a schema (HTTP 422)
        self.formats: list = []  # each request's response_format type ("json_object+schema" when it has one)
        self.bodies: list[bytes] = []  # each request's body, as sent
        self.total_tokens = 60  # the usage every answer reports
        # prompt -> instead of an answer, an HTTP status (an error), or a dict: the whole 200 reply
        # (e.g. one without choices: no content); None: answer. E.g. to fail one document's traversal.
        self.fail_when: Callable[[str], int | dict | None] | None = None
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_POST(self):
                n = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(n)
                body = json.loads(raw or b"{}")
                with fake._lock:
                    fake.bodies.append(raw)
                prompt = "\n".join(m.get("content", "") for m in body.get("messages", []))
                auth = self.headers.get("Authorization", "")
                with fake._lock:
                    fake.requests.append({"auth": auth, "prompt": prompt, "t": time.time(), "path": self.path})
                if fake.delay_seconds:
                    time.sleep(fake.delay_seconds)
                instead = fake.fail_when(prompt) if fake.fail_when else None
                if isinstance(instead, dict):
                    self._send(200, instead)
                    return
                if instead:
                    self._send(instead, {"error": {"message": "refused by the test (fail_when)", "type": "invalid_request_error"}})
                    return
                if fake.error_reply:
                    status, page = fake.error_reply
                    data = page.encode()
                    self.send_response(status)
                    self.send_header("Content-Type", "text/html")
                    self.send_header("Content-Length", str(len(data)))
                    self.send_header("x-request-id", "req-fake-0001")
                    self.end_headers()
                    self.wfile.write(data)
                    return
                if fake.refuse is not None and fake.refuse(prompt):
                    self._send(400, {"error": {"message": "refused by the test", "type": "invalid_request_error"}})
                    return
                if fake.echo_key_status or body.get("model") in fake.echo_key_models:
                    key = auth.removeprefix("Bearer ")
                    self._send(fake.echo_key_status or 401, {"error": {"message": f"Incorrect API key provided: {key}. "
                                                                          f"You can find your API key at https://example.invalid.",
                                                                "type": "invalid_request_error"}})
                    return
                if self._scripted(body, prompt):
                    return
                content = json.dumps(answer(prompt))
                if body.get("model") in fake.prose_models:
                    content = "I would rather not answer in JSON."
                self._send(200, {"id": "chatcmpl-fake", "object": "chat.completion", "model": body.get("model"),
                                 "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                                              "finish_reason": "stop"}],
                                 "usage": {"prompt_tokens": fake.total_tokens - 20, "completion_tokens": 20,
                                           "total_tokens": fake.total_tokens}})

            def _scripted(self, body: dict, prompt: str) -> bool:
                """Answer as ``fake.json_schema`` and ``fake.model`` say; False: leave it to ``answer``."""
                fmt = body.get("response_format") or {}
                kind = "json_object+schema" if fmt.get("type") == "json_object" and "schema" in fmt else fmt.get("type")
                with fake._lock:
                    fake.formats.append(kind)
                if kind == "json_schema" and not fake.json_schema:
                    self._send(fake.json_schema_status, {"error": {"message": "response_format.type json_schema is not supported"}})
                    return True
                if kind == "json_object+schema" and not fake.schema_in_json_object:
                    self._send(422, {"detail": [{"loc": ["body", "response_format", "schema"], "msg": "extra field"}]})
                    return True
                reply = fake.model(prompt) if fake.model else None
                if reply is None:
                    return False
                content = reply if isinstance(reply, str) else json.dumps(reply)
                self._send(200, {"id": "chatcmpl-fake", "object": "chat.completion", "model": body.get("model"),
                                 "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                                              "finish_reason": "stop"}],
                                 "usage": {"prompt_tokens": fake.total_tokens - 20, "completion_tokens": 20,
                                           "total_tokens": fake.total_tokens}})
                return True

            def _send(self, code: int, obj: dict) -> None:
                data = json.dumps(obj).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer((host, self.port), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def answer(prompt: str) -> dict:
    """What a cooperative model would say to the openai agent's prompts."""
    if "Classify this search query" in prompt:
        return {"intent": "simple", "reason": "a short lookup"}
    if "best places to start searching" in prompt:
        ids = re.findall(r"^- ([^:\s]+):", prompt, flags=re.M)
        return {"ids": ids[:2], "reason": "the first candidates"}
    if "For each document say whether it answers the query" in prompt:
        ids = re.findall(r"^\[([^\]]+)\]", prompt, flags=re.M)
        return {"results": [{"id": d, "relevant": True, "score": 0.9 - 0.1 * i, "answer": "a fake answer"}
                            for i, d in enumerate(ids[:3])]}
    if "together with the path and the note that led here" in prompt:
        return {"found": True, "score": 0.8, "note": "", "proposals": [], "reason": "fake"}
    return {}


def traverse_facts(prompt: str) -> dict:
    """What a traverse prompt tells the model: the document's id, the parent's note ("" if none),
    the linked ids and the longest note it may write."""
    doc = re.search(r"^Document:\n\[([^\]]+)\]", prompt, flags=re.M)
    note = re.search(r"^<<<(.*)>>>$", prompt, flags=re.M)
    limit = re.search(r"\(at most (\d+) characters\)", prompt)
    return {"doc": doc.group(1) if doc else None, "note": note.group(1) if note else "",
            "children": re.findall(r"^- (\S+) \| ", prompt, flags=re.M), "max_note": int(limit.group(1)) if limit else 0}
