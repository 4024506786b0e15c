"""What a step reads and writes: the store, the corpus and the agent, each opened once and
only when the step asks for it (a step that only aggregates never loads the corpus)."""

from __future__ import annotations

import json
import os
from functools import cached_property
from pathlib import Path
from typing import Mapping

from ..artifacts import open_store, read_uri, step_key
from ..corpus import load_corpus
from .context import StepContext, StepError


class StepIO:
    def __init__(self, ctx: StepContext, env: Mapping[str, str] = os.environ):
        self.ctx = ctx
        self.env = env

    @cached_property
    def store(self):
        return open_store(self.ctx.store_uri)

    @cached_property
    def corpus(self):
        return load_corpus(self.ctx.corpus.uri, self.ctx.corpus.format, base_dir=Path.cwd(), read_uri=read_uri)

    @cached_property
    def agent(self):
        from ..agents import make_agent  # not imported by the operator (``agents.__getattr__``)

        return make_agent(self.ctx.agent, self.corpus, self.env)

    @property
    def base(self) -> dict:
        """The fields every step output starts with."""
        s = self.ctx.step
        return {"stepId": s["stepId"], "type": s["type"], "attempt": int(s["attempt"]), "parents": s.get("parents", []),
                "depth": s.get("depth", 0)}

    def put_output(self, obj: dict) -> str:
        """A step's output may be rewritten by a retried pod of the same Job; its result.json,
        written last and once, is the commit that the engine reads."""
        key = step_key(self.ctx.run_uid, self.ctx.step_id, self.ctx.attempt, "output.json")
        return self.store.put_json(key, obj, overwrite=True)

    def read_json(self, uri: str) -> dict:
        try:
            data = json.loads(read_uri(uri))
        except ValueError as e:
            raise StepError(f"step output {uri} is not valid JSON: {e}") from None
        if not isinstance(data, dict):
            raise StepError(f"step output {uri} is not a JSON object")
        return data

    def title(self, doc_id: str) -> str:
        d = self.corpus.get(doc_id)
        return getattr(d, "title", "") if d else ""
