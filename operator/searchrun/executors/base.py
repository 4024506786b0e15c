"""The contract both executors keep: what a step is given, how its commit is read, and the lineage.

A step commits by writing ``result.json`` to the store (``artifacts.result_key``) as
its last act; the executors read that and nothing else, so a step run by a Job and
one run as a local subprocess are observed the same way. ``create_report`` reads the
stored lineage, so the lineage is written before such a step starts.
"""

from __future__ import annotations

import json
from typing import Iterable, Mapping, Optional, Union

from ..api import SearchRunSpec, SearchRunStatus
from ..artifacts import ArtifactNotFound, ArtifactStore, result_key, run_key
from ..engine import Observation, StartStep, StepResult
from ..steps import LINEAGE_NAME, StepContext

# What an executor hands the parser: the bytes read from the store (or their text),
# JSON already decoded, or None when the store holds no result.json.
CommittedResult = Union[bytes, str, Mapping, None]

MALFORMED = "malformed step result"


class MalformedResult(ValueError):
    """A step's result.json is missing or does not have the shape of a ``StepResult``."""


def step_context(spec: SearchRunSpec, run_uid: str, run_name: str, store_uri: str, action: StartStep,
                 corpus_uri: Optional[str] = None) -> StepContext:
    corpus = spec.corpus if corpus_uri is None else spec.corpus.model_copy(update={"uri": corpus_uri})
    return StepContext(run_uid=run_uid, run_name=run_name, query=spec.query, corpus=corpus, agent=spec.agent,
                       store_uri=store_uri, step=action.input)


# -- a step's commit


def read_committed(store: ArtifactStore, run_uid: str, step_id: str, attempt: int) -> Optional[bytes]:
    """The bytes of a step attempt's result.json; None when the store does not hold it.
    Other store errors propagate: the caller decides whether to wait or fail."""
    try:
        return store.get_bytes(result_key(run_uid, step_id, attempt))
    except ArtifactNotFound:
        return None


def parse_result(raw: CommittedResult) -> StepResult:
    """The one parser of a committed result; ``MalformedResult`` says what is wrong with it."""
    if raw is None:
        raise MalformedResult("the step's result.json is missing")
    data = raw
    if isinstance(raw, (bytes, bytearray, str)):
        try:
            data = json.loads(raw)
        except ValueError:  # includes bytes that are not UTF-8
            raise MalformedResult("the step's result.json is not valid JSON") from None
    try:
        return StepResult.from_dict(data)
    except ValueError as e:
        raise MalformedResult(str(e)) from None


def committed_observation(step_id: str, attempt: int, raw: CommittedResult, *, final: bool = False,
                          attempts: Optional[int] = None, message: str = "") -> Observation:
    """The observation of a step that exited successfully: succeeded with its result, or failed
    with ``malformed step result: <why>`` (``final``: the executor will not retry it itself)."""
    try:
        result = parse_result(raw)
    except MalformedResult as e:
        return Observation(step_id, attempt, "failed", message=f"{MALFORMED}: {e}", final=final, attempts=attempts)
    return Observation(step_id, attempt, "succeeded", result=result, attempts=attempts, message=message)


# -- results an executor need not compute


class Recall:
    """Where an executor looks before it starts a step: each source (a resume's kept steps, the
    step cache) may answer with an ``Observation``; then no Job or process is made. Both
    executors call ``lookup`` before they start a step and ``fill`` once one has succeeded."""

    def __init__(self, sources: Iterable = ()):
        self.sources = [s for s in sources if s is not None]

    def lookup(self, action: StartStep) -> Optional[Observation]:
        for source in self.sources:
            obs = source.lookup(action)
            if obs is not None:
                return obs
        return None

    def fill(self, action: StartStep, obs: Observation) -> None:
        for source in self.sources:
            fill = getattr(source, "fill", None)
            if fill is not None:
                fill(action, obs)


# -- the lineage


def lineage_document(run_name: str, run_uid: str, namespace: Optional[str], spec: SearchRunSpec, status: SearchRunStatus) -> dict:
    """The full lineage, as stored beside the artifacts (and read by create_report)."""
    return {
        "apiVersion": "searchrun.dev/v1alpha1",
        "kind": "SearchRunLineage",
        "run": {"name": run_name, "uid": run_uid, "namespace": namespace, "query": spec.query,
                "budget": spec.budget.model_dump(mode="json")},
        "spec": spec.model_dump(mode="json", exclude_none=True),  # what a resume or a step's rerun starts from
        "status": status.model_dump(mode="json", exclude_none=True),
    }


def lineage_key(run_uid: str) -> str:
    return run_key(run_uid, LINEAGE_NAME)


def put_lineage(store: ArtifactStore, run_uid: str, doc: Mapping) -> str:
    """Store the lineage document (replacing the previous one); its URI."""
    return store.put_json(lineage_key(run_uid), doc, overwrite=True)


def lineage_needed(starts: Iterable[StartStep]) -> bool:
    """Lineage before the report: when one of these steps reads the stored lineage
    (``create_report``), the executor writes it before it starts any of them."""
    return any(a.needs_lineage for a in starts)
