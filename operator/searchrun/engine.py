"""The engine: decides what a run does next. Pure: no I/O, no clock, no Kubernetes.

``reconcile(spec, status, observations, now, run_uid)`` looks at the run's lineage
(``status.steps``) and what the executor observed of its steps, and returns the
updated status plus the steps to start. Both executors (kube, local) only carry
these decisions out, so every rule about the DAG, budgets, retries and fallbacks
lives here and is tested without a cluster.

The status is updated in place (and returned) so that a run of 10,000 steps is
planned in linear time; an index of the lineage is cached on the status object.

The DAG (see DESIGN.md)::

    detect ─┬─ simple ──────────────────────────────► simple ─► report
            └─ plan ─► t0, t1, ... (seeds) ─► t0-0, t0-1 ... ─► aggregate ─► report
                                                 (nothing found: fall back to simple)
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Callable, Iterable, Literal, Mapping, Optional

from .api import (
    Budget,
    BudgetUsage,
    Condition,
    LineageSummary,
    Phase,
    SearchRunSpec,
    SearchRunStatus,
    StepPhase,
    StepStatus,
    StepType,
)

DETECT, SIMPLE, PLAN, AGGREGATE, REPORT = "detect", "simple", "plan", "aggregate", "report"
# Steps kept back from maxSteps for the fan-in: aggregate (or the simple fallback) and report.
FAN_IN_RESERVE = 2
# Below this many tokens a search step cannot do useful work: the token budget is spent.
MIN_STEP_TOKENS = 50

# Plain strings: enum attribute lookups dominate a 10,000-step plan otherwise.
P_BACKOFF = StepPhase.Backoff.value
P_FAILED = StepPhase.Failed.value
P_QUEUED = StepPhase.Queued.value
P_RUNNING = StepPhase.Running.value
P_SKIPPED = StepPhase.Skipped.value
P_SUCCEEDED = StepPhase.Succeeded.value
T_AGGREGATE_RESULTS = StepType.aggregate_results.value
T_CREATE_REPORT = StepType.create_report.value
T_DETECT_INTENT = StepType.detect_intent.value
T_PLAN_SEARCH = StepType.plan_search.value
T_SIMPLE_SEARCH = StepType.simple_search.value
T_TRAVERSE_NODE = StepType.traverse_node.value

Budgets = Literal["maxSteps", "maxTokens", "maxCostUSD", "deadlineSeconds"]


# ------------------------------------------------------------ data in and out


@dataclass(frozen=True)
class StepResult:
    """What a finished step tells the engine (small: it fits a termination message)."""

    tokens: int = 0
    costUSD: float = 0.0
    output: Optional[str] = None
    decision: str = ""
    intent: Optional[str] = None          # detect_intent
    seeds: tuple[str, ...] = ()           # plan_search
    found: Optional[bool] = None          # traverse_node, simple_search, aggregate_results
    next: tuple[str, ...] = ()            # traverse_node: proposed children, best first
    answers: int = 0                      # simple_search, aggregate_results

    @classmethod
    def from_dict(cls, data: Mapping) -> "StepResult":
        """Parse a step's result; raises ValueError naming the bad field."""
        if not isinstance(data, Mapping):
            raise ValueError("step result must be a JSON object")

        def _int(name: str) -> int:
            v = data.get(name, 0)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ValueError(f"step result field {name!r} must be a non-negative integer")
            return v

        def _ids(name: str) -> tuple[str, ...]:
            v = data.get(name, [])
            if not isinstance(v, list) or not all(isinstance(x, str) and 0 < len(x) <= 256 for x in v):
                raise ValueError(f"step result field {name!r} must be a list of document ids")
            return tuple(v)

        cost = data.get("costUSD", 0.0)
        if isinstance(cost, bool) or not isinstance(cost, (int, float)) or cost < 0 or not math.isfinite(cost):
            raise ValueError("step result field 'costUSD' must be a non-negative number")
        found = data.get("found")
        if found is not None and not isinstance(found, bool):
            raise ValueError("step result field 'found' must be true, false or null")
        intent = data.get("intent")
        if intent is not None and intent not in ("simple", "deep"):
            raise ValueError("step result field 'intent' must be 'simple' or 'deep'")
        output = data.get("output")
        if output is not None and not isinstance(output, str):
            raise ValueError("step result field 'output' must be a URI string")
        decision = data.get("decision", "")
        if not isinstance(decision, str):
            raise ValueError("step result field 'decision' must be a string")
        return cls(
            tokens=_int("tokens"),
            costUSD=float(cost),
            output=output,
            decision=decision[:200],
            intent=intent,
            seeds=_ids("seeds"),
            found=found,
            next=_ids("next"),
            answers=_int("answers"),
        )

    def to_dict(self) -> dict:
        out = {"tokens": self.tokens, "costUSD": self.costUSD, "decision": self.decision}
        if self.output is not None:
            out["output"] = self.output
        if self.intent is not None:
            out["intent"] = self.intent
        if self.seeds:
            out["seeds"] = list(self.seeds)
        if self.found is not None:
            out["found"] = self.found
        if self.next:
            out["next"] = list(self.next)
        if self.answers:
            out["answers"] = self.answers
        return out


