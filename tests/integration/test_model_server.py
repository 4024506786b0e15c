"""The openai agent against a REAL OpenAI-compatible model server: llama.cpp (llama-cpp-python's
server) with SmolLM2-135M-Instruct, both from PyPI packages (tests/support/model_server.py).

A deep SearchRun with ``agent.type: openai``, locally (``searchrun run``, the local executor) and
on the cluster (step pods reach the server at the bridge address, as they reach S3; the key comes
from a Secret). The model's answers are not the subject, the wiring is: the tokens recorded are
the ones the server reported, every decision a step recorded passed the schema's validation, a
reply that does not is asked again and then makes the traversal a dead end that says why, and the
run completes within its budgets.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from integration.test_operator import cluster_s3, operator, run_ns  # noqa: F401  (the operator's fixtures)
from searchrun.agents.openai_schema import REPLY_ATTEMPTS
from searchrun.artifacts.uris import read_uri
from searchrun.corpus import load_corpus
from support.model_server import ModelServer, start_model_server
from support.runs import apply, assert_budgets_hold, assert_jobs_match_lineage, s3_object, wait_finished

# Worded so that this 135M model calls it deep (it calls most questions simple): the run must traverse.
QUERY = "Deep question: how are quantum computing, machine learning and their limits related?"
# One seed and its child: deep, but few model calls (a reply takes 15-70 s on two loaded cores).
BUDGET = {"maxAgents": 1, "maxDepth": 2, "maxFanoutPerNode": 1, "maxSteps": 12, "maxParallel": 2,
          "maxTokens": 40000, "maxCostUSD": 0.5, "deadlineSeconds": 1500}
PRICE = 0.001  # USD per 1k tokens: the cost budget has numbers to check
DEAD_END = f"dead end: the model's reply was rejected {REPLY_ATTEMPTS} times"


def searchrun(server: ModelServer, name: str, budget: dict | None = None, **agent) -> dict:
    return {"apiVersion": "searchrun.dev/v1alpha1", "kind": "SearchRun", "metadata": {"name": name},
            "spec": {"query": QUERY, "corpus": {"uri": "builtin:sample"},
                     "agent": {"type": "openai", "baseURL": server.base_url, "model": server.model,
                               "costPer1kTokensUSD": PRICE, "requestTimeoutSeconds": 600, **agent},
                     "budget": dict(budget or BUDGET),
                     "steps": {"retries": 1, "backoffSeconds": 1, "timeoutSeconds": 1200}}}


def server_tokens(server: ModelServer, since: int = 0) -> int:
    """What the server reported, summed over the completions it answered (a refused request reports none)."""
    return sum((e.get("usage") or {}).get("total_tokens", 0) for e in server.usage_log()[since:] if e["status"] == 200)


def traverse_outputs(status: dict, read) -> list[tuple[dict, dict]]:
    """(step, its output) for every traversal that succeeded."""
    return [(s, json.loads(read(s["output"]))) for s in status["steps"]
            if s["type"] == "traverse_node" and s["phase"] == "Succeeded"]


def assert_decisions_validated(steps: list[tuple[dict, dict]], max_note: int) -> None:
    """Every decision a traversal recorded is one the schema's validation let through: found is a
    boolean, the score is in 0..1, the note fits agent.maxContextChars, and each proposal is a link
    of the document in the corpus, with the corpus' relationship kind. Or it is a dead end that
    says why the replies were refused, and follows nothing."""
    corpus = load_corpus("builtin:sample")
    for step, out in steps:
        links = {c: kind for kind, c in corpus.links(out["doc"])}
        if out.get("rejected"):
            assert step["decision"].startswith("dead end: the model's reply was rejected"), step
            assert not out["found"] and out["next"] == [] and not step.get("next"), step
            continue
        assert isinstance(out["found"], bool) and 0.0 <= out["score"] <= 1.0, out
        assert len(out["note"]) <= max_note, out
        for p in out["proposals"]:
            assert p["doc"] in links and p["via"] == links[p["doc"]], (out["doc"], p)
        assert step.get("next", []) == [p["doc"] for p in out["proposals"]][: len(step.get("next", []))]


def local_run(tmp_path: Path, server: ModelServer, doc: dict) -> tuple[subprocess.CompletedProcess, dict]:
    m = tmp_path / "run.yaml"
    m.write_text(yaml.safe_dump(doc))
    env = {**os.environ, "OPENAI_API_KEY": server.api_key}
    r = subprocess.run([sys.executable, "-m", "searchrun", "run", str(m)], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=2400)
    (run_dir,) = list((tmp_path / "searchrun-runs" / "runs").iterdir())
    return r, json.loads((run_dir / "lineage.json").read_text())["status"]


def check_run(status: dict, server: ModelServer, since: int, read, max_note: int) -> list[tuple[dict, dict]]:
    assert status["phase"] == "Succeeded", status.get("message")
    assert status["intent"] == "deep", status["steps"][0]
    steps = traverse_outputs(status, read)
    assert steps, "no traversal ran"
    recorded = sum(s.get("tokens", 0) for s in status["steps"])
    assert recorded == status["tokens"] == server_tokens(server, since) > 0, "the tokens recorded are the server's usage"
    assert status["costUSD"] == pytest.approx(status["tokens"] / 1000 * PRICE, abs=1e-6)
    assert_decisions_validated(steps, max_note)
    return steps


@pytest.mark.slow
def test_a_deep_run_against_llama_cpp_locally(tmp_path, model_server):
    since = len(model_server.usage_log())
    r, st = local_run(tmp_path, model_server, searchrun(model_server, "llama-local"))
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "Traceback" not in r.stderr
    check_run(st, model_server, since, lambda uri: read_uri(uri), max_note=400)
    assert_budgets_hold({"spec": {"budget": BUDGET}, "status": st})
    assert model_server.models(key="sk-not-the-key") is None, "the server checks the key, so the run's was right"


@pytest.mark.slow
def test_replies_off_the_schema_are_asked_again_then_a_dead_end(tmp_path, model_server):
    """A note limit this model does not keep (agent.maxContextChars 2: the prompt and the schema's
    description say so, the grammar does not enforce it, and the model writes "..."): each
    traversal's reply is refused, asked again with the reason, and after REPLY_ATTEMPTS replies
    the traversal is a dead end that says why; the run goes on and completes, and the refused
    replies' tokens are counted (the server's usage, as in every run here)."""
    since = len(model_server.usage_log())
    budget = {**BUDGET, "maxDepth": 1}  # the seed alone: each refused reply costs a model call
    r, st = local_run(tmp_path, model_server, searchrun(model_server, "llama-off-schema", budget, maxContextChars=2))
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    steps = check_run(st, model_server, since, lambda uri: read_uri(uri), max_note=2)
    dead = [(s, o) for s, o in steps if o.get("rejected")]
    assert dead, [s["decision"] for s, _ in steps]
    for s, o in dead:
        assert s["decision"].startswith(f"{DEAD_END}; last: "), s["decision"]
        assert s["attempts"] == 1, "a dead end, not a failed step retried"
    assert any("at most 2 allowed" in s["decision"] for s, _ in dead), [s["decision"] for s, _ in dead]
    answered = [e for e in model_server.usage_log()[since:] if e["status"] == 200]
    assert len(answered) >= 2 + REPLY_ATTEMPTS * len(dead), "intent, seeds, and every refused reply asked of the server"
    assert_budgets_hold({"spec": {"budget": budget}, "status": st})


# ------------------------------------------------------------------ on the cluster


@pytest.fixture(scope="module")
def bridge_model_server(cluster, model_server_build, tmp_path_factory):
    """The same server, on the bridge address that step pods reach (the test operator's
    policy.agentEndpoints lists that address: support.runs.with_test_agent_endpoints)."""
    server = start_model_server(model_server_build, cluster.host_ip or "127.0.0.1", tmp_path_factory.mktemp("llama"))
    try:
        yield server
    finally:
        server.stop()


@pytest.mark.cluster
@pytest.mark.s3
@pytest.mark.slow
def test_a_deep_run_against_llama_cpp_on_the_cluster(cluster, operator, run_ns, cluster_s3, bridge_model_server):
    server = bridge_model_server
    cluster.kubectl("-n", run_ns, "create", "secret", "generic", "llm", f"--from-literal=api-key={server.api_key}")
    doc = searchrun(server, "llama-cluster", apiKeySecretRef={"name": "llm", "key": "api-key"})
    since = len(server.usage_log())
    apply(cluster, run_ns, doc)
    run = wait_finished(cluster, run_ns, "llama-cluster", operator, timeout=2400)
    check_run(run["status"], server, since, lambda uri: s3_object(cluster_s3, uri), max_note=400)
    assert_budgets_hold(run)
    assert_jobs_match_lineage(cluster, run_ns, run)
    assert server.api_key not in json.dumps(run), "the key stays in its Secret"
