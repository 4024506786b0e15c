"""The step cache in the operator: a step whose key has an entry gets no Job.

The reconciler asks ``StepRecall.answer`` which of a pass's starts need a Job: the others were
answered by a ``Recall`` source (the step cache, under ``cache/<namespace>/`` in the run's store)
and their observations wait in ``answered`` for the next pass, which the daemon is woken for. After
a pass reads a succeeded step's committed result, ``fill`` adds it to the cache (ReadWrite only).

The cache is an optimisation: anything wrong with it (the corpus cannot be digested, an entry is
corrupt, the store refuses a write) is a miss and the step runs as a Job.
"""

from __future__ import annotations

import logging
from typing import Iterable, Mapping, Optional

from ...api import CacheMode, SearchRunSpec
from ...artifacts import ArtifactStore, read_uri
from ...cache import CACHEABLE, make_cache
from ...corpus import load_corpus
from ...engine import Event, Observation, StartStep
from ...steps.logcopy import read_input
from ..base import Recall
from .shared import io_pool

log = logging.getLogger("searchrun.step_cache")

# What the operator reads to digest a corpus: what step Jobs may read (never its own files).
CORPUS_SCHEMES = ("builtin:", "s3://")


class StepRecall:
    """One run's recall in the operator. ``sources`` come before the cache (a resume's kept steps)."""

    def __init__(self, store: ArtifactStore, spec: SearchRunSpec, namespace: str, run_uid: str, sources: Iterable = ()):
        self.store, self.spec, self.namespace, self.uid = store, spec, namespace, run_uid
        self.sources = list(sources)
        self._recall: Optional[Recall] = None
        self.answered: dict[str, Observation] = {}  # step id -> its observation, for the next pass
        self.started: dict[str, StartStep] = {}     # step id -> the start of a Job whose result may fill the cache

    @property
    def on(self) -> bool:
        return self.spec.cache.mode != CacheMode.Off.value or bool(self.sources)

    def _corpus(self):
        uri = self.spec.corpus.uri
        if not uri.startswith(CORPUS_SCHEMES):
            raise ValueError(f"corpus {uri}: the operator digests only builtin: and s3:// corpora")
        return load_corpus(uri, self.spec.corpus.format, read_uri=read_uri)

    def recall(self) -> Recall:
        """Built on first use: the cache digests the corpus once per run (per operator process)."""
        if self._recall is None:
            try:
                cache = make_cache(self.store, self.spec, self.namespace, self.uid, self._corpus)
            except Exception as e:  # noqa: BLE001 - no digest, no cache: every step is a miss
                log.warning("%s: step cache off for run %s: %s", self.namespace, self.uid, str(e)[:300])
                cache = None
            self._recall = Recall([*self.sources, cache])
        return self._recall

    def _lookup(self, a: StartStep) -> Optional[Observation]:
        try:
            return self.recall().lookup(a)
        except Exception as e:  # noqa: BLE001 - a store error is a miss
            log.warning("%s: cache lookup of %s/%s failed: %s", self.namespace, self.uid, a.step_id, str(e)[:300])
            return None

    def answer(self, starts: list[StartStep]) -> list[StartStep]:
        """The starts that still need a Job; the others' observations go to ``answered``."""
        if not self.on:
            return starts
        asked = [a for a in starts if a.step_type in CACHEABLE or self.sources]
        if asked:
            self.recall()  # built here, not by each lookup thread
        hits = list(io_pool().map(self._lookup, asked)) if len(asked) > 1 else [self._lookup(a) for a in asked]
        by_id = {a.step_id: h for a, h in zip(asked, hits) if h is not None}
        self.answered.update(by_id)
        need = [a for a in starts if a.step_id not in by_id]
        if self.spec.cache.mode == CacheMode.ReadWrite.value:
            self.started.update((a.step_id, a) for a in need if a.step_type in CACHEABLE)
        return need

    def take_answered(self) -> dict[str, Observation]:
        answered, self.answered = self.answered, {}
        return answered

    def after_pass(self, d, obs: Mapping[str, Observation], answered: Mapping[str, Observation],
                   pos: Optional[Mapping[str, int]]) -> None:
        """After a pass's Jobs: fill the cache with the steps it saw succeed, and one event for the
        steps it observed answered (``pos``: step id -> index in ``d.status.steps``)."""
        if pos is not None and self.spec.cache.mode == CacheMode.ReadWrite.value:
            self.fill(obs, {sid: d.status.steps[pos[sid]].type for sid in obs if sid in pos})
        ev = self.event(answered)
        if ev is not None:
            d.events.append(ev)

    def event(self, answered: Mapping[str, Observation]) -> Optional[Event]:
        """One event per pass for the steps the cache answered."""
        hits = [o for o in answered.values() if o.reused is not None and o.reused.how == "cache"]
        if not hits:
            return None
        saved = sum(o.reused.tokens_saved for o in hits)
        ids = ", ".join(o.step_id for o in hits[:10]) + (", ..." if len(hits) > 10 else "")
        return Event("StepsCached", f"{len(hits)} step(s) answered from the cache, no Job ({saved} tokens saved): {ids}")

    def _action(self, sid: str, step_type: str, obs: Observation) -> Optional[StartStep]:
        a = self.started.pop(sid, None)
        if a is not None and a.attempt == obs.attempt:
            return a
        try:  # started by an operator before a restart: the input the step stored beside its result
            inp = read_input(self.store, self.uid, sid, obs.attempt)
        except Exception:  # noqa: BLE001 - no input copy: no fill
            return None
        return StartStep(sid, step_type, obs.attempt, "", inp, 0, 0)

    def _fill(self, item: tuple[str, str, Observation]) -> None:
        sid, step_type, obs = item
        try:
            a = self._action(sid, step_type, obs)
            if a is not None:
                self.recall().fill(a, obs)
        except Exception as e:  # noqa: BLE001 - the step has succeeded all the same
            log.warning("%s: cache fill of %s/%s failed: %s", self.namespace, self.uid, sid, str(e)[:300])

    def fill(self, obs: Mapping[str, Observation], types: Mapping[str, str]) -> None:
        """Add the succeeded steps' committed results (ReadWrite); ``types``: step id -> step type."""
        if self.spec.cache.mode != CacheMode.ReadWrite.value:
            return
        items = [(sid, types[sid], o) for sid, o in obs.items()
                 if o.state == "succeeded" and o.reused is None and types.get(sid) in CACHEABLE]
        for sid, o in obs.items():
            if o.state == "failed":
                self.started.pop(sid, None)
        if len(items) > 1:
            self.recall()
            list(io_pool().map(self._fill, items))
        elif items:
            self._fill(items[0])
