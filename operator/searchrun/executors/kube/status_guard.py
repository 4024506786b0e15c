"""A run's status is the operator's to write: notice when someone else wrote it, and put it back.

Anyone who may write ``searchruns/status`` can set a finished run to "Failed, forged by user" or
back to Running. The operator's own record is in the store: the lineage (``lineage.json``, a
snapshot, and the journal entries after it) is written before every status patch that depends on
it, and once more when the run finishes. So:

* ``trusted_status`` (when a run is loaded: at start-up, or to restore it) keeps the status only
  when it agrees with that record: a finished record wins over any status, and a ``lineageURI``
  that is not this run's own lineage is never followed.
* ``digest`` fingerprints a status as the API server returns it, so that a watch event can be
  compared cheaply with what the operator last wrote (a running run's last patch, a finished
  run's final status).

Pure, but for the store read in ``trusted_status``.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Mapping, Optional

from ...api import SearchRunStatus
from ...artifacts import ArtifactNotFound

FINISHED = ("Succeeded", "Failed")
# Derived from the steps, or pointers the operator sets itself: not part of the record's comparison.
_NOT_COMPARED = {"lineageURI", "lineageSummary", "observedGeneration"}


def _norm(x: Any) -> Any:
    """A status value as JSON would compare it: no nulls, 2.0 == 2 (the API server returns
    integral numbers without a fraction)."""
    if isinstance(x, dict):
        return {k: _norm(v) for k, v in x.items() if v is not None}
    if isinstance(x, list):
        return [_norm(v) for v in x]
    if isinstance(x, float) and x.is_integer():
        return int(x)
    return x


def normalize(status: Optional[Mapping]) -> dict:
    """The SearchRun status fields of ``status`` (kopf's own bookkeeping and unknown keys left out)."""
    return _norm({k: v for k, v in (status or {}).items() if k in SearchRunStatus.model_fields})


# A merge patch cannot remove a key from a nested map the operator no longer writes (a phase whose
# count fell to 0 in lineageSummary.byPhase stays): derived fields are left out of the digest.
_NOT_DIGESTED = {"lineageSummary", "observedGeneration"}


def digest(status: Optional[Mapping]) -> str:
    """A fingerprint of ``status`` as the API server holds it after the operator's patch."""
    data = {k: v for k, v in normalize(status).items() if k not in _NOT_DIGESTED}
    return hashlib.sha256(json.dumps(data, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def differences(observed: Mapping, record: Mapping, with_steps: bool = True) -> list[str]:
    """Status fields where ``observed`` (from the API server) disagrees with ``record`` (the
    status in the operator's lineage document)."""
    a, b = normalize(observed), normalize(record)
    skip = _NOT_COMPARED | (set() if with_steps else {"steps"})
    return sorted(k for k in set(a) | set(b) if k not in skip and a.get(k) != b.get(k))


def trusted_status(raw_status: Optional[Mapping], read_record, own_lineage_uri: str) -> tuple[dict, Optional[str]]:
    """The status to load a run from, and why it was not ``raw_status`` (None: it was).

    ``read_record()`` returns this run's lineage document from the store, or None when there is
    none yet; ``own_lineage_uri`` is where it lives. A run that is running is trusted but for a
    ``lineageURI`` pointing elsewhere; a finished run must agree with its final record."""
    raw = dict(raw_status or {})
    pointer = raw.get("lineageURI")
    foreign = pointer is not None and pointer != own_lineage_uri
    record = read_record()
    if record is None:
        if foreign:  # the operator writes its record before it points the status at it
            raw.pop("lineageURI", None)
            return raw, f"status.lineageURI pointed at {str(pointer)[:120]!r}, not at this run's lineage; dropped it"
        return raw, None
    rec = dict(record.get("status") or {})
    if rec.get("phase") in FINISHED:
        diff = differences(raw, rec, with_steps=not (pointer == own_lineage_uri))
        if foreign:
            diff = sorted(set(diff) | {"lineageURI"})
        if diff:
            if pointer == own_lineage_uri or (record.get("journal") or {}).get("seq"):
                # an offloaded run: loaded from the snapshot and its journal, so that the journal
                # sequence goes on where it was (a snapshot at seq 0 would replay old entries)
                rec = dict(rec, lineageURI=own_lineage_uri)
            return rec, f"status.{', status.'.join(diff[:8])} differed from the operator's record of the finished run; restored it"
        return raw, None
    if foreign:
        return dict(raw, lineageURI=own_lineage_uri), \
            f"status.lineageURI pointed at {str(pointer)[:120]!r}, not at this run's lineage; restored it"
    return raw, None


def read_record(store, key: str):
    """A function that reads the run's lineage document at ``key`` (None when there is none)."""
    def read() -> Optional[dict]:
        try:
            doc = json.loads(store.get_bytes(key))
        except ArtifactNotFound:
            return None
        return doc if isinstance(doc, dict) else None

    return read
