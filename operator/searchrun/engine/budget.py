"""Budget accounting: what is spent, what is left, and which budget forbids another step."""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import Optional

from ..api import BudgetUsage, SearchRunSpec, SearchRunStatus
from .index import LineageIndex
from .types import AGGREGATE, REPORT, SIMPLE, parse_time

# Steps kept back from maxSteps for the fan-in: aggregate (or the simple fallback) and report.
FAN_IN_RESERVE = 2
# Below this many tokens a search step cannot do useful work: the token budget is spent.
MIN_STEP_TOKENS = 50


class BudgetAccount:
    def __init__(self, spec: SearchRunSpec, status: SearchRunStatus, idx: LineageIndex, now: datetime):
        self.spec, self.b, self.st, self.idx, self.now = spec, spec.budget, status, idx, now

    def deadline(self) -> datetime:
        return parse_time(self.st.startedAt) + timedelta(seconds=self.b.deadlineSeconds)

    def past_deadline(self) -> bool:
        return self.now >= self.deadline()

    def fan_in_started(self) -> bool:
        # (a simple search that found nothing and went deep is no fan-in: see Planner.escalate)
        return AGGREGATE in self.idx.by_id or (SIMPLE in self.idx.by_id and not self.st.escalated)

    def steps_left_for_search(self) -> int:
        reserve = 0 if self.fan_in_started() else FAN_IN_RESERVE
        if REPORT not in self.idx.by_id:
            reserve = max(reserve, 1)
        return self.b.maxSteps - len(self.st.steps) - reserve

    def price_per_token(self) -> float:
        return self.spec.agent.costPer1kTokensUSD / 1000.0

    def _used(self, planning: bool) -> tuple[int, float, int]:
        """Tokens used, cost, and tokens reserved by the steps in flight. While a wave is planned
        over several passes (``planning`` and ``status.wavePlan``): as they stood when its
        planning began, plus its own allowances, whatever finished since."""
        wp = self.st.wavePlan if planning else None
        if wp is not None:
            return wp.tokens, wp.costUSD, wp.reserved
        return self.idx.tokens, self.idx.cost, self.idx.committed

    def token_allowance(self, planning: bool = False) -> int:
        """Tokens a step may spend: reserved from what is left (``committed`` holds what the
        steps in flight may still spend), so that the run's tokens (and cost) stay within
        budget even with steps in flight."""
        tokens, cost, reserved = self._used(planning)
        left = self.b.maxTokens - tokens - reserved
        price = self.price_per_token()
        if price > 0:
            cost_left = self.b.maxCostUSD - cost - reserved * price
            left = min(left, int(math.floor(max(0.0, cost_left) / price + 1e-9)))
        # A step's fair share of the run's tokens. It does not depend on maxParallel: the same
        # manifest gets the same allowances (and so the same tokens) at any parallelism.
        cap = max(MIN_STEP_TOKENS, self.b.maxTokens // self.b.maxSteps)
        return max(0, min(left, cap))

    def spent(self, planning: bool = False) -> Optional[tuple[str, str]]:
        """The first budget that forbids another search step, if any: (budget, why)."""
        if self.past_deadline():
            return "deadlineSeconds", f"{self.b.deadlineSeconds}s passed"
        if self.steps_left_for_search() <= 0:
            return "maxSteps", f"{self.b.maxSteps} steps planned"
        tokens, cost, _ = self._used(planning)
        if self.b.maxTokens - tokens < MIN_STEP_TOKENS:
            return "maxTokens", f"{tokens} of {self.b.maxTokens} tokens used"
        price = self.price_per_token()
        if price > 0 and self.b.maxCostUSD - cost < MIN_STEP_TOKENS * price:
            return "maxCostUSD", f"${cost:.4f} of ${self.b.maxCostUSD} used"
        return None

    def account(self) -> None:
        """Write what is used and what is left into the status."""
        b, idx, st = self.b, self.idx, self.st
        started = parse_time(st.startedAt)
        end = parse_time(st.finishedAt) or self.now
        elapsed = max(0.0, (end - started).total_seconds()) if started else 0.0
        steps_used = len(st.steps) - idx.skipped
        used = BudgetUsage(
            agents=idx.agents,
            depth=idx.max_depth,
            steps=steps_used,
            parallel=idx.peak_parallel,
            tokens=idx.tokens,
            costUSD=round(idx.cost, 6),
            elapsedSeconds=round(elapsed, 3),
        )
        st.budgetUsed = used
        st.budgetRemaining = BudgetUsage(
            agents=max(0, b.maxAgents - used.agents),
            depth=max(0, b.maxDepth - used.depth),
            steps=max(0, b.maxSteps - used.steps),
            parallel=max(0, b.maxParallel - len(idx.running)),
            tokens=max(0, b.maxTokens - used.tokens),
            costUSD=round(max(0.0, b.maxCostUSD - used.costUSD), 6),
            elapsedSeconds=round(max(0.0, b.deadlineSeconds - elapsed), 3),
        )
        st.stepCount = steps_used
        st.maxDepthReached = idx.max_depth
        st.tokens = idx.tokens
        st.costUSD = round(idx.cost, 6)
