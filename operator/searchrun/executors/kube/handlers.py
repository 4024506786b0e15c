"""kopf registrations: one daemon per SearchRun (its reconciler), admission webhooks, cleanup.

A Job event wakes only its run's daemon; each daemon reconciles its run one pass
at a time, so two events never race to patch the same status.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Optional

import kopf
from kubernetes import client, config as kconfig
from kubernetes.client.rest import ApiException

from ... import metrics
from ...api import GROUP, PLURAL, VERSION
from ...artifacts import open_store, run_prefix
from . import resumes, status_guard
from .client import KubeClient
from .config import OperatorConfig
from .jobwatch import JobCache
from .managed_webhooks import namespace_selector, scope_managed_webhooks
from .events import EventSink
from .reconciler import STATUS_PATCH_SECONDS, RunReconciler
from .run_metrics import forget_run
from .shared import IO_THREADS
from .tls import self_signed

log = logging.getLogger("searchrun.operator")

RESULT_RETRY_SECONDS = 2.0
# Passes of different runs at once. A pass mostly waits on the API server and the store, so more
# threads than cores: asyncio's default pool (cores + 4) queued passes once ~10 runs were busy.
RECONCILE_THREADS = 16
# An AdmissionReview holds the whole object (and the old one on updates): mutating webhooks run
# before the schema's size checks, so the webhook must read what the API server accepts (3 MiB
# requests), not aiohttp's 1 MiB default, or the user sees "413" instead of the field's limit.
WEBHOOK_MAX_BODY_BYTES = 16 * 1024 * 1024


class _State:
    config: OperatorConfig = OperatorConfig()
    kube: Optional[KubeClient] = None
    cache: Optional[JobCache] = None
    wakers: dict[str, tuple[asyncio.AbstractEventLoop, asyncio.Event]] = {}
    pool: Optional[ThreadPoolExecutor] = None
    metrics_started = False
    runs: dict[str, RunReconciler] = {}     # uid -> the reconciler of a live daemon
    finished: dict[str, str] = {}           # uid -> digest of a finished run's final status
    forged: set[str] = set()                # live runs whose status someone else wrote (to verify)
    forged_seen: dict[str, str] = {}        # uid -> digest of the last status restored (restored once)
    restoring: set[str] = set()
    on_drive_end: Optional[Callable[[str], None]] = None  # retry_handlers: a retry asked while the run was driven


STATE = _State()


def configure(cfg: OperatorConfig) -> None:
    STATE.config = cfg


def _pool() -> ThreadPoolExecutor:
    if STATE.pool is None:
        STATE.pool = ThreadPoolExecutor(RECONCILE_THREADS, thread_name_prefix="reconcile")
    return STATE.pool


def _in_pool(loop: asyncio.AbstractEventLoop, fn):
    """Run ``fn`` in the reconcile pool with this task's context (as asyncio.to_thread does):
    kopf.event() finds kopf's event queue through it."""
    return loop.run_in_executor(_pool(), contextvars.copy_context().run, fn)


def _wake(uid: str) -> None:
    w = STATE.wakers.get(uid)
    if w is not None:
        loop, ev = w
        loop.call_soon_threadsafe(ev.set)


class KopfEvents(EventSink):
    def post(self, run: RunReconciler, type: str, reason: str, message: str) -> None:
        ref = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "SearchRun",
               "metadata": {"name": run.name, "namespace": run.namespace, "uid": run.uid}}
        try:
            kopf.event(ref, type=type, reason=reason, message=message[:1000])
        except Exception as e:  # events are best effort
            log.debug("event not posted: %s", e)


def _api_client() -> client.ApiClient:
    try:
        kconfig.load_incluster_config()
    except kconfig.ConfigException:
        kconfig.load_kube_config()
    conf = client.Configuration.get_default_copy()
    # as many kept-alive connections as threads that call the API (passes, their Job creates, the
    # Job watch): a full pool drops connections and the next request pays a TLS handshake
    conf.connection_pool_maxsize = RECONCILE_THREADS + IO_THREADS + 4
    return client.ApiClient(conf)


class LargeBodyWebhookServer(kopf.WebhookServer):
    """kopf's webhook server, reading request bodies up to WEBHOOK_MAX_BODY_BYTES (kopf builds its
    aiohttp app with the 1 MiB default and no way to set it: the request is cloned with the limit)."""

    @staticmethod
    async def _serve(fn, request):
        return await kopf.WebhookServer._serve(fn, request.clone(client_max_size=WEBHOOK_MAX_BODY_BYTES))


