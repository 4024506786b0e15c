"""A pass's PerFanout part (``spec.steps.jobGrouping: PerFanout``): group the steps a decision
started into Indexed Jobs, create them, and observe each step from its index.

Kept apart from ``reconciler`` so that a run with one Job per step (the default) does not
touch it. The pure parts are in ``fanout``."""

from __future__ import annotations

import json
import logging
from dataclasses import replace

from kubernetes.client.rest import ApiException

from ... import metrics
from ...engine import Decision, Observation
from .. import step_context
from .fanout import (GROUP_PREFIX, build_group_job, index_states, members, observe_index, plan_groups, pod_failures,
                     split_context, steps_key)
from .jobs import job_name, pod_error
from .queue_metrics import index_key
from .shared import io_pool

log = logging.getLogger("searchrun.reconciler")


def group_starts(r, d: Decision, need: set) -> dict:
    """Under PerFanout, the group Jobs of ``d``'s steps in ``need`` (those that need a Job: name →
    StartSteps); the grouped steps' ``job`` is renamed in the decision and its status, so the
    lineage names the Job before it exists."""
    starts = [a for a in d.start if a.step_id in need]
    if r.spec is None or r.spec.steps.jobGrouping != "PerFanout" or len(starts) < 2:
        return {}
    groups = plan_groups(starts, r.run_id)  # a resumed run's epoch is in the names (retry)
    want = {a.step_id: a for g in groups.values() for a in g}
    if not want:
        return {}
    d.start = [want.get(a.step_id, a) for a in d.start]
    left = {sid: a.job for sid, a in want.items()}
    for s in reversed(d.status.steps):  # launched steps are mostly the newest
        if s.id in left:
            s.job = left.pop(s.id)
            if not left:
                break
    return groups


def create_group_job(r, name: str, actions: list) -> None:
    parts = [split_context(step_context(r.spec, r.run_id, r.name, r.store_uri, a).to_json()) for a in actions]
    # the steps first, then the Job that names them (the same document again after a crash)
    uri = r.store.put_json(steps_key(r.run_id, name), {"job": name, "steps": [p[1] for p in parts]}, overwrite=True)
    body = build_group_job(name, actions, r.name, r.namespace, r.uid, r.spec, parts[0][0], uri, r.config)
    try:
        r.cache.put(r.kube.create_job(r.namespace, body))
        metrics.STEPS_CREATED.labels(step_type=actions[0].step_type).inc(len(actions))
        keys = {(a.step_id, a.attempt) for a in actions}
        if keys & r.jobs_created:  # it existed, and was gone (deleted by hand?)
            r.jobs_recreated.extend(replace(a, job=name) for a in actions)
        r.jobs_created |= keys
    except ApiException as e:
        if e.status == 409:
            return  # AlreadyExists: created before a crash, or by the previous pass
        if 400 <= e.status < 500:
            why = f"the API refused Job {name}: {e.status} {e.reason}"
            try:
                why += f": {json.loads(e.body).get('message', '')}"
            except (TypeError, ValueError):
                pass
            for a in actions:
                r.create_errors[a.step_id] = why[:500]
            log.warning("%s/%s: %s", r.namespace, r.name, why)
            return
        raise


def group_observations(r, running: dict, seen) -> tuple[dict[str, Observation], dict[str, str]]:
    """Observations of the running steps whose Job is a group Job (those not in ``seen``), and
    each such step's ``index_key`` (its Job and index: how the hand-off clock knows it)."""
    get = getattr(r.cache, "job", None)
    prefix = job_name(r.run_id, GROUP_PREFIX)
    by_job: dict[str, list[str]] = {}
    for sid, s in running.items():
        if sid not in seen and s.job and s.job.startswith(prefix):
            by_job.setdefault(s.job, []).append(sid)
    obs: dict[str, Observation] = {}
    keys: dict[str, str] = {}
    if get is None or not by_job:
        return obs, keys
    for name, sids in by_job.items():
        job = get(r.uid, name)
        if job is None:
            continue  # not there (yet, or deleted): the engine starts the step again, under this name
        mem, states = members(job), index_states(job)
        index_of = {sid: i for i, (sid, _) in enumerate(mem)}
        ended = [sid for sid in sids if sid in index_of and states[index_of[sid]] != "running"]
        fails: dict = {}
        # The Job controller can show an index failed before it counts the pod in status.failed
        # (the pod's finalizer is removed later): either one means there are failed pods to read.
        if ended and (int((job.get("status") or {}).get("failed") or 0)
                      or any(states[index_of[sid]] == "failed" for sid in ended)):
            try:  # which index's pods failed, and why (one LIST, in a pass where steps of the Job finished)
                fails = pod_failures(r.kube.job_pods(r.namespace, name))
            except ApiException:
                pass
        unread = [(sid, mem[index_of[sid]][1]) for sid in ended
                  if states[index_of[sid]] == "succeeded" and sid not in r.results]
        if len(unread) > 1:
            list(io_pool().map(lambda x: r._result(*x), unread))
        for sid in sids:
            i = index_of.get(sid)
            if i is None:
                obs[sid] = Observation(sid, running[sid].attempts, "failed", final=True,
                                       message=f"Job {name} exists but does not run this step")
                continue
            keys[sid] = index_key(name, i)
            attempt, state, failed = mem[i][1], states[i], fails.get(i, [])
            msg = pod_error(failed[-1]) if failed else ""
            result = r._result(sid, attempt) if state == "succeeded" else None
            if state == "succeeded" and result is None:
                obs[sid] = r.unreadable(sid, running[sid].attempts)
                continue
            r.unreadable_since.pop(sid, None)
            obs[sid] = observe_index(job, state, sid, attempt, result, len(failed), msg)
    return obs, keys
