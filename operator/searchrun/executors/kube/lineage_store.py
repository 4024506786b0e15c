"""A run's lineage as the operator keeps it: as JSON in memory, and in the store once offloaded.

A pass costs what changed, not the size of the run: the engine reports which
steps it added or changed (``Decision.changed``), and ``StepDumps`` keeps the
lineage as JSON, its size, its frontier and its summary up to date from that.
Once the lineage is offloaded, a pass writes a *journal entry* with only the
steps it changed (``lineage-journal-<seq>.json``) instead of the whole lineage;
a full ``lineage.json`` (a snapshot, naming the journal entry it includes) is
written the first time, whenever the journal since the last snapshot outgrows
it, before ``create_report`` and when the run ends (``LineageJournal``). A
restarted operator reads the snapshot and then the journal entries after it
(``restore_lineage``).
"""

from __future__ import annotations

import heapq
import json
from typing import Optional

from ...api import LineageSummary, SearchRunStatus, StepStatus
from ...artifacts import ArtifactNotFound, ArtifactStore, dump_json, run_key
from ...engine.index import index_of
from ...engine.settled import changed_since_settled, is_settled, settle
from ..base import lineage_key

JOURNAL_PREFIX = "lineage-journal-"  # beside lineage.json: lineage-journal-00000001.json, ...


def journal_uri(lineage_uri: str, seq: int) -> str:
    return f"{lineage_uri.rsplit('/', 1)[0]}/{JOURNAL_PREFIX}{seq:08d}.json"


def restore_lineage(raw_status: dict, read_uri) -> tuple[Optional[SearchRunStatus], bool, int]:
    """The run's status as the engine needs it, whether it was offloaded, and the last journal
    entry read. When the lineage was offloaded, status holds only the frontier; the store holds
    it all (a snapshot plus the journal entries after it, written before every status patch)."""
    known = {k: v for k, v in (raw_status or {}).items() if k in SearchRunStatus.model_fields}
    if not known:
        return None, False, 0
    status = SearchRunStatus.model_validate(known)
    if not (status.lineageURI and read_uri is not None):
        return status, False, 0
    doc = json.loads(read_uri(status.lineageURI))
    data, seq = doc["status"], (doc.get("journal") or {}).get("seq")
    if seq is None:  # a lineage written without a journal
        return SearchRunStatus.model_validate(data), True, 0
    steps = list(data.get("steps") or [])
    while True:
        try:
            entry = json.loads(read_uri(journal_uri(status.lineageURI, seq + 1)))
        except ArtifactNotFound:
            break
        seq += 1
        data = entry["status"]
        for i, step in entry["steps"]:
            if i < len(steps):
                steps[i] = step
            elif i == len(steps):
                steps.append(step)
            else:
                raise ValueError(f"lineage journal entry {seq} skips step {len(steps)}")
    return SearchRunStatus.model_validate(dict(data, steps=steps)), True, seq


def restore_status(raw_status: dict, read_uri) -> tuple[Optional[SearchRunStatus], bool]:
    status, offloaded, _ = restore_lineage(raw_status, read_uri)
    return status, offloaded


_IN_FLIGHT = ("Running", "Queued", "Backoff")


def _dump_step(s: StepStatus) -> dict:
    return s.model_dump(mode="json", exclude_none=True, exclude_defaults=False)


def _json_size(x) -> int:
    return len(json.dumps(x, separators=(",", ":")))