@dataclass(frozen=True)
class Observation:
    """What the executor saw of one step's current attempt."""

    step_id: str
    attempt: int
    state: Literal["running", "succeeded", "failed"]
    result: Optional[StepResult] = None
    message: str = ""
    # The executor already retried this step itself (a Job's backoffLimit): a failure is final.
    final: bool = False
    attempts: Optional[int] = None  # attempts the executor made, when it retries itself


@dataclass(frozen=True)
class StartStep:
    """Make sure this step's attempt exists (idempotent: a second start is a no-op)."""

    step_id: str
    step_type: str
    attempt: int
    job: str
    input: dict
    timeout_seconds: int
    retries: int
    needs_lineage: bool = False


@dataclass(frozen=True)
class Event:
    reason: str
    message: str
    type: Literal["Normal", "Warning"] = "Normal"


@dataclass
class Decision:
    status: SearchRunStatus
    start: list[StartStep] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    wake_at: Optional[datetime] = None
    # Ids of the steps this call added or changed: an executor writes only these (status patches,
    # the offloaded lineage, metrics) and never looks inside the engine's index.
    changed: frozenset[str] = frozenset()
    # Ids of the steps in phase Running after this call (the attempts the executor must watch).
    running: tuple[str, ...] = ()

    @property
    def done(self) -> bool:
        return self.status.phase in (Phase.Succeeded.value, Phase.Failed.value)


# ------------------------------------------------------------------ helpers


def iso(t: datetime) -> str:
    return t.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(s: Optional[str]) -> Optional[datetime]:
    if not s:
        return None
    return datetime.fromisoformat(s.replace("Z", "+00:00"))


JobNamer = Callable[[str, str], str]


def step_attempt_name(run_uid: str, step_id: str) -> str:
    """The default name of a step's attempt (a local process): its step path. The kube
    executor passes its own namer (a Job name, by Kubernetes' naming rules)."""
    return step_id


def backoff_delay(settings_backoff: float, backoff_max: float, failed_attempts: int) -> float:
    """Exponential backoff: base, 2*base, 4*base ... capped."""
    return min(backoff_max, settings_backoff * (2 ** max(0, failed_attempts - 1)))


class _Index:
    """Derived view of the lineage, kept in step with every change the engine makes."""

    def __init__(self, status: SearchRunStatus):
        self.by_id: dict[str, StepStatus] = {}
        self.visited: set[str] = set()
        self.queue: deque[str] = deque()
        self.running: set[str] = set()
        self.backoff: set[str] = set()
        self.to_expand: deque[str] = deque()
        self.open_search = 0   # traverse steps not yet expanded
        self.tokens = 0
        self.cost = 0.0
        self.started = 0       # steps that got at least one attempt
        self.max_depth = 0
        self.agents = 0
        self.peak_parallel = status.budgetUsed.parallel
        self.skipped = 0
        # Ids of steps added or changed by the current ``reconcile`` call (``Decision.changed``).
        # A status the executor hands in is what it already has: nothing in it is new to it.
        self.dirty: set[str] = set()
        for s in status.steps:
            self.add(s)
        self.n = len(status.steps)

    def add(self, s: StepStatus) -> None:
        self.by_id[s.id] = s
        if s.doc is not None and s.type == T_TRAVERSE_NODE:
            self.visited.add(s.doc)
            if s.depth == 1:
                self.agents += 1
        if s.phase == P_QUEUED:
            self.queue.append(s.id)
        elif s.phase == P_RUNNING:
            self.running.add(s.id)
        elif s.phase == P_BACKOFF:
            self.backoff.add(s.id)
        if s.phase == P_SKIPPED:
            self.skipped += 1
        if s.attempts > 0:
            self.started += 1
        if s.phase in (P_SUCCEEDED, P_FAILED) and not s.expanded:
            self.to_expand.append(s.id)
        if s.type == T_TRAVERSE_NODE and not s.expanded and s.phase != P_SKIPPED:
            self.open_search += 1
        self.tokens += s.tokens
        self.cost += s.costUSD
        self.max_depth = max(self.max_depth, s.depth if s.attempts > 0 else 0)

    def reserved_tokens(self) -> int:
        return sum(self.by_id[i].tokenAllowance for i in self.running)