def _webhook_server(cfg: OperatorConfig):
    if cfg.webhookCertDir:
        d = Path(cfg.webhookCertDir)
        ca = d / "ca.crt"
        return LargeBodyWebhookServer(addr=cfg.webhookAddr, port=cfg.webhookPort, host=cfg.webhookHost,
                                      certfile=str(d / "tls.crt"), pkeyfile=str(d / "tls.key"),
                                      cafile=str(ca) if ca.exists() else None)
    host = cfg.webhookHost or cfg.webhookAddr
    cert, key = self_signed(host)
    return LargeBodyWebhookServer(addr=cfg.webhookAddr, port=cfg.webhookPort, host=host,
                                  certfile=cert, pkeyfile=key, cafile=cert)


@kopf.on.startup()
def startup(settings: kopf.OperatorSettings, **_) -> None:
    cfg = STATE.config
    settings.persistence.finalizer = "searchrun.dev/finalizer"
    settings.posting.level = logging.WARNING
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    if cfg.webhooks:
        settings.admission.server = _webhook_server(cfg)
        if cfg.webhookManaged:
            settings.admission.managed = cfg.webhookManagedName
            explicit = cfg.webhookNamespaceSelector.model_dump(exclude_defaults=True) if cfg.webhookNamespaceSelector else None
            scope_managed_webhooks(namespace_selector(cfg.namespaces, explicit))
    STATE.kube = KubeClient(_api_client())
    if not STATE.metrics_started:
        metrics.serve(cfg.metricsPort, cfg.metricsAddr)
        STATE.metrics_started = True
    # kopf accepts globs (``team-*``); the Job watch then covers all namespaces (its label selector still applies).
    exact = [] if any(ch in ns for ns in cfg.namespaces for ch in "*?[!") else cfg.namespaces
    STATE.cache = JobCache(STATE.kube, exact, _wake)
    STATE.cache.start()


@kopf.on.cleanup()
def cleanup(**_) -> None:
    if STATE.cache:
        STATE.cache.stop()


@kopf.daemon(GROUP, VERSION, PLURAL, id="reconcile", cancellation_timeout=10)
async def run_daemon(stopped, name, namespace, uid, logger, **_) -> None:
    if uid in STATE.runs:
        return  # a retry drives the run already (retry_handlers.retry_event)
    await drive(RunReconciler(STATE.kube, STATE.cache, STATE.config, namespace, name, uid, KopfEvents()), stopped, logger)


async def drive(r: RunReconciler, stopped, logger, start: Optional[Callable[[RunReconciler], bool]] = None) -> None:
    """A run's passes until it is done: the daemon's body, and a retry's (``retry_handlers``),
    whose ``start`` acts on the retry once the run is loaded (False: nothing to drive)."""
    cfg, uid = STATE.config, r.uid
    loop = asyncio.get_running_loop()
    wake = asyncio.Event()
    STATE.wakers[uid] = (loop, wake)
    STATE.runs[uid] = r
    backoff = 1.0
    # A finished run's daemon returns at once (after a restart, kopf starts one per object).
    try:
        while not stopped:
            try:
                if r.status is None and r.spec is None:
                    if not await _in_pool(loop, r.load):
                        return
                    if r.spec is None:
                        return  # invalid spec: the run was failed with the reason
                    if start is not None and not await _in_pool(loop, lambda: start(r)):
                        return
                wake.clear()
                if uid in STATE.forged:
                    STATE.forged.discard(uid)
                    await _in_pool(loop, lambda: _verify_live_status(r))
                d = await _in_pool(loop, r.reconcile_once)
                backoff = 1.0
            except ApiException as e:
                if e.status == 404:
                    return
                logger.warning(f"reconcile failed: {e.status} {e.reason}; retrying in {backoff:.0f}s")
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 30)
                continue
            except Exception as e:  # the store or the API is unreachable: retry, never lose the run
                logger.warning(f"reconcile failed: {type(e).__name__}: {e}; retrying in {backoff:.0f}s")
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 30)
                continue
            if d.done:
                logger.info(f"run {d.status.phase}: {d.status.message}")
                if r.last_patch is not None:  # watched from now on by status_guard_event
                    STATE.finished[uid] = status_guard.digest(r.last_patch["status"])
                return
            timeout = cfg.resyncSeconds
            if r.unreadable_since:
                # a finished step's result is not readable yet, and no further Job event will come
                timeout = min(timeout, RESULT_RETRY_SECONDS)
            if r.patch_pending:  # a status patch held back: come back for it
                timeout = min(timeout, STATUS_PATCH_SECONDS)
            if d.wake_at is not None:
                timeout = min(timeout, max(0.05, (d.wake_at - datetime.now(timezone.utc)).total_seconds()))
            waiters = [asyncio.ensure_future(wake.wait()), asyncio.ensure_future(_until(stopped))]
            try:
                await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for w in waiters:
                    w.cancel()
    finally:
        STATE.wakers.pop(uid, None)
        STATE.runs.pop(uid, None)
        if STATE.on_drive_end is not None:
            STATE.on_drive_end(uid)


