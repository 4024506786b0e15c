"""PerFanout (``spec.steps.jobGrouping: PerFanout``) on the real cluster: the steps one decision
starts run as one Indexed Job (real pods on the kubelet, real Job controller), each index its
own step with its own retries, and a SIGKILLed operator still makes exactly one Job per group."""

from __future__ import annotations

import os
import random
import re
import time

import pytest

from searchrun.executors.kube.fanout import INDEX_ANNOTATION, members
from support.fake_openai import FakeOpenAI, traverse_facts
from support.reliability import JobRecorder, figure
from support.runs import EXAMPLES, apply, assert_budgets_hold, manifest, run_jobs, wait_finished

from test_faults import assert_results_kept, wait_step  # noqa: E402  (tests/reliability is on sys.path)

pytestmark = [pytest.mark.cluster, pytest.mark.s3]


def perfanout(name: str, **overrides) -> dict:
    doc = manifest(EXAMPLES / "searchrun.yaml", steps__jobGrouping="PerFanout", **overrides)
    doc["metadata"]["name"] = name
    return doc


def assert_one_job_per_group(cluster, ns: str, run: dict) -> list[dict]:
    """Every step that ran is in exactly one Job (a group Job's annotation lists its steps by
    index; a Job of one step is labelled with it), and that is the Job its lineage entry names."""
    jobs = run_jobs(cluster, ns, run["metadata"]["uid"])
    in_job: dict[str, str] = {}
    for j in jobs:
        name = j["metadata"]["name"]
        steps = [sid for sid, _ in members(j)] or [j["metadata"]["labels"]["searchrun.dev/step-id"]]
        for sid in steps:
            assert sid not in in_job, f"step {sid} is in two Jobs: {in_job[sid]} and {name}"
            in_job[sid] = name
        if members(j):
            assert j["spec"]["completionMode"] == "Indexed" and j["spec"]["completions"] == len(steps)
            assert j["spec"]["podFailurePolicy"]["rules"][0]["action"] == "FailIndex"
    ran = [s for s in run["status"]["steps"] if s["phase"] != "Skipped"]
    assert len({s["id"] for s in run["status"]["steps"]}) == len(run["status"]["steps"]), "one lineage entry per step"
    assert {s["id"]: s["job"] for s in ran} == in_job
    return jobs


def index_exit_codes(pods: list[dict]) -> dict[int, list]:
    """A group Job's pods' exit codes (the step container's) by index, oldest first."""
    out: dict[int, list] = {}
    for p in sorted(pods, key=lambda p: p["metadata"]["creationTimestamp"]):
        code = next((((c.get("state") or {}).get("terminated") or {}).get("exitCode")
                     for c in (p.get("status") or {}).get("containerStatuses") or [] if c.get("name") == "step"), None)
        out.setdefault(int(p["metadata"]["annotations"][INDEX_ANNOTATION]), []).append(code)
    return out


def pod_story(pods: list[dict]) -> list[str]:
    """Each pod of a Job: its index, phase, reason and exit code (for an assertion's message)."""
    out = []
    for p in pods:
        st = p.get("status") or {}
        term = [((c.get("state") or {}).get("terminated") or {}) for c in st.get("containerStatuses") or []]
        out.append(f"index {p['metadata']['annotations'].get(INDEX_ANNOTATION)}: {st.get('phase')} {st.get('reason') or ''} "
                   f"exit {[t.get('exitCode') for t in term]} {[(t.get('reason'), (t.get('message') or '')[:160]) for t in term]}")
    return sorted(out)


def test_a_perfanout_run_succeeds_with_indexed_jobs(cluster, operator, run_ns, rel_s3):
    apply(cluster, run_ns, perfanout("fanout-ok"))
    run = wait_finished(cluster, run_ns, "fanout-ok", operator)
    assert run["status"]["phase"] == "Succeeded", run["status"].get("message")
    jobs = assert_one_job_per_group(cluster, run_ns, run)
    assert_budgets_hold(run)
    assert_results_kept(rel_s3, run)  # each index ran its own step: every step's result is in the store
    groups = [j for j in jobs if members(j)]
    assert groups, "the seeds' fan-out ran as one Indexed Job"
    trav = [s for s in run["status"]["steps"] if s["type"] == "traverse_node"]
    assert len(jobs) < len(run["status"]["steps"]) and all(s["phase"] == "Succeeded" for s in trav)
    figure("perfanout: steps / Jobs", f"{len(run['status']['steps'])} / {len(jobs)}")


@pytest.fixture
def fake_llm(cluster):
    server = FakeOpenAI(cluster.host_ip or "127.0.0.1")
    yield server
    server.close()


