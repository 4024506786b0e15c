"""Resuming a run: the engine's rules (pure) and `searchrun run --resume` on a local store."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from searchrun.api import SearchRunSpec, SearchRunStatus
from searchrun.engine.resume import ResumeError, resume

from test_local_runner import searchrun, write_manifest

QUERY = "How can quantum computing speed up machine learning, and what limits it?"
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=timezone.utc)


def _status(phase="Succeeded", stopped=None, steps=(), elapsed=30.0) -> SearchRunStatus:
    return SearchRunStatus.model_validate({"phase": phase, "stoppedBy": stopped, "budgetUsed": {"elapsedSeconds": elapsed},
                                           "steps": [{"id": i, "type": "traverse_node", "phase": p} for i, p in steps]})


SPEC = SearchRunSpec(query="q", budget={"maxSteps": 10, "maxAgents": 2})


# -- the engine's rules


@pytest.mark.parametrize("phase", ["Pending", "Running"])
def test_a_run_still_going_is_refused(phase):
    with pytest.raises(ResumeError, match=f"still {phase}"):
        resume(SPEC, _status(phase), {}, NOW)


def test_a_run_with_nothing_left_is_refused():
    with pytest.raises(ResumeError, match="nothing to resume"):
        resume(SPEC, _status(steps=[("t0", "Succeeded")]), {}, NOW)


def test_a_budget_stop_needs_that_budget_raised():
    with pytest.raises(ResumeError, match=r"budget.maxSteps \(10\).*--budget maxSteps=20"):
        resume(SPEC, _status(stopped="maxSteps", steps=[("t0", "Succeeded")]), {"maxTokens": "300000"}, NOW)
    with pytest.raises(ResumeError, match=r"budget.maxTokens"):  # its skipped steps would be skipped again
        resume(SPEC, _status(stopped="maxTokens", steps=[("t0", "Succeeded"), ("t1", "Skipped")]), {}, NOW)
    resume(SPEC, _status(stopped="maxTokens", steps=[("t0", "Failed"), ("t1", "Skipped")]), {}, NOW)  # a failure to retry
    spec, fresh = resume(SPEC, _status(stopped="maxSteps", steps=[("t0", "Succeeded")]), {"maxSteps": "25"}, NOW, by="me",
                         from_run="abc")
    assert spec.budget.maxSteps == 25 and SPEC.budget.maxSteps == 10
    r = fresh.resumes[-1]
    assert (r.fromRun, r.by, r.fromPhase, r.stoppedBy, r.budget) == ("abc", "me", "Succeeded", "maxSteps", {"maxSteps": [10, 25]})
    assert fresh.phase == "Pending" and not fresh.steps


@pytest.mark.parametrize("changes, message", [
    ({"maxSteps": "20000"}, r"--budget maxSteps: Input should be less than or equal to 10000"),
    ({"maxSteps": "many"}, r"--budget maxSteps: Input should be a valid integer"),
    ({"maxSteps": "5"}, r"maxSteps .* must be at least budget.maxAgents \+ 4"),
    ({"maxJobs": "5"}, r"--budget maxJobs: not a budget field"),
])
def test_a_bad_budget_names_the_field_and_the_limit(changes, message):
    with pytest.raises(ResumeError, match=message):
        resume(SPEC, _status("Failed"), changes, NOW)


def test_the_deadline_counts_the_active_time_and_failed_steps_are_listed():
    spec, fresh = resume(SPEC, _status("Failed", steps=[("t0", "Succeeded"), ("t1", "Failed"), ("t2", "Skipped")], elapsed=40),
                         {}, NOW)
    assert fresh.startedAt.startswith((NOW - timedelta(seconds=40)).strftime("%Y-%m-%dT%H:%M:%S"))
    assert fresh.resumes[-1].replanned == ["t1", "t2"] and fresh.resumes[-1].stepsBefore == 3


# -- local runs


def _spec(**budget) -> dict:
    b = {"maxAgents": 2, "maxDepth": 2, "maxFanoutPerNode": 2, "maxSteps": 30}
    b.update(budget)
    return {"query": QUERY, "budget": b, "steps": {"retries": 1, "backoffSeconds": 0.1}}


def _uid(stdout: str) -> str:
    return re.findall(r"\(uid ([0-9a-f]+)\)", stdout)[-1]


def _lineage(tmp_path: Path, uid: str) -> dict:
    return json.loads((tmp_path / "searchrun-runs" / "runs" / uid / "lineage.json").read_text())


def _answers(tmp_path: Path, uid: str) -> list:
    rep = json.loads((tmp_path / "searchrun-runs" / "runs" / uid / "report.json").read_text())
    return [a["docId"] for a in rep["answers"]]


def test_a_step_that_exhausted_its_retries_runs_again_and_only_it_and_what_follows(tmp_path):
    m = write_manifest(tmp_path, _spec())
    r1 = searchrun("run", str(m), cwd=tmp_path, env={"SEARCHRUN_FAIL_STEPS": "t1"})
    assert "failed after 2 attempt(s)" in r1.stdout, r1.stdout + r1.stderr
    uid1 = _uid(r1.stdout)
    before = {s["id"]: s for s in _lineage(tmp_path, uid1)["status"]["steps"]}
    assert before["t1"]["phase"] == "Failed"
    r2 = searchrun("run", "--resume", str(tmp_path / "searchrun-runs" / "runs" / uid1), cwd=tmp_path)
    assert r2.returncode == 0, r2.stdout + r2.stderr
    uid2 = _uid(r2.stdout)
    assert uid2 != uid1
    started = re.findall(r"▶ (\S+)", r2.stdout)
    assert started and started[0] == "t1" and set(started) - {"aggregate", "report"} == {
        s for s in started if s == "t1" or s.startswith("t1-")}
    succeeded_before = {i for i, s in before.items() if s["phase"] == "Succeeded" and s["type"] not in ("aggregate_results", "create_report")}
    assert not succeeded_before & set(started)
    st = _lineage(tmp_path, uid2)["status"]
    kept = {s["id"] for s in st["steps"] if s.get("keptFrom")}
    assert kept == succeeded_before and all(s["keptFrom"]["run"] == uid1 for s in st["steps"] if s.get("keptFrom"))
    assert st["phase"] == "Succeeded" and st["resumes"][0]["fromRun"] == uid1 and st["resumes"][0]["replanned"] == ["t1"]
    # the same answers as a run that never failed
    clean = searchrun("run", str(m), cwd=tmp_path)
    assert _answers(tmp_path, uid2) == _answers(tmp_path, _uid(clean.stdout))
    assert [s["id"] for s in st["steps"]] == [s["id"] for s in _lineage(tmp_path, _uid(clean.stdout))["status"]["steps"]]


def test_a_budget_stopped_run_goes_on_where_it_stopped(tmp_path):
    r1 = searchrun("run", str(write_manifest(tmp_path, _spec(maxSteps=7))), cwd=tmp_path)
    uid1 = _uid(r1.stdout)
    st1 = _lineage(tmp_path, uid1)["status"]
    assert st1["stoppedBy"] == "maxSteps", r1.stdout
    r = searchrun("run", "--resume", uid1, cwd=tmp_path)  # not raised: refused
    assert r.returncode == 2 and "stopped by budget.maxSteps (7)" in r.stderr
    r2 = searchrun("run", "--resume", uid1, "--budget", "maxSteps=30", cwd=tmp_path)
    assert r2.returncode == 0, r2.stdout + r2.stderr
    st2 = _lineage(tmp_path, _uid(r2.stdout))["status"]
    old = {s["id"] for s in st1["steps"] if s["phase"] == "Succeeded" and s["type"] not in ("aggregate_results", "create_report")}
    assert {s["id"] for s in st2["steps"] if s.get("keptFrom")} == old
    assert not old & set(re.findall(r"▶ (\S+)", r2.stdout))
    assert len(st2["steps"]) > len(st1["steps"]) and st2.get("stoppedBy") is None
    assert st2["resumes"][0]["budget"] == {"maxSteps": [7, 30]} and st2["resumes"][0]["stoppedBy"] == "maxSteps"


def test_bad_resumes_are_refused_clearly(tmp_path):
    r = searchrun("run", "--resume", "0123456789abcdef", cwd=tmp_path)
    assert r.returncode == 2 and "no run 0123456789abcdef" in r.stderr
    r1 = searchrun("run", str(write_manifest(tmp_path, _spec())), cwd=tmp_path, env={"SEARCHRUN_FAIL_STEPS": "t1"})
    uid = _uid(r1.stdout)
    r = searchrun("run", "--resume", uid, "--budget", "maxSteps=20000", cwd=tmp_path)
    assert r.returncode == 2 and "maxSteps" in r.stderr and "10000" in r.stderr
    path = tmp_path / "searchrun-runs" / "runs" / uid / "lineage.json"
    doc = json.loads(path.read_text())
    doc["status"]["phase"] = "Running"
    path.write_text(json.dumps(doc))
    r = searchrun("run", "--resume", uid, cwd=tmp_path)
    assert r.returncode == 2 and "still Running" in r.stderr
