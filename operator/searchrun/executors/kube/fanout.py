"""PerFanout: the steps one decision starts together run as one Indexed Job (pure parts).

A fan-out of 100 traversals costs Kubernetes' Job controller one Job instead of 100, and
its client rate limit (kube-controller-manager ``--kube-api-qps``) is what bounds a wide run
on a stock cluster. Each step is one index: one pod, its own retries
(``backoffLimitPerIndex``), its own outcome (``status.completedIndexes`` /
``failedIndexes``). The Job's name and its index → step map (an annotation) are fixed
before it is created, and the lineage names the Job before it exists, so a crash between
the two re-creates the same Job (AlreadyExists), never a second one.

Needs Kubernetes >= 1.29 (``backoffLimitPerIndex`` beta, on by default; GA in 1.33).
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Iterable, Mapping, Optional

from ...engine import Observation, StartStep
from ...engine.types import path_key
from ...artifacts import run_key
from ...steps import EXIT_PERMANENT, STEP_ENV
from ...steps.context import STEPS_URI_ENV
from ..base import CommittedResult, committed_observation
from .jobs import A_ATTEMPT, L_STEP, build_job, job_name, job_state

A_STEPS = "searchrun.dev/steps"          # the group Job's steps by index: "t0:1,t1:1" (step id:attempt)
L_GROUPING = "searchrun.dev/job-grouping"
INDEX_ANNOTATION = "batch.kubernetes.io/job-completion-index"
MAX_GROUP = 100  # steps per Indexed Job: bounds its annotation and its stored steps
GROUP_PREFIX = "g-"  # a group Job's name: job_name(uid, "g-" + its first step); no step id starts so


def plan_groups(starts: Iterable[StartStep], run_uid: str) -> dict[str, list[StartStep]]:
    """The group Jobs to create: name → its steps in index order (each ``job`` renamed).

    Steps the engine just launched carry their per-step Job name; those of one type, timeout
    and retries (one pod template) form a group, cut at MAX_GROUP. A step alone keeps its own
    Job. Steps restarted after a crash already carry their group's name (the lineage holds
    it) and are grouped by it, so the group is created again under the same name."""
    fresh: dict[tuple, list[StartStep]] = {}
    groups: dict[str, list[StartStep]] = {}
    for a in starts:
        if a.job == job_name(run_uid, a.step_id):
            fresh.setdefault((a.step_type, a.timeout_seconds, a.retries), []).append(a)
        elif a.job.startswith(job_name(run_uid, GROUP_PREFIX)):
            groups.setdefault(a.job, []).append(a)
    for members in fresh.values():
        members.sort(key=lambda a: path_key(a.step_id))
        for i in range(0, len(members), MAX_GROUP):
            chunk = members[i:i + MAX_GROUP]
            if len(chunk) < 2:
                continue
            lead = chunk[0]  # a later attempt (a retry the engine decided) never meets its first group's Job
            name = job_name(run_uid, GROUP_PREFIX + lead.step_id + (f"-a{lead.attempt}" if lead.attempt > 1 else ""))
            groups[name] = [replace(a, job=name) for a in chunk]
    for name in groups:
        groups[name].sort(key=lambda a: path_key(a.step_id))
    return groups


def steps_key(run_uid: str, name: str) -> str:
    """Where a group Job's steps are stored (``runs/<uid>/g-<first step>.json``), written before the Job."""
    return run_key(run_uid, name[len(job_name(run_uid, "")):] + ".json")


def build_group_job(name: str, actions: list[StartStep], run_name: str, namespace: str, run_uid: str, spec,
                    run_json: str, steps_uri: str, config) -> dict:
    """One Indexed Job for ``actions`` (same type, timeout, retries): the pod of index i runs
    step i. ``run_json``: the context without its step (``$SEARCHRUN_STEP``); ``steps_uri``:
    the stored document of the steps by index (``$SEARCHRUN_STEPS_URI``), so that the Job and
    each of its pods stay small however many steps it runs."""
    first = actions[0]
    body = build_job(first, run_name, namespace, run_uid, spec, run_json, config)
    n = len(actions)
    meta = body["metadata"]
    meta["name"] = name
    for labels in (meta["labels"], body["spec"]["template"]["metadata"]["labels"]):
        labels.pop(L_STEP, None)
        labels[L_GROUPING] = "PerFanout"
    meta["annotations"].pop(A_ATTEMPT, None)
    meta["annotations"][A_STEPS] = ",".join(f"{a.step_id}:{a.attempt}" for a in actions)
    env = body["spec"]["template"]["spec"]["containers"][0]["env"]
    at = next(i for i, e in enumerate(env) if e["name"] == STEP_ENV) + 1
    env.insert(at, {"name": STEPS_URI_ENV, "value": steps_uri})
    js = body["spec"]
    del js["backoffLimit"]  # with backoffLimitPerIndex it would cap the failures of all indexes together
    js.update({
        "completionMode": "Indexed", "completions": n, "parallelism": n,
        "backoffLimitPerIndex": first.retries,
        # one step failing for good never stops its siblings: they are independent steps, and the
        # engine decides what a failed step means for the run (as with one Job per step)
        "maxFailedIndexes": n,
        # a step that failed for good (exit 3) fails its index at once, without its retries
        "podFailurePolicy": {"rules": [{"action": "FailIndex", "onExitCodes": {
            "containerName": "step", "operator": "In", "values": [EXIT_PERMANENT]}}]},
    })
    return body


