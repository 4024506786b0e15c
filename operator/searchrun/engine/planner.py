"""The DAG: which steps exist, when they start, and when the run ends.

Step types decide what follows one of their steps (``steps/<type>.py``: ``record`` and
``expand``); the planner owns the lineage (every change goes through it, so the index stays
right), the run-level rules (fan-in, fallback, finishing) and launching within ``maxParallel``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Iterable, Mapping, Optional

from ..api import Condition, Phase, SearchRunSpec, SearchRunStatus, StepPhase, StepStatus, WavePlan
from ..steps import registry  # the module: step types import engine.types while it loads
from . import retries
from .budget import MIN_STEP_TOKENS, BudgetAccount
from .index import IN_FLIGHT, index_of
from .resume import mark_reused
from .settled import SettledStep
from .types import (
    AGGREGATE, DETECT, P_BACKOFF, P_QUEUED, P_RUNNING, P_SKIPPED, P_SUCCEEDED, PLAN, REPORT, SIMPLE,
    Event, JobNamer, Observation, StartStep, StepResult, iso, path_key, step_attempt_name,
)

RUN_DONE = (Phase.Succeeded.value, Phase.Failed.value)
# Traversals expand in waves (see ``expand_waves``). Off only in bench/bench_waves.py, which
# measures what the waves cost in wall time.
WAVES = True
# New steps one pass plans at most, in parents' turn, before it hands the lineage to the executor
# (which writes it, and comes back at once: ``wake_at``). One wave of a 10,000-step run plans
# some 8,900 steps; a pass that planned them all held each in memory several times over (its
# model, its JSON, the status patch and the journal entry) at the operator's peak.
WAVE_CHUNK = 1000


class Planner:
    def __init__(self, spec: SearchRunSpec, status: SearchRunStatus, now: datetime, run_uid: str,
                 job_namer: JobNamer = step_attempt_name):
        self.spec = spec
        self.b = spec.budget
        self.st = status
        self.now = now
        self.run_uid = run_uid
        self.job_namer = job_namer
        self.idx = index_of(status)
        self.budget = BudgetAccount(spec, status, self.idx, now)
        self.events: list[Event] = []
        self.start: list[StartStep] = []
        self.steps_at_start = self.idx.n
        self.more = False  # a wave's planning goes on in the next pass (``WAVE_CHUNK``)

    # -- lineage changes (all go through here so the index stays right)

    def add_step(self, id: str, type: str, parents: Iterable[str] = (), depth: int = 0, doc: Optional[str] = None) -> StepStatus:
        if id in self.idx.by_id:
            return self.idx.by_id[id]
        s = StepStatus(id=id, type=getattr(type, "value", type), parents=list(parents), depth=depth, doc=doc)
        if self.idx.compact_new is not None:  # a wave adds thousands: no model each (writes patch or thaw it)
            s = SettledStep(s, self.idx.compact_new(s.model_dump(mode="json", exclude_none=True)))
        self.st.steps.append(s)
        self.idx.add(s)
        self.idx.n += 1
        self.idx.dirty.add(id)
        return s

    def touch(self, s: StepStatus) -> None:
        """``s`` changed outside ``set_phase``: the executor must write it."""
        self.idx.dirty.add(s.id)

    def commit_allowance(self, s: StepStatus, tokens: int) -> None:
        """Set the tokens ``s`` may spend (reserved from the budget while it is in flight)."""
        if s.phase in IN_FLIGHT:
            self.idx.committed += tokens - s.tokenAllowance
        s.tokenAllowance = tokens
        self.idx.dirty.add(s.id)

    def set_phase(self, s: StepStatus, phase: StepPhase) -> None:
        self.idx.dirty.add(s.id)  # callers change other fields of the step just before
        old = s.phase
        if old == phase.value:
            return
        if old in IN_FLIGHT and phase.value not in IN_FLIGHT:
            self.idx.committed -= s.tokenAllowance
            if registry.kind_of(s.type).search:
                self.idx.active_by_wave[self.idx.wave[s.id]] -= 1
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
            if registry.kind_of(s.type).search and not s.expanded:
                self.idx.open_search -= 1
                s.expanded = True

    def mark_expanded(self, s: StepStatus) -> None:
        self.idx.dirty.add(s.id)
        if not s.expanded:
            s.expanded = True
            if registry.kind_of(s.type).search:
                self.idx.open_search -= 1

    def event(self, reason: str, message: str, type: str = "Normal") -> None:
        self.events.append(Event(reason, message, type))

    def note_limit(self, name: str) -> None:
        if name not in self.st.limitsHit:
            self.st.limitsHit.append(name)
            self.event("LimitReached", f"{name} limited the search")

    def stop(self, budget: str, why: str) -> None:
        if self.st.stoppedBy is None:
            self.st.stoppedBy = budget
            self.event("BudgetSpent", f"{budget} spent: {why}; no new search steps, fanning in", "Warning")
        self.note_limit(budget)

    # -- the run

    def begin(self) -> None:
        self.st.phase = Phase.Running.value
        self.st.startedAt = self.st.startedAt or iso(self.now)  # a resumed run keeps its active time
        self.add_step(DETECT, "detect_intent")
        self.set_condition("Running", "True", "Started", "the run started")

    def apply(self, obs: Observation) -> None:
        s = self.idx.by_id.get(obs.step_id)
        if s is None or s.phase != P_RUNNING:
            return  # unknown or already applied: level-triggered input repeats itself
        if obs.attempts is not None:
            if obs.attempts > s.attempts:
                s.attempts = obs.attempts  # the executor retries by itself
                self.touch(s)
        elif obs.attempt != s.attempts:
            return  # an older attempt
        if obs.state == "running":
            return
        if obs.state == "failed":
            retries.on_failure(self, s, obs)
            return
        r = obs.result or StepResult()
        s.tokens, s.costUSD = r.tokens, r.costUSD
        self.idx.tokens += r.tokens
        self.idx.cost += r.costUSD
        s.output = r.output
        s.decision = r.decision or None
        s.found = r.found
        registry.kind_of(s.type).record(self, s, r)
        if obs.reused is not None:
            mark_reused(s, obs.reused)
        # an executor that retried the step itself may say why the earlier attempts failed
        s.message = f"succeeded on attempt {s.attempts}; an earlier attempt failed: {obs.message[:400]}" if obs.message else None
        self.set_phase(s, StepPhase.Succeeded)
        # No event per successful step: events are for milestones (a 1,000-step run would post 1,000).

    def expand(self) -> None:
        while self.idx.to_expand:
            s = self.idx.by_id[self.idx.to_expand.popleft()]
            if s.expanded:
                continue
            if WAVES and registry.kind_of(s.type).search:
                self.idx.held.add(s.id)  # waits for its wave
                continue
            self.mark_expanded(s)
            registry.kind_of(s.type).expand(self, s, s.phase == P_SUCCEEDED)
        self.expand_waves()

    def expand_waves(self) -> None:
        """Expand finished search steps in waves, so that which parent gets a document two
        parents propose, and where a budget cuts, do not depend on the order in which steps
        finished. A step's wave is its parent's expansion wave plus one; it expands in that wave,
        or in the next one when it is a weak match (``LineageIndex.delay``): best first, level by
        level. A wave expands once no search step of it or an earlier one is in flight; its
        steps in step-id order, the weak ones of the wave before after them. At most about
        ``WAVE_CHUNK`` new steps a pass: the rest of the wave in the passes after, against the
        budget as it stood when the wave began (``status.wavePlan``), so that where it is cut
        does not change what it plans."""
        idx = self.idx
        while idx.held:
            active = min((w for w, n in idx.active_by_wave.items() if n > 0), default=None)
            ready = [i for i in idx.held if active is None or idx.wave[i] < active]
            if not ready:
                return
            due = {i: idx.expands_in(i) for i in ready}
            x = min(due.values())
            if active is not None and x >= active:
                return
            if self.st.wavePlan is None:
                self.st.wavePlan = WavePlan(tokens=idx.tokens, costUSD=idx.cost, reserved=idx.committed)
            for sid in sorted((i for i in ready if due[i] == x), key=lambda i: (-idx.wave[i], path_key(i))):
                if idx.n - self.steps_at_start >= WAVE_CHUNK:
                    self.more = True
                    return
                idx.held.discard(sid)
                s = idx.by_id[sid]
                if not s.expanded:
                    self.mark_expanded(s)
                    registry.kind_of(s.type).expand(self, s, s.phase == P_SUCCEEDED)
            self.st.wavePlan = None

    def fallback(self, why: str, parents: list[str]) -> None:
        if SIMPLE in self.idx.by_id:
            if self.st.escalated:  # the simple search came first and found nothing either: report that
                self.add_step(REPORT, "create_report", [SIMPLE])
            return
        self.st.fallback = why
        self.event("FallbackToSimple", f"{why}: falling back to simple search", "Warning")
        self.add_step(SIMPLE, "simple_search", parents)

    def escalate(self, why: str, parents: list[str]) -> None:
        """A simple search that found nothing goes on to a deep search (once; the deep search's
        own fallback then reports the simple search's empty result). Not when the simple search
        was itself the deep search's fallback: then it reports what it found."""
        if PLAN in self.idx.by_id or self.st.fallback:
            self.add_step(REPORT, "create_report", parents)
            return
        self.st.escalated = why
        self.event("EscalatedToDeep", f"{why}: searching deep", "Warning")
        self.add_step(PLAN, "plan_search", parents)

    def spawn(self, parent: StepStatus, children: list[tuple[str, str, str]], limit: int, limit_name: str, child_id,
              depth: int) -> int:
        """Traversal children of ``parent``: (doc, via, why) in order, at most ``limit``, while
        no global budget forbids them; ``child_id(j)`` names the j-th. Each gets its token
        allowance now, so that allowances do not depend on when it starts. Returns how many."""
        if len(children) > limit:
            self.note_limit(limit_name)
        added = 0
        for j, (doc, via, why) in enumerate(children[:limit]):
            spent = self.budget.spent(planning=True)
            if spent:
                self.stop(*spent)
                break
            s = self.add_step(child_id(j), "traverse_node", [parent.id], depth=depth, doc=doc)
            s.via, s.why = via or None, why or None
            allowance = self.budget.token_allowance(planning=True)
            if allowance < MIN_STEP_TOKENS:
                self.stop("maxTokens" if self.budget.price_per_token() == 0 else "maxCostUSD", "no tokens left for another search step")
                s.message = "skipped: token budget spent"
                self.set_phase(s, StepPhase.Skipped)
                break
            self.commit_allowance(s, allowance)
            if self.st.wavePlan is not None:
                self.st.wavePlan.reserved += allowance
            added += 1
        return added

    def stop_search_if_spent(self) -> None:
        """A global budget ends the search: queued traversals never run."""
        if self.idx.open_search <= 0:
            return
        spent = self.budget.spent()
        if spent is None or spent[0] == "maxSteps":
            return  # maxSteps only forbids *new* steps; planned ones may run
        self.stop(*spent)
        for sid in list(self.idx.queue):
            s = self.idx.by_id[sid]
            if registry.kind_of(s.type).search and s.phase == P_QUEUED:
                s.message = f"skipped: {spent[0]} spent"
                self.set_phase(s, StepPhase.Skipped)
        for sid in list(self.idx.backoff):
            s = self.idx.by_id[sid]
            if registry.kind_of(s.type).search:
                s.message = f"not retried: {spent[0]} spent"
                self.set_phase(s, StepPhase.Failed)
                self.mark_expanded(s)

    def fan_in(self) -> None:
        """When the traversal is over, keep only steps that found an answer."""
        if PLAN not in self.idx.by_id or self.budget.fan_in_started() or self.st.phase != Phase.Running.value:
            return
        plan = self.idx.by_id[PLAN]
        if not plan.expanded or self.idx.open_search > 0:
            return
        searches = [s for s in self.st.steps if registry.kind_of(s.type).search]
        found = [s.id for s in searches if s.found and s.phase == P_SUCCEEDED]
        if found:
            self.add_step(AGGREGATE, "aggregate_results", found)
            self.event("FanIn", f"aggregating {len(found)} step(s) that found an answer")
        else:
            self.fallback("the deep search found nothing", parents=[s.id for s in searches] or [PLAN])

    def launch(self) -> None:
        free = self.b.maxParallel - len(self.idx.running)
        while free > 0 and self.idx.queue:
            sid = self.idx.queue.popleft()
            s = self.idx.by_id[sid]
            if s.phase != P_QUEUED:
                continue
            search = registry.kind_of(s.type).search
            # A step planned with an allowance (``spawn``) keeps it: reserved since, and the same
            # whichever steps finished before this one starts (or where its wave was cut).
            allowance = s.tokenAllowance if s.tokenAllowance > 0 else self.budget.token_allowance()
            if search and allowance < MIN_STEP_TOKENS:
                if self.idx.running:
                    self.idx.queue.appendleft(sid)  # tokens are reserved by running steps: wait for them
                    break
                self.stop("maxTokens" if self.budget.price_per_token() == 0 else "maxCostUSD", "no tokens left for another search step")
                s.message = "skipped: token budget spent"
                self.set_phase(s, StepPhase.Skipped)
                continue
            if s.attempts == 0:
                self.idx.started += 1
            s.attempts += 1
            self.commit_allowance(s, allowance)
            s.job = self.job_namer(self.run_uid, s.id)
            s.startedAt = s.startedAt or iso(self.now)
            self.set_phase(s, StepPhase.Running)
            if s.depth > self.idx.max_depth:
                self.idx.max_depth = s.depth
            self.start.append(self.start_action(s))
            free -= 1

    def start_action(self, s: StepStatus) -> StartStep:
        kind = registry.kind_of(s.type)
        timeout = self.spec.steps.timeoutSeconds
        if kind.search:
            left = int((self.budget.deadline() - self.now).total_seconds())
            timeout = max(1, min(timeout, left))
        inputs = [self.idx.by_id[p].output for p in s.parents if p in self.idx.by_id and self.idx.by_id[p].output]
        return StartStep(
            step_id=s.id,
            step_type=s.type,
            attempt=s.attempts,
            job=s.job,
            timeout_seconds=timeout,
            retries=self.spec.steps.retries,
            needs_lineage=kind.needs_lineage,
            input={
                "stepId": s.id,
                "type": s.type,
                "attempt": s.attempts,
                "parents": list(s.parents),
                "depth": s.depth,
                "doc": s.doc,
                "k": kind.k(self.b),
                "tokenAllowance": s.tokenAllowance,
                "inputs": inputs,
                **kind.extra_input(self, s),
            },
        )

    def restart_missing(self, observations: Mapping[str, Observation]) -> None:
        """Level-triggered: a Running step whose attempt is not seen is (re)started."""
        started = {a.step_id for a in self.start}
        for sid in sorted(self.idx.running):
            if sid not in started and observations.get(sid) is None:
                self.start.append(self.start_action(self.idx.by_id[sid]))

    def summary_message(self) -> str:
        parts = [f"{self.st.answers} answer(s)", f"{len(self.st.steps)} steps"]
        if self.st.stoppedBy:
            parts.append(f"stopped by {self.st.stoppedBy}")
        if self.st.fallback:
            parts.append(f"fell back to simple search ({self.st.fallback})")
        if self.st.escalated:
            parts.append(f"went on to a deep search ({self.st.escalated})")
        return ", ".join(parts)

    def finish(self, phase: Phase, message: str) -> None:
        if self.st.phase in RUN_DONE:
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
        self.event("RunFinished", f"run {phase.value.lower()}: {message}"[:1000], "Normal" if ok else "Warning")

    def set_condition(self, type: str, status: str, reason: str, message: str) -> None:
        for c in self.st.conditions:
            if c.type == type:
                if c.status != status:
                    c.lastTransitionTime = iso(self.now)
                c.status, c.reason, c.message = status, reason, message
                return
        self.st.conditions.append(Condition(type=type, status=status, reason=reason, message=message, lastTransitionTime=iso(self.now)))

    def wake_at(self) -> Optional[datetime]:
        if self.st.phase != Phase.Running.value:
            return None
        if self.more:
            return self.now
        times = [retries.parse_time(self.idx.by_id[s].notBefore) for s in self.idx.backoff]
        if self.idx.open_search > 0 and not self.budget.past_deadline():
            times.append(self.budget.deadline())
        return min(times) if times else None
