"""The agent registry: a kind is one factory in AGENT_KINDS; make_agent builds the kind a spec names."""

from __future__ import annotations

import subprocess
import sys

import pytest

from searchrun.agents import AGENT_KINDS, AgentError, Usage, make_agent
from searchrun.agents.offline import OfflineAgent
from searchrun.api import AgentSpec
from searchrun.corpus import load_corpus


class ToyAgent:
    """Answers every question with the first document."""

    def __init__(self, corpus, key):
        self.first = next(iter(corpus.documents))
        self.key = key

    def detect_intent(self, query, allowance):
        return "simple", "toy", Usage()

    def plan_seeds(self, query, k, allowance):
        return [self.first], Usage()

    def simple_search(self, query, k, allowance):
        return [], Usage()

    def traverse(self, query, doc_id, k, allowance):
        raise NotImplementedError


def test_a_kind_registered_in_the_registry_is_made_by_make_agent(monkeypatch):
    sample = load_corpus("builtin:sample")
    monkeypatch.setitem(AGENT_KINDS, "toy", lambda spec, corpus, env: ToyAgent(corpus, env.get(spec.apiKeyEnv)))
    spec = AgentSpec.model_construct(type="toy", apiKeyEnv="TOY_KEY")  # api.AgentType would name it too
    agent = make_agent(spec, sample, {"TOY_KEY": "k"})
    assert isinstance(agent, ToyAgent) and agent.key == "k"
    assert agent.plan_seeds("q", 1, 100)[0] == [next(iter(sample.documents))]


def test_the_built_in_kinds_and_an_unknown_kind():
    sample = load_corpus("builtin:sample")
    assert set(AGENT_KINDS) >= {"offline", "openai"}
    assert isinstance(make_agent(AgentSpec(), sample, {}), OfflineAgent)
    with pytest.raises(AgentError, match=r"unknown agent type 'nope' \(offline or openai\)"):
        make_agent(AgentSpec.model_construct(type="nope"), sample, {})


def test_an_offline_agent_does_not_load_the_http_agent():
    """The openai agent is imported when a run asks for it: every offline step would pay for it."""
    code = ("import sys; from searchrun.agents import make_agent; from searchrun.api import AgentSpec; "
            "from searchrun.corpus import load_corpus; make_agent(AgentSpec(), load_corpus('builtin:sample'), {}); "
            "print('searchrun.agents.openai_compat' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
