"""A retry on a cluster, as the API carries it: the annotation and its token, the epochs' run ids,
and what admission allows on an update. Pure (the CLI, the webhook and the operator share it).

``searchrun retry NAME`` sets ``metadata.annotations["searchrun.dev/retry"]`` to a new token, and
with ``--budget`` raises ``spec.budget`` in the same request. The spec is otherwise immutable; a
budget change is only admitted together with a new token, on a run that has finished, and is
judged against the cluster's caps like any budget. The operator resumes the run once per token.

A resumed run is a new *epoch* of the same SearchRun: its artifacts, lineage and Job names live
under the epoch's run id (``<uid>-r<epoch>``), so that nothing it starts meets a Job or a commit of
the attempt before (epoch 0 is the run as created, under its uid).
"""

from __future__ import annotations

import re
import secrets
from typing import Mapping, Optional

from .api import BUDGET_FIELDS, Budget

RETRY_ANNOTATION = "searchrun.dev/retry"
TOKEN_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?$")
MAX_EPOCH = 99  # resumes of one run (each is a run prefix in the store and a set of Job names)
_RUN_ID_RE = re.compile(r"^(?P<uid>.+)-r(?P<epoch>[1-9][0-9]?)$")
FINISHED = ("Succeeded", "Failed")


def new_token() -> str:
    return secrets.token_hex(8)


def epoch_run_id(uid: str, epoch: int) -> str:
    """The run id an epoch's artifacts, lineage and Job names are derived from."""
    if not 0 <= epoch <= MAX_EPOCH:
        raise ValueError(f"epoch {epoch}: a run is resumed at most {MAX_EPOCH} times")
    return uid if epoch == 0 else f"{uid}-r{epoch}"


def run_epoch(run_id: str) -> tuple[str, int]:
    """``<uid>-r<n>`` -> (uid, n); a plain uid -> (uid, 0). Kubernetes uids never end in ``-r<n>``
    (their last group is 12 hex digits)."""
    m = _RUN_ID_RE.match(run_id)
    return (m["uid"], int(m["epoch"])) if m else (run_id, 0)


def requested_token(meta: Optional[Mapping]) -> Optional[str]:
    value = ((meta or {}).get("annotations") or {}).get(RETRY_ANNOTATION)
    return value if isinstance(value, str) and value else None


def requested_by(meta: Optional[Mapping]) -> Optional[str]:
    """Who set the retry annotation, as far as the API tells: the field manager of its last write
    (managedFields), e.g. ``searchrun-retry``. Not an authenticated user name."""
    key = f"f:{RETRY_ANNOTATION}"
    for entry in reversed((meta or {}).get("managedFields") or []):
        fields = (((entry.get("fieldsV1") or {}).get("f:metadata") or {}).get("f:annotations") or {})
        if key in fields:
            return str(entry.get("manager") or "")[:253] or None
    return None


def budget_changes(old: Budget, new: Budget) -> dict[str, str]:
    """The budget fields ``new`` changes, as ``--budget`` would give them (engine.resume)."""
    return {k: str(getattr(new, k)) for k in BUDGET_FIELDS if getattr(old, k) != getattr(new, k)}


def parse_budget_args(items) -> dict[str, str]:
    """``--budget maxSteps=60 --budget maxTokens=5e5,maxDepth=3`` -> {field: value}; unknown fields
    are refused here, values by the Budget model."""
    out: dict[str, str] = {}
    for item in items or []:
        for part in filter(None, str(item).split(",")):
            name, sep, value = part.partition("=")
            name, value = name.strip(), value.strip()
            if not sep or not name or not value:
                raise ValueError(f"--budget {part!r}: expected FIELD=VALUE, e.g. maxSteps=60")
            if name not in BUDGET_FIELDS:
                raise ValueError(f"--budget {name}: not a budget field (one of {', '.join(BUDGET_FIELDS)})")
            out[name] = value
    return out


# -- admission of an update


def new_retry_token(old_meta: Optional[Mapping], new_meta: Optional[Mapping]) -> Optional[str]:
    """The token of a retry this update asks for (the annotation set to a new value), or None."""
    token = requested_token(new_meta)
    return token if token is not None and token != requested_token(old_meta) else None


def retry_refusal(token: str, old_status: Optional[Mapping]) -> Optional[str]:
    """Why admission refuses a retry with ``token`` of a run whose status is ``old_status``, or None."""
    if not TOKEN_RE.fullmatch(token):
        return (f"metadata.annotations[{RETRY_ANNOTATION}]: {token[:40]!r} is not a retry token "
                f"(1 to 32 lower-case letters, digits and '-'; `searchrun retry` makes one)")
    phase = (old_status or {}).get("phase") or "Pending"
    if phase not in FINISHED:
        return (f"the run is still {phase}: only a finished run (Failed, or stopped by a budget or deadline) "
                "can be retried; wait for it to finish")
    return None


def spec_to_compare(old_spec, new_spec, retry: bool):
    """The old spec admission holds the new one to: on a retry, the new budget is allowed."""
    if retry and isinstance(old_spec, dict) and isinstance(new_spec, dict) and "budget" in new_spec:
        return {**old_spec, "budget": new_spec["budget"]}
    return old_spec
