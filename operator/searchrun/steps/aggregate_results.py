"""aggregate_results: the fan-in over the traversal steps that found an answer."""

from __future__ import annotations

from ..engine.types import StepResult
from .kind import StepKind
from .simple_search import SimpleSearch


class AggregateResults(StepKind):
    type = "aggregate_results"
    report_row = (2, 0, "fan-in")
    record = SimpleSearch.record
    expand = SimpleSearch.expand

    def run(self, ctx, io):
        best: dict[str, dict] = {}
        for parent_uri in ctx.step.get("inputs", []):
            out = io.read_json(parent_uri)
            if not out.get("found"):
                continue
            a = {"docId": out["doc"], "title": out.get("title", ""), "score": out.get("score", 0.0),
                 "snippet": out.get("snippet", ""), "stepId": out.get("stepId"), "depth": out.get("depth", 0)}
            if a["docId"] not in best or a["score"] > best[a["docId"]]["score"]:
                best[a["docId"]] = a
        answers = sorted(best.values(), key=lambda a: (-a["score"], a["docId"]))
        uri = io.put_output({**io.base, "answers": answers})
        return StepResult(output=uri, found=bool(answers), answers=len(answers), decision=f"{len(answers)} answer(s)")


KIND = AggregateResults()
