"""kopf registration of retries: a new token in ``searchrun.dev/retry`` on a finished run starts its
resume (``resumes.request``) and drives it like the daemon does.

kopf does not start a daemon again once it has returned, and a finished run's daemon has; so a
retry is driven by a task of its own (``handlers.drive``), one per run at a time (``STATE.runs``).
A token seen on a finished run that is still driven (its daemon ending) is looked at again when
that ends; a token on a run still going is refused. After a restart, a run in a resumed epoch is an
unfinished run: its daemon drives it.
"""

from __future__ import annotations

import asyncio
import logging

import kopf

from ...api import GROUP, PLURAL, VERSION
from ...retry import FINISHED, RETRY_ANNOTATION, requested_by, requested_token
from . import resumes
from .handlers import STATE, KopfEvents, _in_pool, drive
from .reconciler import RunReconciler

log = logging.getLogger("searchrun.operator")

_handled: dict[str, str] = {}              # uid -> the last token this process acted on
_pending: dict[str, tuple[str, str]] = {}  # uid -> (namespace, name): a token seen while it was driven
_tasks: set[asyncio.Task] = set()


class _NotStopped:
    """The ``stopped`` flag of a retry's drive: kopf does not own the task (it ends when the run does)."""

    def __bool__(self) -> bool:
        return False

    async def wait(self) -> None:
        await asyncio.Event().wait()


def _answered(body) -> bool:
    token = requested_token(body.get("metadata"))
    resumed = {x.get("token") for x in (body.get("status") or {}).get("resumes") or [] if isinstance(x, dict)}
    return token is None or token == _handled.get(body["metadata"]["uid"]) or token in resumed


@kopf.on.event(GROUP, VERSION, PLURAL, id="retry", annotations={RETRY_ANNOTATION: kopf.PRESENT})
async def retry_event(type, body, uid, name, namespace, **_) -> None:
    if type == "DELETED" or _answered(body):
        return
    phase = (body.get("status") or {}).get("phase") or "Pending"
    live = STATE.runs.get(uid)
    if phase not in FINISHED:
        # a token on a run still going: admission refuses that, so this is one written at creation or on a
        # cluster without webhooks. Refused, never acted on when the run ends (its daemon's events come back here).
        if live is not None and live.store is not None:
            token = requested_token(body.get("metadata"))
            why = f"the run was still {phase} when the retry was asked: only a finished run can be retried"
            await _in_pool(asyncio.get_running_loop(), lambda: resumes.refuse(live, token, why))  # (kopf's event context)
            _handled[uid] = token
        return
    if live is not None:
        _pending[uid] = (namespace, name)  # finished, its daemon ending: looked at once it has
        return
    _start(namespace, name, uid)


def _start(namespace: str, name: str, uid: str) -> None:
    r = RunReconciler(STATE.kube, STATE.cache, STATE.config, namespace, name, uid, KopfEvents())
    STATE.runs[uid] = r  # at once, before any await: one reconciler per run
    STATE.finished.pop(uid, None)  # its status will change: the resume writes it, not a forger
    task = asyncio.get_running_loop().create_task(drive(r, _NotStopped(), log, start=_act), name=f"retry {namespace}/{name}")
    _tasks.add(task)
    task.add_done_callback(_tasks.discard)


def _act(r: RunReconciler) -> bool:
    """Once loaded: act on the token the run carries now. True: the resumed run is to be driven."""
    token = requested_token(r.metadata)
    if token is None:
        return False
    outcome = resumes.request(r, token, requested_by(r.metadata))
    _handled[r.uid] = token
    return outcome == resumes.RESUMED and r.status is not None and r.status.phase not in ("Succeeded", "Failed")


def _drive_ended(uid: str) -> None:
    where = _pending.pop(uid, None)
    if where is not None:
        task = asyncio.get_running_loop().create_task(_look_again(uid, *where))
        _tasks.add(task)
        task.add_done_callback(_tasks.discard)


async def _look_again(uid: str, namespace: str, name: str) -> None:
    try:
        obj = await asyncio.get_running_loop().run_in_executor(None, STATE.kube.get_run, namespace, name)
    except Exception as e:  # the next change of the run comes back here
        log.warning("%s/%s: could not look at its retry annotation: %s", namespace, name, e)
        return
    if obj is None or obj["metadata"]["uid"] != uid or uid in STATE.runs or _answered(obj):
        return
    _start(namespace, name, uid)


STATE.on_drive_end = _drive_ended
