"""Run llama-cpp-python's OpenAI-compatible server (the real one: its FastAPI app under uvicorn,
as ``python -m llama_cpp.server`` does) and write the ``usage`` of every chat completion it
answers to a JSON-lines file, so that a test can compare what the server reported with what a
run recorded. Only observes: the bytes the client gets are the server's own.

Runs in the model server's venv (hack/model-server.sh), not the project's:
``python llama_server_main.py CONFIG.json USAGE.jsonl``, CONFIG being llama-cpp-python's own
config file format (ConfigFileSettings: host, port, api_key, models).
"""

from __future__ import annotations

import json
import sys
import threading

import uvicorn
from llama_cpp.server.app import create_app
from llama_cpp.server.settings import ConfigFileSettings, ServerSettings


class UsageLog:
    """ASGI middleware: for each POST .../chat/completions, one line {status, usage, finish_reason}."""

    def __init__(self, app, path: str):
        self.app, self.path, self.lock = app, path, threading.Lock()

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or not scope["path"].endswith("/chat/completions"):
            return await self.app(scope, receive, send)
        status, chunks = 0, []

        async def watch(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))
                if not message.get("more_body"):
                    self._write(status, b"".join(chunks))
            await send(message)

        await self.app(scope, receive, watch)

    def _write(self, status: int, body: bytes) -> None:
        entry: dict = {"status": status}
        try:
            data = json.loads(body)
            entry["usage"] = data.get("usage")
            entry["finish_reason"] = (data.get("choices") or [{}])[0].get("finish_reason")
        except (ValueError, AttributeError):
            entry["usage"] = None
        with self.lock, open(self.path, "a") as f:
            f.write(json.dumps(entry) + "\n")


def main() -> None:
    config_path, usage_path = sys.argv[1], sys.argv[2]
    with open(config_path) as f:
        config = ConfigFileSettings.model_validate_json(f.read())
    server = ServerSettings.model_validate(config)
    app = create_app(server_settings=server, model_settings=config.models)
    uvicorn.run(UsageLog(app, usage_path), host=server.host, port=server.port, log_level="warning")


if __name__ == "__main__":
    main()
