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
    endpoints = {"agentEndpoints": {"cidrs": ["127.0.0.1/32"]}}  # the default policy allows no endpoint
    assert review({**BASE, "agent": agent}, Policy.model_validate(endpoints)).allowed
    v = review({**BASE, "agent": agent}, Policy.model_validate({**endpoints, "allowOpenAI": False}))
    assert not v.allowed and v.message.startswith("spec.agent.type")
    v = review({**BASE, "agent": {"type": "openai"}}, Policy())
    assert not v.allowed and "agent.baseURL and agent.model are required" in v.message


def test_spec_is_immutable_but_defaulting_is_not_a_change():
    filled = review(dict(BASE), Policy(), clamp=True).spec
    assert review(filled, Policy(), old_spec=dict(BASE)).allowed
    v = review({**BASE, "query": "other"}, Policy(), old_spec=dict(BASE))
    assert not v.allowed and v.reason == "immutable"


def test_corpora_no_step_can_read_are_rejected_naming_the_field():
    """These passed the CRD pattern and admission, created Jobs that failed, and failed the run."""
    cases = {
        "builtin:../../x": "spec.corpus.uri: 'builtin:../../x' is not a shipped builtin corpus (available: builtin:sample)",
        "builtin:nope": "spec.corpus.uri: 'builtin:nope' is not a shipped builtin corpus",
        "s3://bucket/../other-run": "spec.corpus.uri: the key of 's3://bucket/../other-run' has a '.', '..' or empty segment",
        "s3://bucket/a/./c.json": "spec.corpus.uri: the key of",
        "s3://bucket/a//c.json": "spec.corpus.uri: the key of",
    }
    for uri, message in cases.items():
        v = review({**BASE, "corpus": {"uri": uri}}, Policy())
        assert not v.allowed and message in v.message, (uri, v.message)
    v = review({**BASE, "corpus": {"uri": "builtin:sample", "format": "markdown"}}, Policy())
    assert not v.allowed and v.message.startswith("spec.corpus: format markdown"), v.message
    for ok in ("builtin:sample", "s3://bucket/corpora/c.json", "s3://bucket/.hidden/c.json", "s3://bucket/..a/c.json"):
        assert review({**BASE, "corpus": {"uri": ok}}, Policy()).allowed, ok


def test_the_local_runner_gives_the_same_corpus_errors():
    import pytest

    from searchrun.manifest import ManifestError, validate

    doc = {"apiVersion": "searchrun.dev/v1alpha1", "kind": "SearchRun", "metadata": {"name": "x"}, "spec": dict(BASE)}
    for corpus, message in (({"uri": "builtin:../../x"}, "spec.corpus.uri: 'builtin:../../x' is not a shipped builtin corpus"),
                            ({"uri": "s3://bucket/../other-run"}, "spec.corpus.uri: the key of"),
                            ({"uri": "builtin:sample", "format": "markdown"}, "spec.corpus: format markdown")):
        with pytest.raises(ManifestError) as e:
            validate({**doc, "spec": {**BASE, "corpus": corpus}})
        assert message in str(e.value)


def test_queries_of_control_or_invisible_characters_are_rejected():
    for q in ("\u200b", "\x00", "\u200b\u200b \ufeff", "\u2028\u3000", "\x85"):
        v = review({**BASE, "query": q}, Policy())
        assert not v.allowed and "spec.query must not" in v.message, (q, v.message)
    v = review({**BASE, "query": "a\x00b"}, Policy())
    assert not v.allowed and "spec.query must not hold control characters other than newline and tab (U+0000 at position 1)" in v.message
    v = review({**BASE, "query": "what\x1b[31m is BM25"}, Policy())
    assert not v.allowed and "U+001B" in v.message
    for q in ("line one\nline two\tand a tab", "\u200bBM25", "日本語の検索"):
        assert review({**BASE, "query": q}, Policy()).allowed, q


def test_a_default_over_a_cap_is_filled_at_the_cap_silently():
    """Only values the user wrote are clamped with a warning (or rejected); a default that exceeds
    the cluster's cap is filled at the cap (it used to warn "clamped from 200000" about a value
    the user never wrote, and reject it in reject mode)."""
    p = Policy(clamp=["maxTokens"], caps=Caps(maxTokens=150000, maxParallel=2))
    for s in (dict(BASE), {**BASE, "budget": {"maxAgents": 2}}):
        v = review(s, p, clamp=True)
        assert v.allowed and v.warnings == [], v.warnings
        assert v.spec["budget"]["maxTokens"] == 150000 and v.spec["budget"]["maxParallel"] == 2
        assert review(s, p).allowed, "the validating pass accepts a defaulted field over its cap too"
    # the API server fills the CRD defaults before the webhooks: a field at its default counts as not written
    filled = {**BASE, "budget": {"maxTokens": 200000, "maxParallel": 4}}
    v = review(filled, p, clamp=True)
    assert v.allowed and v.warnings == [] and v.spec["budget"]["maxTokens"] == 150000
    # a value the user wrote: clamped with a warning where clamping is allowed, rejected elsewhere
    v = review({**BASE, "budget": {"maxTokens": 300000}}, p, clamp=True)
    assert v.allowed and v.warnings == ["spec.budget.maxTokens clamped from 300000 to 150000 by the cluster's policy"]
    v = review({**BASE, "budget": {"maxParallel": 3}}, p, clamp=True)
    assert not v.allowed and v.message == "spec.budget.maxParallel: 3 exceeds the cluster's limit of 2"


def test_the_crd_says_the_same_about_corpora_and_queries():
    """The API server checks the generated CRD before any webhook: its pattern refuses the same
    corpus URIs, and its CEL rules name the query's control and blank rules."""
    import re

    from searchrun import crd

    spec = crd.spec_schema()
    pattern = spec["properties"]["corpus"]["properties"]["uri"]["pattern"]
    for bad in ("builtin:../../x", "builtin:nope", "s3://bucket/../other-run", "s3://bucket/a/./b", "s3://bucket/a//b"):
        assert not re.match(pattern, bad), bad
    for good in ("builtin:sample", "s3://bucket/c.json", "s3://bucket/dir/", "./corpus.json", "corpus.json", "file:///x"):
        assert re.match(pattern, good), good
    rules = [r["rule"] for r in spec["x-kubernetes-validations"]]
    assert any("\\\\x00-\\\\x08\\\\x0b-\\\\x1f\\\\x7f-\\\\x9f" in r for r in rules), rules
    assert any("\\\\p{Cf}" in r for r in rules), rules
    assert "self.format == 'json'" in spec["properties"]["corpus"]["x-kubernetes-validations"][0]["rule"]
