"""Agents: the step code's judgement ("relevant?", "where next?").

``make_agent(spec, corpus, env)`` returns the offline BM25 agent (default, no
network) or the OpenAI-compatible HTTP agent.
"""

from .base import Agent, AgentError, Hit, TraverseDecision, Usage, make_agent

__all__ = ["Agent", "AgentError", "Hit", "TraverseDecision", "Usage", "make_agent"]