class StepDumps:
    """A status's steps as JSON (what the status patch and the stored lineage hold), kept up to
    date from the engine's change set: its JSON size, the in-flight frontier and the summary
    (steps by type and phase) too. ``sync()`` costs what changed since the last call."""

    def __init__(self, status: SearchRunStatus):
        self.status = status
        self.dumps: list[dict] = []
        self.pos: dict[str, int] = {}
        self.sizes: list[int] = []
        self.size_sum = 0
        self.in_flight: set[int] = set()
        self.by_type: dict[str, int] = {}
        self.by_phase: dict[str, int] = {}
        self.unwritten: set[int] = set()  # positions changed since the lineage was last written
        self.touched: set[int] = set()    # positions added or changed since the last ``settle``
        # Once the lineage is offloaded (``settle`` was called), a new step that is settled (a
        # wave's thousands of Queued steps) is held as its JSON at once: no dict beside its model
        # until the store has it, and the model dropped as soon as its JSON is made.
        self.settle_new = False
        for s in status.steps:
            self._append(s)

    def _append(self, s: StepStatus) -> None:
        i, d = len(self.dumps), _dump_step(s)
        if self.settle_new and is_settled(s, index_of(self.status).held):
            raw = dump_json(d)
            settle(self.status, [i], lambda _: raw)
            self.dumps.append(self.status.steps[i].json)
        else:
            self.dumps.append(d)
        self.pos[s.id] = i
        n = _json_size(d)
        self.sizes.append(n)
        self.size_sum += n
        self._count(d, 1)
        self.unwritten.add(i)
        self.touched.add(i)
        if d["phase"] in _IN_FLIGHT:
            self.in_flight.add(i)

    def _count(self, d: dict, k: int) -> None:
        for counts, key in ((self.by_type, d["type"]), (self.by_phase, d["phase"])):
            v = counts.get(key, 0) + k
            if v:
                counts[key] = v
            else:
                counts.pop(key, None)

    def sync(self, changed=frozenset()) -> dict[str, Optional[dict]]:
        """Take the engine's changes (``Decision.changed``); returns each changed step's previous
        dump (None: a new step)."""
        steps = self.status.steps
        n_old = len(self.dumps)
        prev: dict[str, Optional[dict]] = {}
        for s in steps[n_old:]:  # new steps are appended, in lineage order
            prev[s.id] = None
            self._append(s)
        for sid in changed:
            i = self.pos.get(sid)
            if i is None or i >= n_old:
                continue  # new (dumped above)
            old = self.dumps[i]
            compact = isinstance(old, bytes)
            if compact:
                if not changed_since_settled(steps[i]):
                    continue  # settled, and not written since: unchanged
                old = json.loads(old)
            d = _dump_step(steps[i])
            if d == old:
                continue
            if compact and getattr(steps[i], "thawed", True) is None:
                # a settled step's field written (``expanded``, by its wave): it stays JSON, settled
                # again with it now (its old JSON dropped: a wave writes thousands); the previous
                # dump as much as record_pass reads of it
                prev[sid] = {k: old[k] for k in ("id", "type", "phase", "expanded") if k in old}
                steps[i]._freeze(steps[i], dump_json(d))
                self.dumps[i] = steps[i].json
            else:
                prev[sid] = old
                self.dumps[i] = d  # replaced, never changed in place: an earlier patch body keeps the old one
            n = _json_size(d)
            self.size_sum += n - self.sizes[i]
            self.sizes[i] = n
            self._count(old, -1)
            self._count(d, 1)
            if d["phase"] in _IN_FLIGHT:
                self.in_flight.add(i)
            else:
                self.in_flight.discard(i)
            self.unwritten.add(i)
            self.touched.add(i)
        return prev

    def settle(self) -> int:
        """Hold the settled steps among those touched since the last call as their JSON only, here
        and in the engine's lineage (``engine.settled``): a large run keeps no model and no dict
        per finished step. Only steps already in the store (not ``unwritten``) are settled."""
        touched, self.touched = self.touched, set()
        keep = {i for i in touched if i in self.unwritten}

        def raw_of(i: int) -> Optional[bytes]:
            if i in self.unwritten:
                return None
            d = self.dumps[i]
            return d if isinstance(d, bytes) else dump_json(d)

        done = settle(self.status, sorted(touched - keep), raw_of)
        for i in done:
            self.dumps[i] = self.status.steps[i].json
        self.touched |= keep  # tried again once written
        self.settle_new = True
        index_of(self.status).compact_new = dump_json  # new steps settled as the engine makes them
        return len(done)

    @property
    def json_size(self) -> int:
        """len(json.dumps(dumps, separators=(",", ":")))"""
        return self.size_sum + max(0, len(self.sizes) - 1) + 2

    def frontier(self, n: int = 50) -> list[dict]:
        """The first ``n`` steps in flight, in lineage order."""
        return [json.loads(d) if isinstance(d, bytes) else d for d in (self.dumps[i] for i in heapq.nsmallest(n, self.in_flight))]

    def summary(self) -> dict:
        return LineageSummary(steps=len(self.dumps), byType=dict(self.by_type), byPhase=dict(self.by_phase)).model_dump(mode="json")


