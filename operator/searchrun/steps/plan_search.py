"""plan_search: pick the seed documents; one traversal agent starts from each."""

from __future__ import annotations

from ..engine.types import StepResult
from .kind import StepKind


class PlanSearch(StepKind):
    type = "plan_search"
    report_row = (0, 1, "plan")

    def record(self, run, step, result):
        step.next = list(result.seeds)[: 2 * run.b.maxAgents]

    def expand(self, run, step, ok):
        if not ok:
            run.fallback("plan_search failed", parents=[step.id])
            return
        seeds = list(dict.fromkeys(step.next))
        if not seeds:
            run.fallback("plan_search found no seed documents", parents=[step.id])
            return
        added = run.spawn(step, [(d, "", "") for d in seeds], run.b.maxAgents, "maxAgents", lambda i: f"t{i}", depth=1)
        if added:
            run.event("FanOut", f"fan-out of {added} traversal agent(s) from plan")

    def run(self, ctx, io):
        seeds, usage = io.agent.plan_seeds(ctx.query, ctx.k, ctx.allowance)
        uri = io.put_output({**io.base, "seeds": [{"id": d, "title": io.title(d)} for d in seeds], "tokens": usage.tokens})
        return StepResult(tokens=usage.tokens, costUSD=usage.cost_usd, output=uri, seeds=tuple(seeds),
                          decision=f"{len(seeds)} seed(s)")


KIND = PlanSearch()
