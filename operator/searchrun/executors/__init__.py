"""Executors carry the engine's decisions out: ``local`` (subprocesses) and ``kube`` (Jobs).

What both need to turn a decision into a step lives here.
"""

from __future__ import annotations

from typing import Optional

from ..api import SearchRunSpec, SearchRunStatus
from ..engine import StartStep
from ..steps import StepContext


def step_context(spec: SearchRunSpec, run_uid: str, run_name: str, store_uri: str, action: StartStep,
                 corpus_uri: Optional[str] = None) -> StepContext:
    corpus = spec.corpus if corpus_uri is None else spec.corpus.model_copy(update={"uri": corpus_uri})
    return StepContext(run_uid=run_uid, run_name=run_name, query=spec.query, corpus=corpus, agent=spec.agent,
                       store_uri=store_uri, step=action.input)


def lineage_document(run_name: str, run_uid: str, namespace: Optional[str], spec: SearchRunSpec, status: SearchRunStatus) -> dict:
    """The full lineage, as stored beside the artifacts (and read by create_report)."""
    return {
        "apiVersion": "searchrun.dev/v1alpha1",
        "kind": "SearchRunLineage",
        "run": {"name": run_name, "uid": run_uid, "namespace": namespace, "query": spec.query,
                "budget": spec.budget.model_dump(mode="json")},
        "status": status.model_dump(mode="json", exclude_none=True),
    }
