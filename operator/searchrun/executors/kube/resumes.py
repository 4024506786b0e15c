"""A retry on the cluster: the operator resumes a finished run once per retry token.

The store keeps the record of the tokens handled (``runs/<uid>/retries.json``), written *before*
the operator acts on one: a token in it is never acted on twice (idempotent), and a restarted
operator reads it to know the run's epoch. A resume plans the run again as a new epoch (its run id
``<uid>-r<epoch>``: artifacts, lineage, Job names) from the previous epoch's lineage, with the
rules of a local resume (``engine.resume``): steps that succeeded are answered from their commits
(``executors.resume.Replay``: no Job), the Failed, Skipped and budget-stopped ones run again.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timezone
from typing import Optional

from ...api import SearchRunSpec, SearchRunStatus
from ...artifacts import ArtifactNotFound, dump_json, run_key
from ...engine.resume import ResumeError, resume
from ...retry import FINISHED, MAX_EPOCH, budget_changes, epoch_run_id
from ..base import Recall, lineage_key
from ..resume import Replay
from .lineage_store import restore_lineage

log = logging.getLogger("searchrun.resume")

LOG_NAME = "retries.json"
RESUMED, REFUSED = "Resumed", "Refused"


def read_log(store, uid: str) -> list[dict]:
    try:
        doc = json.loads(store.get_bytes(run_key(uid, LOG_NAME)))
    except ArtifactNotFound:
        return []
    return list(doc.get("retries") or []) if isinstance(doc, dict) else []


def write_log(store, uid: str, entries: list[dict]) -> None:
    store.put_bytes(run_key(uid, LOG_NAME), dump_json({"retries": entries}), overwrite=True)


def accepted(entries: list[dict]) -> Optional[dict]:
    """The last retry that resumed the run (its epoch is the run's)."""
    return next((e for e in reversed(entries) if e.get("outcome") == RESUMED), None)


def run_ids(store, uid: str) -> list[str]:
    """Every epoch's run id (for the artifacts' cleanup)."""
    return [uid] + [epoch_run_id(uid, int(e["epoch"])) for e in read_log(store, uid) if e.get("outcome") == RESUMED]


def previous_state(store, run_id: str, status: Optional[SearchRunStatus] = None) -> tuple[SearchRunSpec, SearchRunStatus]:
    """The spec and full lineage an epoch ended with (its final lineage.json and journal);
    ``status``: that lineage, loaded already (only the spec is read then)."""
    key = lineage_key(run_id)
    try:
        doc = json.loads(store.get_bytes(key))
    except ArtifactNotFound:
        raise ResumeError(f"the run's lineage ({key}) is not in the store: it cannot be resumed") from None
    if "spec" not in doc:
        raise ResumeError(f"the lineage {key} has no spec (written by an older searchrun): it cannot be resumed")
    if status is not None:
        return SearchRunSpec.model_validate(doc["spec"]), status
    raw = dict(doc.get("status") or {}, lineageURI=store.uri_for(key))
    # lineage.json and its journal entries lie side by side under the epoch's run prefix
    status, _, _ = restore_lineage(raw, lambda uri: store.get_bytes(run_key(run_id, uri.rsplit("/", 1)[-1])))
    return SearchRunSpec.model_validate(doc["spec"]), status.model_copy(update={"lineageURI": None})


def _plan(r, entry: dict, now: datetime, before: Optional[SearchRunStatus] = None) -> tuple[SearchRunStatus, Replay]:
    """The fresh status of ``entry``'s epoch and the kept steps' source (raises ResumeError)."""
    spec_before, before = previous_state(r.store, entry["fromRun"], before)
    changes = budget_changes(spec_before.budget, r.spec.budget)
    _, fresh = resume(spec_before, before, changes, now, by=entry.get("by"), from_run=entry["fromRun"])
    rec = fresh.resumes[-1]
    rec.token, rec.epoch = entry["token"], entry["epoch"]
    return fresh, Replay(r.store, entry["fromRun"], before)


def epoch_of(r) -> Optional[dict]:
    """At load, before the status is trusted: the run's epoch from the store's record (whose
    lineage the status is checked against)."""
    entry = accepted(read_log(r.store, r.uid))
    if entry is not None:
        r.use_epoch(int(entry["epoch"]))
    return entry


def resume_loaded(r, entry: Optional[dict], now: Optional[datetime] = None) -> None:
    """After load: an epoch whose resume was recorded but never reached the status (the operator
    died in between) is planned again; a resumed epoch in flight gets its kept steps' source."""
    if entry is None or r.status is None:
        return
    if not any(x.token == entry["token"] for x in r.status.resumes):
        try:
            fresh, replay = _plan(r, entry, now or datetime.now(timezone.utc))
        except ResumeError as e:
            log.warning("%s/%s: the recorded resume %s cannot be planned: %s", r.namespace, r.name, entry["token"], e)
            return
        r.enter_epoch(int(entry["epoch"]), fresh, Recall([replay]))
        _post_resumed(r, fresh)
    elif r.status.phase not in FINISHED:
        _, before = previous_state(r.store, entry["fromRun"])
        r.recall = Recall([Replay(r.store, entry["fromRun"], before)])


def request(r, token: str, by: Optional[str], now: Optional[datetime] = None) -> str:
    """Act on retry ``token`` of the loaded run ``r``: Resumed (r is in the new epoch), Refused
    (a Warning event says why), or the outcome it had when it was handled before."""
    entries = read_log(r.store, r.uid)
    done = next((e for e in entries if e.get("token") == token), None)
    if done is not None:
        return done.get("outcome", REFUSED)
    now = now or datetime.now(timezone.utc)
    entry = {"token": token, "epoch": r.epoch + 1, "fromRun": r.run_id, "at": now.strftime("%Y-%m-%dT%H:%M:%SZ"), "by": by}
    why = None
    if r.status is None or r.status.phase not in FINISHED:
        why = f"the run is still {getattr(r.status, 'phase', 'Pending')}: only a finished run can be retried"
    elif r.epoch >= MAX_EPOCH:
        why = f"the run was resumed {MAX_EPOCH} times: create a new SearchRun"
    if why is None:
        try:
            fresh, replay = _plan(r, entry, now, before=r.status)  # the run as loaded: its epoch's full lineage
        except ResumeError as e:
            why = str(e)
    if why is not None:
        return refuse(r, token, why, entries=entries, entry=entry)
    write_log(r.store, r.uid, entries + [dict(entry, outcome=RESUMED)])  # before acting: a restart knows the epoch
    r.enter_epoch(entry["epoch"], fresh, Recall([replay]))
    _post_resumed(r, fresh)
    return RESUMED


def refuse(r, token: str, why: str, entries: Optional[list[dict]] = None, entry: Optional[dict] = None) -> str:
    """Record retry ``token`` as refused (once) and say why in a Warning event."""
    entries = read_log(r.store, r.uid) if entries is None else entries
    if any(e.get("token") == token for e in entries):
        return REFUSED
    entry = entry or {"token": token, "epoch": r.epoch + 1, "fromRun": r.run_id,
                      "at": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}
    write_log(r.store, r.uid, entries + [dict(entry, outcome=REFUSED, message=why[:500])])
    r.events.post(r, "Warning", "RetryRefused", f"retry {token}: {why}")
    return REFUSED


def _post_resumed(r, fresh: SearchRunStatus) -> None:
    rec = fresh.resumes[-1]
    changed = ", ".join(f"{k} {a:g} -> {b:g}" for k, (a, b) in rec.budget.items()) or "no budget change"
    who = f" by {rec.by}" if rec.by else ""
    r.events.post(r, "Normal", "RunResumed",
                  f"retry {rec.token}{who}: epoch {rec.epoch} from {rec.fromPhase}"
                  f"{', stopped by ' + rec.stoppedBy if rec.stoppedBy else ''}; {changed}; "
                  f"{len(rec.replanned)} failed or skipped step(s) planned again, the steps that succeeded are kept")