def test_a_failing_index_is_retried_then_fails_its_step_only(cluster, operator, run_ns, fake_llm):
    """Three seeds in one Indexed Job (openai agent, a fake endpoint): the traversal of the second
    is refused (HTTP 400: the step fails, exit 1), so its index is retried once (retries 1) and
    then fails; the third gets replies without content (the agent gives up: permanent, exit 3),
    so its index fails at once (FailIndex); the first succeeds, and the run goes on with it. Each
    failed step's message is its last pod's error."""
    seeds: list[str] = []

    def script(prompt: str):
        if "Classify this search query" in prompt:
            return {"intent": "deep", "reason": "multi-hop"}
        if "best places to start searching" in prompt:
            ids = re.findall(r"^- ([^:\s]+):", prompt, flags=re.M)[:3]
            seeds[:] = ids
            return {"ids": ids, "reason": "the first three"}
        return None

    def fail(prompt: str):
        doc = traverse_facts(prompt)["doc"] if len(seeds) == 3 else None
        if doc is None:
            return None
        return 400 if doc == seeds[1] else {"choices": []} if doc == seeds[2] else None

    fake_llm.model = script
    fake_llm.fail_when = fail
    doc = perfanout("fanout-fail", steps__retries=1, budget__maxDepth=1,
                    agent={"type": "openai", "baseURL": fake_llm.base_url, "model": "fake-model", "requestTimeoutSeconds": 20})
    apply(cluster, run_ns, doc)
    run = wait_finished(cluster, run_ns, "fanout-fail", operator, timeout=420)
    steps = {s["id"]: s for s in run["status"]["steps"]}
    by_doc = {s.get("doc"): s for s in steps.values() if s["type"] == "traverse_node"}
    assert len(seeds) == 3 and set(seeds) <= set(by_doc), (seeds, list(by_doc))
    ok, refused, prose = (by_doc[d] for d in seeds)
    assert ok["job"] == refused["job"] == prose["job"]
    job = cluster.kubectl_json("-n", run_ns, "get", "job", ok["job"])
    order = [sid for sid, _ in members(job)]
    pods = cluster.kubectl_json("-n", run_ns, "get", "pods", "-l", f"job-name={ok['job']}")["items"]
    exits = index_exit_codes(pods)  # index -> its pods' exit codes, oldest first
    story = pod_story(pods)  # for the messages below: what each index's pods did
    assert ok["phase"] == "Succeeded" and exits[order.index(ok["id"])][-1] == 0, (ok, story)
    # exit 1 (HTTP 400): the index is retried once (retries 1), then fails; its pod's reason is kept
    assert refused["phase"] == "Failed" and refused["attempts"] == 2, (refused, story)
    assert exits[order.index(refused["id"])] == [1, 1], story
    assert "HTTP 400" in refused["message"], (refused["message"], story)
    # exit 3 (no JSON object in the answers): FailIndex, no retry after it. An earlier pod of the
    # index may have failed transiently (on a loaded machine one could not reach the endpoint
    # within its timeout): that one is retried, as it should be, and counted.
    prose_exits = exits[order.index(prose["id"])]
    assert prose_exits[-1] == 3 and 3 not in prose_exits[:-1], (prose_exits, story)
    assert prose["phase"] == "Failed" and prose["attempts"] == len(prose_exits), (prose, story)
    assert "no JSON object" in prose["message"], (prose["message"], story)
    assert set(exits) == {0, 1, 2}, story
    assert job["status"].get("failedIndexes"), job["status"]
    assert run["status"]["phase"] == "Succeeded", run["status"].get("message")  # the run goes on with what succeeded
    assert_one_job_per_group(cluster, run_ns, run)


def test_operator_sigkilled_mid_fanout_makes_exactly_one_job_per_group(cluster, operator, run_ns, rel_s3):
    """Four PerFanout runs; the operator is SIGKILLed at random moments while they fan out and
    restarted. Every run finishes, no Job name was ever created twice (one uid per name, seen by
    a watch), and every step ran in exactly one Job, the one its lineage entry names."""
    seed = int(os.environ.get("SEARCHRUN_FAULT_SEED", random.randrange(1 << 30)))
    rng = random.Random(seed)
    figure("perfanout sigkill: random seed (SEARCHRUN_FAULT_SEED)", seed)
    names = [f"fan-{i}" for i in range(4)]
    kills = 0
    with JobRecorder(cluster, run_ns) as rec:
        for n in names:
            apply(cluster, run_ns, perfanout(n, budget__maxParallel=6))
        wait_step(cluster, run_ns, names[0], lambda s: s["type"] == "traverse_node")
        while kills < 5:
            time.sleep(rng.uniform(0.2, 4.0))
            phases = [(r.get("status") or {}).get("phase") for r in cluster.kubectl_json("-n", run_ns, "get", "sr")["items"]]
            if all(p in ("Succeeded", "Failed") for p in phases):
                break
            operator.kill()
            kills += 1
            time.sleep(rng.uniform(0.0, 3.0))  # pods go on while nobody watches
            operator.start()
        runs = {n: wait_finished(cluster, run_ns, n, operator, timeout=420) for n in names}
        time.sleep(2)  # let the recorder see the last events
    figure("perfanout sigkill: kills", kills)
    assert kills, "the operator was never killed"
    assert not rec.duplicates(), f"a Job was created twice: {rec.duplicates()}"
    total = 0
    for n, run in runs.items():
        assert run["status"]["phase"] == "Succeeded", (n, run["status"].get("message"))
        jobs = assert_one_job_per_group(cluster, run_ns, run)
        assert any(members(j) for j in jobs), f"{n}: no Indexed Job"
        total += len(jobs)
    assert len(rec.uids) == total, "every Job the API server ever held is a Job of a lineage"
    figure("perfanout sigkill: Jobs over the 4 runs", total)
