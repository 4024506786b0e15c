"""simple_search: one ranked search over the corpus (also the deep search's fallback). A lookup
whose simple search finds nothing goes on to a deep search (``Planner.escalate``): a question
misread as a lookup still gets its traversal."""

from __future__ import annotations

from ..api import Phase
from ..engine.types import REPORT, SIMPLE, StepResult
from .kind import StepKind

SIMPLE_HITS = 5


class SimpleSearch(StepKind):
    type = "simple_search"
    report_row = (0, 1, "search")

    def record(self, run, step, result):
        run.st.answers = result.answers

    def expand(self, run, step, ok):
        if ok and step.id == SIMPLE and not step.found:
            run.escalate("the simple search found nothing", parents=[step.id])
        elif ok:
            run.add_step(REPORT, "create_report", [step.id])
        else:
            run.finish(Phase.Failed, f"{step.type} failed: {step.message}")

    def run(self, ctx, io):
        hits, usage = io.agent.simple_search(ctx.query, SIMPLE_HITS, ctx.allowance)
        answers = [{"docId": h.doc_id, "title": io.title(h.doc_id), "score": round(h.score, 4), "snippet": h.snippet,
                    "stepId": ctx.step_id, "depth": 0} for h in hits]
        uri = io.put_output({**io.base, "answers": answers, "tokens": usage.tokens})
        return StepResult(tokens=usage.tokens, costUSD=usage.cost_usd, output=uri, found=bool(answers),
                          answers=len(answers), decision=f"{len(answers)} answer(s)")


KIND = SimpleSearch()