def split_context(context_json: str) -> tuple[str, dict]:
    """A step's context JSON → (the run part, the step): a group Job holds the run once."""
    data = json.loads(context_json)
    step = data.pop("step")
    return json.dumps(data, separators=(",", ":")), step


def members(job: Mapping) -> list[tuple[str, int]]:
    """A group Job's (step id, attempt) by index; [] for a Job of one step."""
    raw = ((job.get("metadata") or {}).get("annotations") or {}).get(A_STEPS) or ""
    out = []
    for item in raw.split(","):
        sid, _, attempt = item.rpartition(":")
        if sid:
            out.append((sid, int(attempt or 1)))
    return out


def parse_indexes(text: Optional[str]) -> set[int]:
    """Kubernetes' compressed index list ("1,3-5,7") as a set."""
    out: set[int] = set()
    for part in (text or "").split(","):
        part = part.strip()
        if not part:
            continue
        lo, _, hi = part.partition("-")
        out.update(range(int(lo), int(hi or lo) + 1))
    return out


def index_states(job: Mapping) -> list[str]:
    """Each index's state: succeeded, failed or running. Once the whole Job has failed (its
    deadline), an index that neither completed nor failed is failed too."""
    status = job.get("status") or {}
    done, failed = parse_indexes(status.get("completedIndexes")), parse_indexes(status.get("failedIndexes"))
    over = job_state(job) != "running"
    out = []
    for i in range(len(members(job))):
        if i in done:
            out.append("succeeded")
        elif i in failed or over:
            out.append("failed")
        else:
            out.append("running")
    return out


def pod_failures(pods: list[dict]) -> dict[int, list[dict]]:
    """A group Job's failed pods by index, oldest first."""
    out: dict[int, list[dict]] = {}
    for p in sorted(pods, key=lambda p: p["metadata"].get("creationTimestamp") or ""):
        if (p.get("status") or {}).get("phase") != "Failed":
            continue
        meta = p.get("metadata") or {}
        idx = (meta.get("annotations") or {}).get(INDEX_ANNOTATION) or (meta.get("labels") or {}).get(INDEX_ANNOTATION)
        if idx is not None and str(idx).isdigit():
            out.setdefault(int(idx), []).append(p)
    return out


def observe_index(job: Mapping, state: str, step_id: str, attempt: int, result: CommittedResult = None,
                  failed_pods: int = 0, pod_message: str = "") -> Observation:
    """One index of a group Job as the engine sees a step (as ``jobs.observe_job`` for a Job)."""
    if state == "succeeded":
        return committed_observation(step_id, attempt, result, final=True, attempts=failed_pods + 1,
                                     message=pod_message if failed_pods else "")
    if state == "failed":
        status = job.get("status") or {}
        if _index_failed(job, step_id):
            why = "the step's pod failed" + (f" {failed_pods} time(s)" if failed_pods else "")
        else:
            cond = next((c for c in status.get("conditions") or [] if c.get("type") in ("Failed", "FailureTarget")
                         and c.get("status") == "True"), {})
            why = f"{cond.get('reason', 'Failed')}: {cond.get('message', '')}".strip(": ")
        if pod_message:
            why += f"; last error: {pod_message}"
        return Observation(step_id, attempt, "failed", message=why, final=True, attempts=max(1, failed_pods))
    return Observation(step_id, attempt, "running", attempts=failed_pods + 1)


def _index_failed(job: Mapping, step_id: str) -> bool:
    idx = [sid for sid, _ in members(job)].index(step_id)
    return idx in parse_indexes((job.get("status") or {}).get("failedIndexes"))
