"""Agents: the step code's judgement ("relevant?", "where next?").

``make_agent(spec, corpus, env)`` returns the agent of the kind ``spec.type`` names
(``registry.AGENT_KINDS``): the offline BM25 agent (default, no network) or the
OpenAI-compatible HTTP agent.
"""

from .base import Agent, AgentError, Hit, TraverseDecision, Usage
from .registry import AGENT_KINDS, make_agent

__all__ = ["AGENT_KINDS", "Agent", "AgentError", "Hit", "TraverseDecision", "Usage", "make_agent"]
