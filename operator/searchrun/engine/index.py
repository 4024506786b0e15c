"""A derived view of the lineage, kept in step with every change the engine makes, so that a
pass over a 10,000-step run costs what changed, not the run's size."""

from __future__ import annotations

from collections import deque

from ..api import SearchRunStatus, StepStatus
from ..steps import registry  # the module: step types import engine.types while it loads
from .types import P_BACKOFF, P_FAILED, P_QUEUED, P_RUNNING, P_SKIPPED, P_SUCCEEDED

IN_FLIGHT = (P_QUEUED, P_RUNNING, P_BACKOFF)
WEAK_RATIO = 0.75  # a search step scoring below this share of its wave's best is a weak match (delay)


class LineageIndex:
    def __init__(self, status: SearchRunStatus):
        self.by_id: dict[str, StepStatus] = {}
        self.visited: set[str] = set()
        self.queue: deque[str] = deque()
        self.running: set[str] = set()
        self.backoff: set[str] = set()
        self.to_expand: deque[str] = deque()
        self.open_search = 0   # search steps not yet expanded
        self.tokens = 0
        self.cost = 0.0
        self.started = 0       # steps that got at least one attempt
        self.max_depth = 0
        self.agents = 0
        self.peak_parallel = status.budgetUsed.parallel
        self.skipped = 0
        # Search steps are expanded in waves (``Planner.expand_waves``), so that runs are
        # reproducible: a step's wave is its parent's expansion wave plus one (a seed's is 1),
        # and it expands in its own wave, or in the next one when it is a weak match
        # (``delay``). ``best``: the best score of each wave's steps.
        self.wave: dict[str, int] = {}
        self.best: dict[int, float] = {}
        self.active_by_wave: dict[int, int] = {}
        self.held: set[str] = set()     # finished search steps waiting for their wave
        self.committed = 0              # token allowances of the steps in flight
        # Ids of steps added or changed by the current ``reconcile`` call (``Decision.changed``).
        # A status the executor hands in is what it already has: nothing in it is new to it.
        self.dirty: set[str] = set()
        # Set by an executor that holds settled steps as JSON (the kube executor, once a run is
        # offloaded) to its serializer (dict -> bytes): a new step is then made settled with it
        # (``Planner.add_step``), its model dropped at once.
        self.compact_new = None
        for s in status.steps:
            self.add(s)
        self.n = len(status.steps)

    def add(self, s: StepStatus) -> None:
        self.by_id[s.id] = s
        search = registry.kind_of(s.type).search
        if s.doc is not None and search:
            self.visited.add(s.doc)
            if s.depth == 1:
                self.agents += 1
        if search:
            parent = self.by_id.get(s.parents[0]) if s.parents else None
            w = self.expands_in(parent.id) + 1 if parent is not None and parent.id in self.wave else s.depth
            self.wave[s.id] = w
            self.note_score(s)
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
        if search and not s.expanded and s.phase != P_SKIPPED:
            self.open_search += 1
        if s.phase in IN_FLIGHT:
            self.committed += s.tokenAllowance
            if search:
                w = self.wave[s.id]
                self.active_by_wave[w] = self.active_by_wave.get(w, 0) + 1
        self.tokens += s.tokens
        self.cost += s.costUSD
        self.max_depth = max(self.max_depth, s.depth if s.attempts > 0 else 0)

    def note_score(self, s: StepStatus) -> None:
        """Count a search step's score into its wave's best (once the step has one)."""
        if s.score is not None:
            w = self.wave[s.id]
            if s.score > self.best.get(w, 0.0):
                self.best[w] = s.score

    def delay(self, step_id: str) -> int:
        """1 when the step is a weak match, whose children wait one wave: not an answer, and
        scoring below ``WEAK_RATIO`` of the best of its wave. A document two parents propose
        then goes to the stronger one even when it is a link deeper ("who leads the team that
        maintains X?": the team's lead, not the lead a weak seed links to first). 0 otherwise,
        and for a step without a score. Known once every step of its wave has finished."""
        s = self.by_id[step_id]
        score = s.score
        if score is None or s.found:
            return 0
        return 1 if score < WEAK_RATIO * self.best.get(self.wave[step_id], 0.0) else 0

    def expands_in(self, step_id: str) -> int:
        """The wave in which the step expands (its children's wave is one more)."""
        return self.wave[step_id] + self.delay(step_id)


def index_of(status: SearchRunStatus) -> LineageIndex:
    """The index cached on the status object (rebuilt when the lineage changed behind its back)."""
    idx = getattr(status, "_engine_index", None)
    if idx is None or idx.n != len(status.steps):
        idx = LineageIndex(status)
        object.__setattr__(status, "_engine_index", idx)
    return idx
