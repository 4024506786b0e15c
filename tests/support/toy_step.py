"""A toy step type, added through the step registry alone (tests/unit/test_step_registry.py).

``rerank_results`` sits between the fan-in and the report: it keeps the aggregate's answers in
reverse order. It is registered when this module is imported: by the test in its own process,
and through ``SEARCHRUN_STEP_MODULES`` in each step process the local executor starts.
"""

from __future__ import annotations

from searchrun.engine.types import REPORT, StepResult
from searchrun.steps.aggregate_results import AggregateResults
from searchrun.steps.kind import StepKind
from searchrun.steps.registry import register
from searchrun.steps.simple_search import SimpleSearch

RERANK = "rerank"


class RerankResults(StepKind):
    type = "rerank_results"
    report_row = (2, 0, "rerank")
    record = SimpleSearch.record

    def expand(self, run, step, ok):
        SimpleSearch.expand(self, run, step, ok)  # the report follows, or the run fails

    def run(self, ctx, io):
        answers: list = []
        for uri in ctx.step.get("inputs", []):
            answers.extend(io.read_json(uri).get("answers", []))
        answers.reverse()
        uri = io.put_output({**io.base, "answers": answers})
        return StepResult(output=uri, found=bool(answers), answers=len(answers), decision=f"reranked {len(answers)}")


class AggregateThenRerank(AggregateResults):
    def expand(self, run, step, ok):
        if ok:
            run.add_step(RERANK, RerankResults.type, [step.id])
        else:
            super().expand(run, step, ok)


register(RerankResults())
register(AggregateThenRerank())
assert REPORT == "report"
