"""The step cache in the operator, on a real cluster with a real S3 server: an identical second deep
run creates no Job for a cached step, gives the same answers, and its lineage says where each
cached step came from.

The operator and the S3 server are test_operator.py's (one of each for this module)."""

from __future__ import annotations

import re

import pytest

from support.runs import EXAMPLES, apply, assert_budgets_hold, manifest, run_jobs, wait_finished
from test_operator import cluster_s3, operator, run_ns  # noqa: F401 - the module's operator, S3 server, namespace

pytestmark = [pytest.mark.cluster, pytest.mark.s3]

CACHED_TYPES = {"detect_intent", "plan_search", "traverse_node"}


def _deep(name: str, mode: str = "ReadWrite") -> dict:
    doc = manifest(EXAMPLES / "searchrun.yaml", cache__mode=mode)
    doc["metadata"]["name"] = name
    return doc


def _metric(text: str, name: str, labels: str = "") -> float:
    m = re.search(rf"^{re.escape(name)}{re.escape(labels)} ([0-9.e+]+)$", text, re.M)
    return float(m.group(1)) if m else 0.0


def _job_types(cluster, ns: str, uid: str) -> list[str]:
    return sorted(j["metadata"]["labels"]["searchrun.dev/step-type"] for j in run_jobs(cluster, ns, uid))


def test_an_identical_second_deep_run_creates_no_traverse_jobs_and_gives_the_same_answers(cluster, operator, run_ns):
    apply(cluster, run_ns, _deep("deep-first"))
    first = wait_finished(cluster, run_ns, "deep-first", operator)
    assert first["status"]["phase"] == "Succeeded", first["status"].get("message")
    uid1 = first["metadata"]["uid"]
    assert "traverse-node" in _job_types(cluster, run_ns, uid1)
    hits = _metric(operator.metrics(), "searchrun_cache_hits_total", '{step_type="traverse_node"}')
    saved = _metric(operator.metrics(), "searchrun_cache_tokens_saved_total")

    apply(cluster, run_ns, _deep("deep-second"))
    second = wait_finished(cluster, run_ns, "deep-second", operator)
    st1, st2 = first["status"], second["status"]
    assert st2["phase"] == "Succeeded", st2.get("message")
    uid2 = second["metadata"]["uid"]
    # Jobs counted by their run label: only the fan-in and the report, which read this run's artifacts
    assert _job_types(cluster, run_ns, uid2) == ["aggregate-results", "create-report"]
    same = lambda st: [(s["id"], s["type"], s.get("doc"), s.get("found"), s.get("next")) for s in st["steps"]]  # noqa: E731
    assert same(st2) == same(st1)
    assert st2["answers"] == st1["answers"] > 0
    cached = [s for s in st2["steps"] if s["type"] in CACHED_TYPES]
    traversals = [s for s in cached if s["type"] == "traverse_node"]
    assert len(traversals) >= 3
    for s in cached:
        assert s["cachedFrom"] == {"run": uid1, "step": s["id"], "attempt": 1}, s
        assert s["tokens"] == 0 and s.get("tokensSaved", 0) == next(x["tokens"] for x in st1["steps"] if x["id"] == s["id"])
    assert st2["budgetUsed"]["steps"] == st1["budgetUsed"]["steps"]  # the budget counts the cached steps...
    assert st2["tokens"] < st1["tokens"]                              # ...but not their tokens
    assert_budgets_hold(second)

    m = operator.metrics()
    assert _metric(m, "searchrun_cache_hits_total", '{step_type="traverse_node"}') - hits == len(traversals)
    assert _metric(m, "searchrun_cache_tokens_saved_total") - saved == sum(s.get("tokensSaved", 0) for s in cached)
    assert "StepsCached" in cluster.kubectl("-n", run_ns, "describe", "sr", "deep-second").stdout


def test_a_read_only_run_with_the_cache_empty_runs_every_step_and_fills_nothing(cluster, operator, run_ns):
    """ReadOnly in a namespace whose cache is empty: every step is a Job; a ReadWrite run after it
    still finds nothing to reuse (ReadOnly added no entry)."""
    apply(cluster, run_ns, _deep("ro", mode="ReadOnly"))
    ro = wait_finished(cluster, run_ns, "ro", operator)
    assert ro["status"]["phase"] == "Succeeded"
    assert not any(s.get("cachedFrom") for s in ro["status"]["steps"])
    apply(cluster, run_ns, _deep("rw"))
    rw = wait_finished(cluster, run_ns, "rw", operator)
    assert not any(s.get("cachedFrom") for s in rw["status"]["steps"])
    assert "traverse-node" in _job_types(cluster, run_ns, rw["metadata"]["uid"])
