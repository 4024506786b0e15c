"""The step entrypoint (`searchrun step`), as a Job's pod runs it."""

import json
import os
import subprocess
import sys

from searchrun.api import AgentSpec, CorpusRef
from searchrun.steps import STEP_ENV, StepContext


def _ctx(tmp_path, step):
    return StepContext(run_uid="run1", run_name="r", query="What is BM25?", corpus=CorpusRef(), agent=AgentSpec(),
                       store_uri=f"file://{tmp_path}/store", step=step)


def _step(tmp_path, ctx, extra_env=None):
    env = dict(os.environ, **{STEP_ENV: ctx.to_json()}, **(extra_env or {}))
    out = tmp_path / "termination-log"
    p = subprocess.run([sys.executable, "-m", "searchrun", "step", "--result-file", str(out)], env=env,
                       capture_output=True, text=True, timeout=60)
    return p, json.loads(out.read_text())


def test_a_step_writes_its_output_and_commits_its_result(tmp_path):
    ctx = _ctx(tmp_path, {"stepId": "simple", "type": "simple_search", "attempt": 1, "parents": ["detect"],
                          "depth": 0, "k": 3, "tokenAllowance": 5000, "inputs": []})
    p, result = _step(tmp_path, ctx)
    assert p.returncode == 0, p.stderr
    assert result["found"] is True and result["answers"] >= 1 and 0 < result["tokens"] <= 5000
    base = tmp_path / "store/runs/run1/steps/simple/a1"
    assert json.loads((base / "result.json").read_text())["tokens"] == result["tokens"]
    assert json.loads((base / "output.json").read_text())["answers"][0]["docId"].startswith("bm25")


def test_a_retried_pod_reuses_the_committed_result(tmp_path):
    """Pods of one Job share the attempt; the second finds result.json and does not redo the step."""
    ctx = _ctx(tmp_path, {"stepId": "detect", "type": "detect_intent", "attempt": 1, "parents": [], "depth": 0,
                          "k": 3, "tokenAllowance": 5000, "inputs": []})
    p1, r1 = _step(tmp_path, ctx)
    p2, r2 = _step(tmp_path, ctx, {"SEARCHRUN_FAIL_STEPS": "detect"})  # would fail if it ran again
    assert p1.returncode == 0 and p2.returncode == 0
    assert r1 == r2


def test_a_failing_step_says_why_in_its_termination_message(tmp_path):
    ctx = _ctx(tmp_path, {"stepId": "t0", "type": "traverse_node", "attempt": 1, "parents": ["plan"], "depth": 1,
                          "doc": "no-such-document", "k": 2, "tokenAllowance": 5000, "inputs": []})
    p, result = _step(tmp_path, ctx)
    assert p.returncode == 1
    assert "no-such-document" in result["error"] and "not in the corpus" in result["error"]
    assert not (tmp_path / "store/runs/run1/steps/t0/a1/result.json").exists()


def test_step_without_context_fails_clearly(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != STEP_ENV}
    p = subprocess.run([sys.executable, "-m", "searchrun", "step", "--result-file", str(tmp_path / "r")], env=env,
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 1 and "SEARCHRUN_STEP is not set" in p.stderr


def test_a_step_that_cannot_commit_its_result_fails(tmp_path, monkeypatch, capsys):
    """result.json is the commit: without it the step has not finished, so it fails and is retried
    (it used to exit 0 and leave the operator waiting for a result that never came)."""
    from searchrun import steps
    from searchrun.artifacts import ArtifactError, FileStore

    real_put = FileStore.put_bytes

    def put_bytes(self, key, data, **kw):
        if key.endswith("/result.json"):
            raise ArtifactError(f"artifact {key}: the store is unreachable")
        return real_put(self, key, data, **kw)

    monkeypatch.setattr(FileStore, "put_bytes", put_bytes)
    ctx = _ctx(tmp_path, {"stepId": "simple", "type": "simple_search", "attempt": 1, "parents": ["detect"],
                          "depth": 0, "k": 3, "tokenAllowance": 5000, "inputs": []})
    monkeypatch.setenv(STEP_ENV, ctx.to_json())
    out = tmp_path / "termination-log"
    assert steps.main(["--result-file", str(out)]) == 1
    error = json.loads(out.read_text())["error"]
    assert "result.json" in error and "unreachable" in error, error
    assert "step failed" in capsys.readouterr().err
