"""The admission policy, without a cluster."""

from searchrun.admission import Caps, Policy, review

BASE = {"query": "How does BM25 rank documents?", "corpus": {"uri": "builtin:sample"}}


def spec(**budget):
    return {**BASE, "budget": budget}


def test_defaults_are_filled():
    v = review(dict(BASE), Policy(), clamp=True)
    assert v.allowed and v.spec["budget"]["maxAgents"] == 3 and v.spec["budget"]["maxDepth"] == 3
    assert v.spec["steps"]["retries"] == 2 and v.warnings == []


def test_over_cap_is_rejected_naming_field_and_limit():
    v = review(spec(maxAgents=7), Policy(caps=Caps(maxAgents=5)))
    assert not v.allowed and v.reason == "cap"
    assert v.message == "spec.budget.maxAgents: 7 exceeds the cluster's limit of 5"


def test_clamp_mode_clamps_and_warns():
    p = Policy(mode="clamp", caps=Caps(maxParallel=4, maxTokens=5000))
    v = review(spec(maxParallel=9, maxTokens=8000), p, clamp=True)
    assert v.allowed
    assert v.spec["budget"]["maxParallel"] == 4 and v.spec["budget"]["maxTokens"] == 5000
    assert "spec.budget.maxParallel clamped from 9 to 4 by the cluster's policy" in v.warnings
    # the validating pass (no clamping) still rejects what was not clamped
    assert not review(spec(maxParallel=9), p).allowed


def test_per_field_clamp_list():
    p = Policy(clamp=["maxParallel"], caps=Caps(maxParallel=4, maxAgents=5))
    assert review(spec(maxParallel=9), p, clamp=True).allowed
    v = review(spec(maxParallel=9, maxAgents=6), p, clamp=True)
    assert not v.allowed and "maxAgents" in v.message and "maxParallel" not in v.message


def test_clamping_that_breaks_a_cross_field_rule_is_rejected():
    p = Policy(mode="clamp", caps=Caps(maxSteps=8))
    v = review(spec(maxAgents=6, maxSteps=20), p, clamp=True)
    assert not v.allowed and "maxSteps" in v.message


def test_invalid_fields_are_named():
    v = review({"query": "", "budget": {"maxDepth": 9}, "bogus": 1}, Policy())
    assert not v.allowed and v.reason == "invalid"
    for part in ("spec.query", "spec.budget.maxDepth: must be <= 5", "spec.bogus: unknown field"):
        assert part in v.message


def test_corpus_a_job_cannot_read_is_rejected():
    for uri in ("/data/corpus.json", "file:///data/corpus.json", "corpus.json"):
        v = review({**BASE, "corpus": {"uri": uri}}, Policy())
        assert not v.allowed and v.reason == "corpus" and v.message.startswith("spec.corpus.uri")
    assert review({**BASE, "corpus": {"uri": "s3://bucket/c.json"}}, Policy()).allowed


def test_openai_agent_can_be_forbidden():
    agent = {"type": "openai", "baseURL": "http://127.0.0.1:9/v1", "model": "m"}
    assert review({**BASE, "agent": agent}, Policy()).allowed
    v = review({**BASE, "agent": agent}, Policy(allowOpenAI=False))
    assert not v.allowed and v.message.startswith("spec.agent.type")
    v = review({**BASE, "agent": {"type": "openai"}}, Policy())
    assert not v.allowed and "agent.baseURL and agent.model are required" in v.message


def test_spec_is_immutable_but_defaulting_is_not_a_change():
    filled = review(dict(BASE), Policy(), clamp=True).spec
    assert review(filled, Policy(), old_spec=dict(BASE)).allowed
    v = review({**BASE, "query": "other"}, Policy(), old_spec=dict(BASE))
    assert not v.allowed and v.reason == "immutable"
