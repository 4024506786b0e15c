"""detect_intent: is the query a simple lookup or a deep, relational question?"""

from __future__ import annotations

from ..clip import clip
from ..engine.types import PLAN, SIMPLE, StepResult
from .kind import StepKind


class DetectIntent(StepKind):
    type = "detect_intent"
    report_row = (0, 0, "intent")

    def record(self, run, step, result):
        step.decision = f"intent={result.intent or 'simple'}" + (f"; {result.decision}" if result.decision else "")
        run.st.intent = result.intent or "simple"

    def expand(self, run, step, ok):
        if not ok:
            run.fallback("detect_intent failed", parents=[step.id])
        elif run.st.intent == "deep":
            run.add_step(PLAN, "plan_search", [step.id])
            run.event("IntentDetected", "intent deep: planning a traversal")
        else:
            run.add_step(SIMPLE, "simple_search", [step.id])
            run.event("IntentDetected", "intent simple: one search")

    def run(self, ctx, io):
        intent, reason, usage = io.agent.detect_intent(ctx.query, ctx.allowance)
        uri = io.put_output({**io.base, "intent": intent, "reason": reason, "tokens": usage.tokens})
        return StepResult(tokens=usage.tokens, costUSD=usage.cost_usd, output=uri, intent=intent, decision=clip(reason, 120))


KIND = DetectIntent()