def _index(status: SearchRunStatus) -> _Index:
    idx = getattr(status, "_engine_index", None)
    if idx is None or idx.n != len(status.steps):
        idx = _Index(status)
        object.__setattr__(status, "_engine_index", idx)
    return idx


# ------------------------------------------------------------------- engine


class _Planner:
    def __init__(self, spec: SearchRunSpec, status: SearchRunStatus, now: datetime, run_uid: str,
                 job_namer: JobNamer = step_attempt_name):
        self.job_namer = job_namer
        self.spec = spec
        self.b: Budget = spec.budget
        self.st = status
        self.now = now
        self.run_uid = run_uid
        self.idx = _index(status)
        self.events: list[Event] = []
        self.start: list[StartStep] = []

    # -- lineage changes (all go through here so the index stays right)

    def add_step(self, id: str, type: StepType, parents: Iterable[str] = (), depth: int = 0, doc: Optional[str] = None) -> StepStatus:
        if id in self.idx.by_id:
            return self.idx.by_id[id]
        s = StepStatus(id=id, type=type.value, parents=list(parents), depth=depth, doc=doc)
        self.st.steps.append(s)
        self.idx.add(s)
        self.idx.n += 1
        self.idx.dirty.add(id)
        return s

    def set_phase(self, s: StepStatus, phase: StepPhase) -> None:
        self.idx.dirty.add(s.id)  # callers change other fields of the step just before
        old = s.phase
        if old == phase.value:
            return
        if old == P_RUNNING:
            self.idx.running.discard(s.id)
        elif old == P_BACKOFF:
            self.idx.backoff.discard(s.id)
        s.phase = phase.value
        if phase == StepPhase.Running:
            self.idx.running.add(s.id)
            self.idx.peak_parallel = max(self.idx.peak_parallel, len(self.idx.running))
        elif phase == StepPhase.Backoff:
            self.idx.backoff.add(s.id)
        elif phase == StepPhase.Queued:
            self.idx.queue.append(s.id)
        elif phase in (StepPhase.Succeeded, StepPhase.Failed):
            s.finishedAt = iso(self.now)
            self.idx.to_expand.append(s.id)
        elif phase == StepPhase.Skipped:
            self.idx.skipped += 1
            if s.type == T_TRAVERSE_NODE and not s.expanded:
                self.idx.open_search -= 1
                s.expanded = True

    def mark_expanded(self, s: StepStatus) -> None:
        self.idx.dirty.add(s.id)
        if not s.expanded:
            s.expanded = True
            if s.type == T_TRAVERSE_NODE:
                self.idx.open_search -= 1

    def note_limit(self, name: str) -> None:
        if name not in self.st.limitsHit:
            self.st.limitsHit.append(name)
            self.events.append(Event("LimitReached", f"{name} limited the search"))

    def stop(self, budget: str, why: str) -> None:
        if self.st.stoppedBy is None:
            self.st.stoppedBy = budget
            self.events.append(Event("BudgetSpent", f"{budget} spent: {why}; no new search steps, fanning in", "Warning"))
        self.note_limit(budget)

    # -- budgets

    def deadline(self) -> datetime:
        return parse_time(self.st.startedAt) + timedelta(seconds=self.b.deadlineSeconds)

    def past_deadline(self) -> bool:
        return self.now >= self.deadline()

    def fan_in_started(self) -> bool:
        return AGGREGATE in self.idx.by_id or SIMPLE in self.idx.by_id

    def steps_left_for_search(self) -> int:
        reserve = 0 if self.fan_in_started() else FAN_IN_RESERVE
        if REPORT not in self.idx.by_id:
            reserve = max(reserve, 1)
        return self.b.maxSteps - len(self.st.steps) - reserve

    def price_per_token(self) -> float:
        return self.spec.agent.costPer1kTokensUSD / 1000.0

    def token_allowance(self) -> int:
        """Tokens a starting step may spend: reserved from what is left, so that the
        run's tokens (and cost) stay within budget even with steps in flight."""
        reserved = self.idx.reserved_tokens()
        left = self.b.maxTokens - self.idx.tokens - reserved
        price = self.price_per_token()
        if price > 0:
            cost_left = self.b.maxCostUSD - self.idx.cost - reserved * price
            left = min(left, int(math.floor(max(0.0, cost_left) / price + 1e-9)))
        cap = max(MIN_STEP_TOKENS, self.b.maxTokens // (self.b.maxParallel + 1))
        return max(0, min(left, cap))

    def global_budget_spent(self) -> Optional[tuple[str, str]]:
        """The first budget that forbids another search step, if any."""
        if self.past_deadline():
            return "deadlineSeconds", f"{self.b.deadlineSeconds}s passed"
        if self.steps_left_for_search() <= 0:
            return "maxSteps", f"{self.b.maxSteps} steps planned"
        if self.b.maxTokens - self.idx.tokens < MIN_STEP_TOKENS:
            return "maxTokens", f"{self.idx.tokens} of {self.b.maxTokens} tokens used"
        price = self.price_per_token()
        if price > 0 and self.b.maxCostUSD - self.idx.cost < MIN_STEP_TOKENS * price:
            return "maxCostUSD", f"${self.idx.cost:.4f} of ${self.b.maxCostUSD} used"
        return None

    # -- the run

    def begin(self) -> None:
        self.st.phase = Phase.Running.value
        self.st.startedAt = iso(self.now)
        self.add_step(DETECT, StepType.detect_intent)
        self.set_condition("Running", "True", "Started", "the run started")

    def apply(self, obs: Observation) -> None:
        s = self.idx.by_id.get(obs.step_id)
        if s is None or s.phase != P_RUNNING:
            return  # unknown or already applied: level-triggered input repeats itself
        if obs.attempts is not None:
            if obs.attempts > s.attempts:
                s.attempts = obs.attempts  # the executor retries by itself
                self.idx.dirty.add(s.id)
        elif obs.attempt != s.attempts:
            return  # an older attempt
        if obs.state == "running":
            return
        if obs.state == "succeeded":
            r = obs.result or StepResult()
            s.tokens, s.costUSD = r.tokens, r.costUSD
            self.idx.tokens += r.tokens
            self.idx.cost += r.costUSD
            s.output = r.output
            s.decision = r.decision or None
            s.found = r.found
            if s.type == T_TRAVERSE_NODE:
                s.next = list(r.next)[: 2 * self.b.maxFanoutPerNode]
            elif s.type == T_PLAN_SEARCH:
                s.next = list(r.seeds)[: 2 * self.b.maxAgents]
            elif s.type == T_DETECT_INTENT:
                s.decision = f"intent={r.intent or 'simple'}" + (f"; {r.decision}" if r.decision else "")
                self.st.intent = r.intent or "simple"
            elif s.type == T_CREATE_REPORT:
                self.st.reportURI = r.output
            if s.type in (T_SIMPLE_SEARCH, T_AGGREGATE_RESULTS):
                self.st.answers = r.answers
            # an executor that retried the step itself may say why the earlier attempts failed
            s.message = f"succeeded on attempt {s.attempts}; an earlier attempt failed: {obs.message[:400]}" if obs.message else None
            self.set_phase(s, StepPhase.Succeeded)
            # No event per successful step: events are for milestones (a 1,000-step run would post 1,000).
            return
        # failed
        retries = self.spec.steps.retries
        msg = (obs.message or "failed")[:500]
        search_over = s.type == T_TRAVERSE_NODE and self.past_deadline()
        if obs.final or s.attempts > retries or search_over:
            s.message = f"failed after {s.attempts} attempt(s): {msg}"
            self.set_phase(s, StepPhase.Failed)
            self.events.append(Event("StepFailed", f"{s.type} {s.id} {s.message}", "Warning"))
        else:
            delay = backoff_delay(self.spec.steps.backoffSeconds, self.spec.steps.backoffMaxSeconds, s.attempts)
            s.notBefore = iso(self.now + timedelta(seconds=delay))
            s.message = f"attempt {s.attempts} failed: {msg}; retrying in {delay:g}s"
            self.set_phase(s, StepPhase.Backoff)
            self.events.append(Event("StepRetry", f"{s.type} {s.id} {s.message}", "Warning"))

    def release_backoffs(self) -> None:
        for sid in sorted(self.idx.backoff):
            s = self.idx.by_id[sid]
            if parse_time(s.notBefore) <= self.now:
                s.notBefore = None
                self.set_phase(s, StepPhase.Queued)

    def expand(self) -> None:
        while self.idx.to_expand:
            s = self.idx.by_id[self.idx.to_expand.popleft()]
            if s.expanded:
                continue
            ok = s.phase == P_SUCCEEDED
            t = s.type
            if t == T_DETECT_INTENT:
                self.mark_expanded(s)
                if not ok:
                    self.fallback("detect_intent failed", parents=[s.id])
                elif self.st.intent == "deep":
                    self.add_step(PLAN, StepType.plan_search, [s.id])
                    self.events.append(Event("IntentDetected", "intent deep: planning a traversal"))
                else:
                    self.add_step(SIMPLE, StepType.simple_search, [s.id])
                    self.events.append(Event("IntentDetected", "intent simple: one search"))
            elif t == T_PLAN_SEARCH:
                self.mark_expanded(s)
                if not ok:
                    self.fallback("plan_search failed", parents=[s.id])
                else:
                    self.spawn_seeds(s)
            elif t == T_TRAVERSE_NODE:
                self.mark_expanded(s)
                if ok and s.next:
                    self.spawn_children(s)
            elif t == T_SIMPLE_SEARCH or t == T_AGGREGATE_RESULTS:
                self.mark_expanded(s)
                if ok:
                    self.add_step(REPORT, StepType.create_report, [s.id])
                else:
                    self.finish(Phase.Failed, f"{t} failed: {s.message}")
            elif t == T_CREATE_REPORT:
                self.mark_expanded(s)
                if ok:
                    self.finish(Phase.Succeeded, self.summary_message())
                else:
                    self.finish(Phase.Failed, f"create_report failed: {s.message}")

    def fallback(self, why: str, parents: list[str]) -> None:
        if SIMPLE in self.idx.by_id:
            return
        self.st.fallback = why
        self.events.append(Event("FallbackToSimple", f"{why}: falling back to simple search", "Warning"))
        self.add_step(SIMPLE, StepType.simple_search, parents)

    def spawn_seeds(self, plan: StepStatus) -> None:
        seeds: list[str] = []
        for doc in plan.next:
            if doc not in seeds:
                seeds.append(doc)
        if len(seeds) > self.b.maxAgents:
            self.note_limit("maxAgents")
        seeds = seeds[: self.b.maxAgents]
        if not seeds:
            self.fallback("plan_search found no seed documents", parents=[plan.id])
            return
        added = 0
        for i, doc in enumerate(seeds):
            spent = self.global_budget_spent()
            if spent:
                self.stop(*spent)
                break
            self.add_step(f"t{i}", StepType.traverse_node, [plan.id], depth=1, doc=doc)
            added += 1
        if added:
            self.events.append(Event("FanOut", f"fan-out of {added} traversal agent(s) from plan"))

    def spawn_children(self, s: StepStatus) -> None:
        fresh = [d for d in dict.fromkeys(s.next) if d not in self.idx.visited]
        if not fresh:
            return
        if s.depth + 1 > self.b.maxDepth:
            self.note_limit("maxDepth")
            return
        if len(fresh) > self.b.maxFanoutPerNode:
            self.note_limit("maxFanoutPerNode")
        added = 0
        for j, doc in enumerate(fresh[: self.b.maxFanoutPerNode]):
            spent = self.global_budget_spent()
            if spent:
                self.stop(*spent)
                break
            self.add_step(f"{s.id}-{j}", StepType.traverse_node, [s.id], depth=s.depth + 1, doc=doc)
            added += 1
        if added:
            s.decision = (s.decision + "; " if s.decision else "") + f"deeper: {added}"
            self.idx.dirty.add(s.id)
            self.events.append(Event("FanOut", f"fan-out of {added} from {s.id} at depth {s.depth}"))

    def stop_search_if_spent(self) -> None:
        """A global budget ends the search: queued traversals never run."""
        if self.idx.open_search <= 0:
            return
        spent = self.global_budget_spent()
        if spent is None or spent[0] == "maxSteps":
            return  # maxSteps only forbids *new* steps; planned ones may run
        self.stop(*spent)
        for sid in list(self.idx.queue):
            s = self.idx.by_id[sid]
            if s.type == T_TRAVERSE_NODE and s.phase == P_QUEUED:
                s.message = f"skipped: {spent[0]} spent"
                self.set_phase(s, StepPhase.Skipped)
        for sid in list(self.idx.backoff):
            s = self.idx.by_id[sid]
            if s.type == T_TRAVERSE_NODE:
                s.message = f"not retried: {spent[0]} spent"
                self.set_phase(s, StepPhase.Failed)
                self.mark_expanded(s)

    def fan_in(self) -> None:
        """When the traversal is over, keep only steps that found an answer."""
        if PLAN not in self.idx.by_id or self.fan_in_started() or self.st.phase != Phase.Running.value:
            return
        plan = self.idx.by_id[PLAN]
        if not plan.expanded or self.idx.open_search > 0:
            return
        found = [s.id for s in self.st.steps if s.type == T_TRAVERSE_NODE and s.found and s.phase == P_SUCCEEDED]
        if found:
            self.add_step(AGGREGATE, StepType.aggregate_results, found)
            self.events.append(Event("FanIn", f"aggregating {len(found)} step(s) that found an answer"))
        else:
            traversed = [s.id for s in self.st.steps if s.type == T_TRAVERSE_NODE]
            self.fallback("the deep search found nothing", parents=traversed or [PLAN])

    def launch(self) -> None:
        free = self.b.maxParallel - len(self.idx.running)
        while free > 0 and self.idx.queue:
            sid = self.idx.queue.popleft()
            s = self.idx.by_id[sid]
            if s.phase != P_QUEUED:
                continue
            is_search = s.type == T_TRAVERSE_NODE
            allowance = self.token_allowance()
            if is_search and allowance < MIN_STEP_TOKENS:
                if self.idx.running:
                    self.idx.queue.appendleft(sid)  # tokens are reserved by running steps: wait for them
                    break
                self.stop("maxTokens" if self.price_per_token() == 0 else "maxCostUSD", "no tokens left for another search step")
                s.message = "skipped: token budget spent"
                self.set_phase(s, StepPhase.Skipped)
                continue
            if s.attempts == 0:
                self.idx.started += 1
            s.attempts += 1
            s.tokenAllowance = allowance
            s.job = self.job_namer(self.run_uid, s.id)
            s.startedAt = s.startedAt or iso(self.now)
            self.set_phase(s, StepPhase.Running)
            if s.depth > self.idx.max_depth:
                self.idx.max_depth = s.depth
            self.start.append(self.start_action(s, is_search))
            free -= 1

    def start_action(self, s: StepStatus, is_search: bool) -> StartStep:
        timeout = self.spec.steps.timeoutSeconds
        if is_search:
            left = int((self.deadline() - self.now).total_seconds())
            timeout = max(1, min(timeout, left))
        k = self.b.maxFanoutPerNode if is_search else self.b.maxAgents
        inputs = [self.idx.by_id[p].output for p in s.parents if p in self.idx.by_id and self.idx.by_id[p].output]
        return StartStep(
            step_id=s.id,
            step_type=s.type,
            attempt=s.attempts,
            job=s.job,
            timeout_seconds=timeout,
            retries=self.spec.steps.retries,
            needs_lineage=s.type == T_CREATE_REPORT,
            input={
                "stepId": s.id,
                "type": s.type,
                "attempt": s.attempts,
                "parents": list(s.parents),
                "depth": s.depth,
                "doc": s.doc,
                "k": k,
                "tokenAllowance": s.tokenAllowance,
                "inputs": inputs,
            },
        )

    def restart_missing(self, observations: Mapping[str, Observation]) -> None:
        """Level-triggered: a Running step whose attempt is not seen is (re)started."""
        started = {a.step_id for a in self.start}
        for sid in sorted(self.idx.running):
            s = self.idx.by_id[sid]
            o = observations.get(sid)
            if sid not in started and o is None:
                self.start.append(self.start_action(s, s.type == T_TRAVERSE_NODE))

    def summary_message(self) -> str:
        parts = [f"{self.st.answers} answer(s)", f"{len(self.st.steps)} steps"]
        if self.st.stoppedBy:
            parts.append(f"stopped by {self.st.stoppedBy}")
        if self.st.fallback:
            parts.append(f"fell back to simple search ({self.st.fallback})")
        return ", ".join(parts)

    def finish(self, phase: Phase, message: str) -> None:
        if self.st.phase in (Phase.Succeeded.value, Phase.Failed.value):
            return
        for sid in list(self.idx.queue) + sorted(self.idx.backoff):
            s = self.idx.by_id[sid]
            if s.phase in (P_QUEUED, P_BACKOFF):
                s.message = s.message or "skipped: the run ended"
                self.set_phase(s, StepPhase.Skipped)
        self.idx.queue.clear()
        self.st.phase = phase.value
        self.st.message = message[:1000]
        self.st.finishedAt = iso(self.now)
        ok = phase == Phase.Succeeded
        self.set_condition("Running", "False", "Finished", "the run finished")
        self.set_condition("Succeeded" if ok else "Failed", "True", "RunSucceeded" if ok else "RunFailed", message[:1000])
        self.events.append(Event("RunFinished", f"run {phase.value.lower()}: {message}"[:1000], "Normal" if ok else "Warning"))

    def set_condition(self, type: str, status: str, reason: str, message: str) -> None:
        for c in self.st.conditions:
            if c.type == type:
                if c.status != status:
                    c.lastTransitionTime = iso(self.now)
                c.status, c.reason, c.message = status, reason, message
                return
        self.st.conditions.append(Condition(type=type, status=status, reason=reason, message=message, lastTransitionTime=iso(self.now)))

    def account(self) -> None:
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

    def wake_at(self) -> Optional[datetime]:
        if self.st.phase != Phase.Running.value:
            return None
        times = [parse_time(self.idx.by_id[s].notBefore) for s in self.idx.backoff]
        if self.idx.open_search > 0 and not self.past_deadline():
            times.append(self.deadline())
        return min(times) if times else None


def reconcile(
    spec: SearchRunSpec,
    status: Optional[SearchRunStatus],
    observations: Mapping[str, Observation],
    now: datetime,
    run_uid: str,
    complete: bool = False,
    job_namer: JobNamer = step_attempt_name,
) -> Decision:
    """Decide the run's next steps.

    ``observations`` maps step ids to what the executor saw of them. With
    ``complete=True`` they are everything that exists (the kube executor lists the
    run's Jobs), so a Running step with no observation is started again; starting
    is idempotent by the step's deterministic Job name (``job_namer(run_uid, step_id)``).
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    status = status if status is not None else SearchRunStatus()
    p = _Planner(spec, status, now, run_uid, job_namer)
    p.idx.dirty = set()
    if status.phase in (Phase.Succeeded.value, Phase.Failed.value):
        return Decision(status=status)
    if status.phase == Phase.Pending.value:
        p.begin()
    for obs in observations.values():
        p.apply(obs)
    p.release_backoffs()
    # Expanding can add steps that finish nothing yet; fan-in may follow; loop to a fixpoint.
    while True:
        before = len(status.steps)
        p.expand()
        p.stop_search_if_spent()
        p.fan_in()
        p.expand()
        if len(status.steps) == before:
            break
    if status.phase == Phase.Running.value:
        p.launch()
        if complete:
            p.restart_missing(observations)
        if not p.idx.running and not p.idx.queue and not p.idx.backoff and status.phase == Phase.Running.value:
            # Nothing runs and nothing can: a dead run must not hang.
            p.finish(Phase.Failed, "no step can make progress (internal error)")
    p.account()
    changed, p.idx.dirty = frozenset(p.idx.dirty), set()
    return Decision(status=status, start=p.start, events=p.events, wake_at=p.wake_at(),
                    changed=changed, running=tuple(sorted(p.idx.running)))


def lineage_summary(status: SearchRunStatus) -> LineageSummary:
    by_type: dict[str, int] = {}
    by_phase: dict[str, int] = {}
    for s in status.steps:
        by_type[s.type] = by_type.get(s.type, 0) + 1
        by_phase[s.phase] = by_phase.get(s.phase, 0) + 1
    return LineageSummary(steps=len(status.steps), byType=by_type, byPhase=by_phase)
