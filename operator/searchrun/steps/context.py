"""A step's context: the run's settings and the engine's input for this one step, as the
executor hands it over (the ``SEARCHRUN_STEP`` environment variable)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from ..api import AgentSpec, CorpusRef

STEP_ENV = "SEARCHRUN_STEP"
LINEAGE_NAME = "lineage.json"
REPORT_HTML = "report.html"
REPORT_JSON = "report.json"


INDEX_ENV = "JOB_COMPLETION_INDEX"  # set by Kubernetes in each pod of an Indexed Job
STEPS_URI_ENV = "SEARCHRUN_STEPS_URI"  # an Indexed Job's steps, by index, in the store


def indexed_context(environ, read) -> str | None:
    """The context JSON of the step this process runs. A pod of an Indexed Job (one Job for a
    fan-out, ``jobGrouping: PerFanout``) finds the run in ``$SEARCHRUN_STEP`` and its own step,
    by its completion index, in the document ``$SEARCHRUN_STEPS_URI`` (``read``: URI -> bytes)
    names: pods stay small, whatever the size of the fan-out."""
    text = environ.get(STEP_ENV)
    index, uri = environ.get(INDEX_ENV), environ.get(STEPS_URI_ENV)
    if not text or index is None or not uri:
        return text
    try:
        data = json.loads(text)
        data["step"] = json.loads(read(uri))["steps"][int(index)]
    except (ValueError, TypeError, KeyError, IndexError) as e:
        raise PermanentStepError(f"{STEPS_URI_ENV} {uri} has no step {index}: {e}") from None
    return json.dumps(data)


class StepError(RuntimeError):
    """A step failed in a way worth telling the user in one line."""


class PermanentStepError(StepError):
    """A failure that a retry cannot fix (bad input, a document not in the corpus): the step exits
    with ``EXIT_PERMANENT`` and no executor retries it."""


# The exit code of a step that failed for good. A Job's podFailurePolicy fails the Job at once on
# it (no pod retries); the local executor does not retry it either. Other failures exit 1 (retried).
EXIT_PERMANENT = 3


@dataclass
class StepContext:
    run_uid: str
    run_name: str
    query: str
    corpus: CorpusRef
    agent: AgentSpec
    store_uri: str
    step: dict[str, Any]

    @property
    def step_id(self) -> str:
        return self.step["stepId"]

    @property
    def attempt(self) -> int:
        return int(self.step["attempt"])

    @property
    def allowance(self) -> int:
        return int(self.step.get("tokenAllowance", 0))

    @property
    def k(self) -> int:
        return int(self.step.get("k", 2))

    @classmethod
    def from_json(cls, text: str) -> "StepContext":
        try:
            data = json.loads(text)
        except ValueError as e:
            raise PermanentStepError(f"{STEP_ENV} is not valid JSON: {e}") from None
        try:
            run = data["run"]
            return cls(
                run_uid=str(run["uid"]),
                run_name=str(run.get("name", "")),
                query=str(run["query"]),
                corpus=CorpusRef.model_validate(run.get("corpus", {})),
                agent=AgentSpec.model_validate(run.get("agent", {})),
                store_uri=str(run["store"]),
                step=dict(data["step"]),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise PermanentStepError(f"{STEP_ENV} is missing or has a bad field: {e}") from None

    def to_json(self) -> str:
        return json.dumps(
            {
                "run": {
                    "uid": self.run_uid,
                    "name": self.run_name,
                    "query": self.query,
                    "corpus": self.corpus.model_dump(mode="json"),
                    "agent": self.agent.model_dump(mode="json", exclude_none=True),
                    "store": self.store_uri,
                },
                "step": self.step,
            },
            separators=(",", ":"),
        )
