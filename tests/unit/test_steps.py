"""The step entrypoint (`searchrun step`), as a Job's pod runs it."""

import json
import os
import subprocess
import sys

from searchrun.api import AgentSpec, CorpusRef
from searchrun.steps import EXIT_PERMANENT, STEP_ENV, StepContext


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
    assert p.returncode == EXIT_PERMANENT, "a document not in the corpus will not appear on retry"
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


def test_a_corrupt_committed_result_is_not_reused(tmp_path):
    """A truncated result.json (the pod died while writing it, or the store cut it) is no commit:
    the Job's retry pod does the step again and commits a whole result (it used to fail the same
    way on every retry)."""
    ctx = _ctx(tmp_path, {"stepId": "detect", "type": "detect_intent", "attempt": 1, "parents": [], "depth": 0,
                          "k": 3, "tokenAllowance": 5000, "inputs": []})
    committed = tmp_path / "store/runs/run1/steps/detect/a1/result.json"
    for corrupt in (b'{"tokens": 12, "intent": "de', b'[]', b'{"tokens": -1}'):
        committed.parent.mkdir(parents=True, exist_ok=True)
        committed.write_bytes(corrupt)
        p, result = _step(tmp_path, ctx)
        assert p.returncode == 0, p.stderr
        assert "corrupt" in p.stderr
        assert result["intent"] in ("simple", "deep")
        assert json.loads(committed.read_text()) == result, "the redone step committed a whole result"


def test_permanent_and_transient_failures_exit_differently(tmp_path, monkeypatch):
    """A malformed agent reply after the agent's own retries, or bad input, exits EXIT_PERMANENT
    (no retry can fix it); an agent out of retries on network errors or 5xx exits 1 (retried)."""
    from searchrun import steps
    from searchrun.steps import entrypoint
    from searchrun.agents.base import AgentError, AgentReplyError

    ctx = _ctx(tmp_path, {"stepId": "detect", "type": "detect_intent", "attempt": 1, "parents": [], "depth": 0,
                          "k": 3, "tokenAllowance": 5000, "inputs": []})
    monkeypatch.setenv(STEP_ENV, ctx.to_json())
    out = tmp_path / "termination-log"
    for exc, code in ((AgentReplyError("the model's answer holds no JSON object (gave up after 3 attempts)"), EXIT_PERMANENT),
                      (AgentError("cannot reach http://x: refused (gave up after 3 attempts)"), 1),
                      (steps.StepError("store unreachable"), 1),
                      (steps.PermanentStepError("unknown step type 'x'"), EXIT_PERMANENT)):
        def boom(ctx, io=None, exc=exc):
            raise exc
        monkeypatch.setattr(entrypoint, "run_step", boom)
        assert steps.main(["--result-file", str(out)]) == code, exc
        assert str(exc) in json.loads(out.read_text())["error"]
    monkeypatch.setenv(STEP_ENV, "{not json")
    assert steps.main(["--result-file", str(out)]) == EXIT_PERMANENT


def test_the_openai_agent_says_a_malformed_reply_is_permanent():
    """After its own retries, an agent whose model never answered with a JSON object raises
    AgentReplyError (permanent); one that could not reach the endpoint raises a plain AgentError."""
    import pytest

    from searchrun.agents import openai_compat
    from searchrun.agents.base import AgentError, AgentReplyError

    agent = openai_compat.OpenAICompatAgent.__new__(openai_compat.OpenAICompatAgent)
    agent.model, agent.url, agent.backoff_seconds, agent.max_backoff_seconds = "m", "http://agent", 0, 0
    agent._sleep = lambda s: None
    agent._post = lambda body: {"choices": [{"message": {"content": "no json here"}}], "usage": {"total_tokens": 5}}
    with pytest.raises(AgentReplyError):
        agent._chat([{"role": "user", "content": "q"}], 10)

    def down(body):
        raise openai_compat._Retryable("cannot reach http://agent: refused")
    agent._post = down
    with pytest.raises(AgentError) as e:
        agent._chat([{"role": "user", "content": "q"}], 10)
    assert not isinstance(e.value, AgentReplyError)
