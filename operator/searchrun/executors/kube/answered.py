"""Steps a pass answers without a Job: those a resume kept (``executors.base.Recall`` over the
previous epoch's commits) and the step cache's hits. Their observations go into the next pass,
as a finished Job's would; asked again after a restart, they answer again."""

from __future__ import annotations

from ...api import StepStatus
from ...engine import Decision, Observation
from .shared import io_pool
from .step_cache import StepRecall


class AnsweredSteps:
    """Mixed into ``RunReconciler``: uses its ``recall``, ``recalled``, ``step_recall``, ``store``,
    ``spec``, ``namespace``, ``run_id``, ``uid`` and ``cache``."""

    # -- a resume's kept steps

    def _answer_recalled(self, d: Decision) -> None:
        if self.recall is not None and d.start:
            kept = list(io_pool().map(self._kept, d.start)) if len(d.start) > 1 else [self._kept(d.start[0])]
            d.start = [a for a, k in zip(d.start, kept) if not k]

    def _kept(self, a) -> bool:
        """Whether ``a`` is answered without a Job (a step kept by a resume); its observation goes
        into the next pass. Asked again after a restart, it answers again: no Job either."""
        hit = self.recall.lookup(a) if self.recall is not None else None
        if hit is not None:
            self.recalled[a.step_id] = hit
        return hit is not None

    def _recalled(self, running: dict[str, StepStatus]) -> dict[str, Observation]:
        out, self.recalled = {sid: o for sid, o in self.recalled.items() if sid in running}, {}
        return out

    # -- the step cache (step_cache.StepRecall): steps answered without a Job

    def _recall(self) -> StepRecall:
        if self.step_recall is None or self.step_recall.spec is not self.spec or self.step_recall.uid != self.run_id:
            self.step_recall = StepRecall(self.store, self.spec, self.namespace, self.run_id)
        return self.step_recall

    def _answered(self) -> dict[str, Observation]:
        """The steps the previous pass answered from the cache: observed now, as finished Jobs are."""
        return self.step_recall.take_answered() if self.step_recall is not None else {}

    def _needing_jobs(self, starts: list) -> list:
        need = self._recall().answer(starts)
        if len(need) < len(starts):
            self.cache.on_change(self.uid)  # wake the daemon: the next pass observes the answered steps
        return need
