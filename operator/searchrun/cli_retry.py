"""``searchrun retry NAME``: ask the operator to resume a finished run on a cluster.

The request is a new token in the run's ``searchrun.dev/retry`` annotation and, with ``--budget``,
the raised budget fields, in one patch: the admission webhook judges the raise against the
cluster's caps and refuses a run that is still going. This command checks what it can first, so
that most refusals name the field and the limit before anything is sent, then waits for the
operator's answer (``status.resumes`` gains the token, or a RetryRefused event says why not).
"""

from __future__ import annotations

import sys
import time
from datetime import datetime, timezone
from typing import Optional

from .api import SearchRunSpec, SearchRunStatus
from .engine.resume import ResumeError, raised_budget, resume, resumable
from .retry import FINISHED, budget_changes, new_token, parse_budget_args

POLL_SECONDS = 0.5


def check_retry(obj: dict, changes: dict[str, str], now: Optional[datetime] = None) -> dict:
    """The budget patch (field -> value) a retry of SearchRun ``obj`` sends; raises ResumeError
    (or ValueError) naming the field and the limit when the retry cannot be asked for."""
    st = obj.get("status") or {}
    phase = st.get("phase") or "Pending"
    if phase not in FINISHED:
        raise ResumeError(f"the run is still {phase}: only a finished run (Failed, or stopped by a budget or deadline) "
                          "can be retried; wait for it to finish")
    spec = SearchRunSpec.model_validate(obj.get("spec") or {})
    status = SearchRunStatus.model_validate({k: v for k, v in st.items() if k in SearchRunStatus.model_fields})
    budget = raised_budget(spec.budget, changes)
    if status.lineageURI:  # offloaded: the status holds the frontier only, the operator judges the rest
        resumable(status)
    else:
        resume(spec, status, changes, now or datetime.now(timezone.utc))
    dumped = budget.model_dump(mode="json")
    return {k: dumped[k] for k in budget_changes(spec.budget, budget)}


def retry_command(name: str, namespace: Optional[str], budget: Optional[list[str]], kubeconfig: Optional[str],
                  wait_seconds: float) -> int:
    """0: resumed (or asked, with --wait 0); 1: the operator refused or did not answer; 2: bad input."""
    from kubernetes.client.rest import ApiException

    from .executors.kube.retry_request import RetryClient

    try:
        changes = parse_budget_args(budget)
        api = RetryClient(kubeconfig)
        ns = namespace or api.default_namespace
        obj = api.get(ns, name)
        if obj is None:
            raise ResumeError(f"searchrun {name!r} not found in namespace {ns!r}")
        patch = check_retry(obj, changes)
    except (ResumeError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except ApiException as e:
        print(f"error: the API server answered {e.status} {e.reason}", file=sys.stderr)
        return 2
    token = new_token()
    try:
        api.ask(ns, name, token, patch, obj["metadata"]["resourceVersion"])
    except ApiException as e:
        print(f"error: {_api_message(e)}", file=sys.stderr)
        return 2
    changed = ", ".join(f"{k}={v}" for k, v in patch.items()) or "no budget change"
    print(f"searchrun {ns}/{name}: retry {token} asked ({changed})")
    return _wait(api, ns, name, obj["metadata"]["uid"], token, wait_seconds)


def _wait(api, ns: str, name: str, uid: str, token: str, wait_seconds: float) -> int:
    deadline = time.monotonic() + wait_seconds
    while time.monotonic() < deadline:
        obj = api.get(ns, name) or {}
        rec = next((r for r in (obj.get("status") or {}).get("resumes") or [] if r.get("token") == token), None)
        if rec is not None:
            kept = rec.get("stepsBefore", 0) - len(rec.get("replanned") or [])
            print(f"resumed as epoch {rec.get('epoch')} (was {rec.get('fromPhase')}"
                  f"{', stopped by ' + rec['stoppedBy'] if rec.get('stoppedBy') else ''}): "
                  f"{len(rec.get('replanned') or [])} failed or skipped step(s) planned again, up to {max(0, kept)} kept")
            return 0
        refused = [m for m in api.refusals(ns, uid) if token in m]
        if refused:
            print(f"error: the operator refused the retry: {refused[-1]}", file=sys.stderr)
            return 1
        time.sleep(POLL_SECONDS)
    if wait_seconds > 0:
        print(f"error: the operator did not answer retry {token} in {wait_seconds:g}s (is it running?); "
              f"`kubectl -n {ns} describe searchrun {name}` shows its events", file=sys.stderr)
        return 1
    return 0


def _api_message(e) -> str:
    import json

    try:
        msg = json.loads(e.body).get("message") or ""
    except (TypeError, ValueError):
        msg = ""
    if e.status == 409:
        return "the run changed while the retry was asked (try again)"
    return f"{e.status} {e.reason}: {msg}" if msg else f"{e.status} {e.reason}"