_STEPS_MARK = "searchrun:steps-spliced-here:7f3c0d9e"


def _parts_with_steps(data: bytes, steps: list) -> list:
    """``data`` (dump_json of a document whose steps are ``_STEPS_MARK``) with the steps' array, as
    parts whose concatenation is what ``dump_json`` gives for the document with the steps in it;
    the steps' bytes are not copied, a store writes the parts in turn."""
    mark = dump_json(_STEPS_MARK)
    assert data.count(mark) == 1, "the steps' mark appears once"
    head, tail = data.split(mark)
    parts = [head, b"["]
    for k, s in enumerate(steps):
        if k:
            parts.append(b",")
        if isinstance(s, tuple):  # a journal entry's [position, step]: its parts, the step's bytes not copied
            parts.append(b"[%d," % s[0])
            s = s[1]
            parts.append(s if isinstance(s, bytes) else dump_json(s))
            parts.append(b"]")
        else:
            parts.append(s if isinstance(s, bytes) else dump_json(s))
    parts += [b"]", tail]
    return parts


class LineageJournal:
    """Where an offloaded run's lineage goes in the store: a snapshot now and then, and between
    snapshots one journal entry per pass with what it changed."""

    def __init__(self, run_uid: str):
        self.key = lineage_key(run_uid)
        self.run_uid = run_uid
        self.seq = 0                               # the last journal entry written (or read)
        self.snapshot_bytes: Optional[int] = None  # size of the last full lineage.json this process wrote
        self.journal_bytes = 0                     # journal written since that snapshot
        self.scalars: Optional[dict] = None        # the status fields (not steps) in the last entry

    def snapshot_due(self) -> bool:
        """The first write of this process, or a journal since the last snapshot larger than it."""
        return self.snapshot_bytes is None or self.journal_bytes > self.snapshot_bytes

    def write_snapshot(self, store: ArtifactStore, doc: dict, dumps: StepDumps) -> str:
        """The full lineage: ``doc`` (a lineage document without steps) with ``dumps``' steps,
        including the journal entries up to ``seq``. The same bytes as ``dump_json`` of the whole
        document, spliced from each step's JSON (settled steps are JSON already)."""
        doc["status"]["steps"] = _STEPS_MARK
        doc["journal"] = {"seq": self.seq}
        uri, size = store.put_parts(self.key, _parts_with_steps(dump_json(doc), dumps.dumps), overwrite=True)
        self.snapshot_bytes, self.journal_bytes = size, 0
        dumps.unwritten.clear()
        self.scalars = {k: v for k, v in doc["status"].items() if k != "steps"}
        return uri

    def write_entry(self, store: ArtifactStore, dumps: StepDumps, scalars: dict) -> str:
        """The steps and status fields changed since the last write, as the next journal entry
        (none when nothing but the budget accounting changed); the lineage's URI."""
        scalars = {k: v for k, v in scalars.items() if v is not None}  # as lineage_document writes them
        volatile = ("budgetUsed", "budgetRemaining")  # the engine recomputes these every pass
        last = self.scalars or {}
        if dumps.unwritten or any(scalars.get(k) != last.get(k) for k in set(scalars) | set(last) if k not in volatile + ("steps",)):
            seq = self.seq + 1
            entry = {"seq": seq, "status": scalars, "steps": _STEPS_MARK}
            parts = _parts_with_steps(dump_json(entry), [(i, dumps.dumps[i]) for i in sorted(dumps.unwritten)])
            _, size = store.put_parts(run_key(self.run_uid, f"{JOURNAL_PREFIX}{seq:08d}.json"), parts, overwrite=True)
            self.seq, self.journal_bytes = seq, self.journal_bytes + size
            self.scalars = scalars
            dumps.unwritten.clear()
        return store.uri_for(self.key)