async def _until(stopped) -> None:
    await stopped.wait()


def _verify_live_status(r: RunReconciler) -> None:
    """Between two passes (no patch of ours in flight): is the status still what this process last
    wrote? If not, the next pass writes it all again."""
    if r.last_patch is None:
        return
    obj = r.kube.get_run(r.namespace, r.name)
    if obj is None:
        return  # gone: the daemon ends
    observed = obj.get("status") or {}
    seen = status_guard.digest(observed)
    if seen != status_guard.digest(r.last_patch["status"]) and STATE.forged_seen.get(r.uid) != seen:
        STATE.forged_seen[r.uid] = seen  # (a difference a patch cannot undo is not restored over and over)
        diff = status_guard.differences(observed, r.last_patch["status"]) or ["lineageURI"]
        r.last_patch = None  # the next pass writes the whole status
        r.events.post(r, "Warning", "StatusRestored",
                      f"status.{', status.'.join(diff[:8])} differed from what the operator wrote; restored it")


def _restore_finished(namespace: str, name: str, uid: str) -> None:
    """Load a finished run as at start-up (its record wins over the status) and write its status."""
    try:
        r = RunReconciler(STATE.kube, STATE.cache, STATE.config, namespace, name, uid, KopfEvents())
        if not r.load() or r.spec is None:
            return
        if r.status is None or r.status.phase not in status_guard.FINISHED:
            # no final record to restore from (a run finished by an operator before the status
            # guard): resuming it would fail it
            log.warning("%s/%s: its status changed, but there is no final record to restore it from", namespace, name)
            STATE.finished.pop(uid, None)
            return
        r.reconcile_once()
        # what the API server holds now (a merge patch may leave keys it cannot remove)
        obj = r.kube.get_run(namespace, name) or {}
        STATE.finished[uid] = status_guard.digest(obj.get("status") or {})
    except Exception as e:  # the store or the API is unreachable: the next change tries again
        log.warning("%s/%s: could not restore the status: %s: %s", namespace, name, type(e).__name__, e)
    finally:
        STATE.restoring.discard(uid)


@kopf.on.event(GROUP, VERSION, PLURAL, id="status-guard")
async def status_guard_event(type, body, uid, name, namespace, logger, **_) -> None:
    """Every change of a SearchRun: one that leaves the status other than the operator wrote it
    (a user with write access to searchruns/status) is undone. Costs a digest per event."""
    if type != "MODIFIED":
        return
    status = body.get("status") or {}
    live = STATE.runs.get(uid)
    if live is not None:
        last = live.last_patch
        if last is not None and status_guard.digest(status) != status_guard.digest(last["status"]):
            STATE.forged.add(uid)  # verified by the daemon between passes (this may be our own patch's echo)
            _wake(uid)
        return
    want = STATE.finished.get(uid)
    if want is None or uid in STATE.restoring or status_guard.digest(status) == want:
        return
    STATE.restoring.add(uid)
    log.info("%s/%s: the status of a finished run changed: restoring it from the operator's record", namespace, name)
    await _in_pool(asyncio.get_running_loop(), lambda: _restore_finished(namespace, name, uid))


@kopf.on.delete(GROUP, VERSION, PLURAL, optional=True)
def on_delete(spec, uid, namespace, name, logger, **_) -> None:
    """Jobs and pods go through owner references; artifacts stay unless the run asked for cleanup."""
    forget_run(uid)
    STATE.finished.pop(uid, None)
    STATE.forged_seen.pop(uid, None)
    if STATE.cache:
        STATE.cache.forget(uid)
    if not (spec.get("artifacts") or {}).get("cleanup"):
        return
    uri = (spec.get("artifacts") or {}).get("uri") or STATE.config.artifacts
    try:
        store = open_store(uri)
        n = sum(store.delete_prefix(run_prefix(run_id)) for run_id in reversed(resumes.run_ids(store, uid)))
        logger.info(f"deleted {n} artifact(s) of {namespace}/{name}")
    except Exception as e:
        logger.warning(f"could not delete artifacts: {e}")
