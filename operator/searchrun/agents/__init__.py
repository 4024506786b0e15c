"""Agents: the step code's judgement ("relevant?", "where next?").

``make_agent(spec, corpus, env)`` returns the agent of the kind ``spec.type`` names
(``registry.AGENT_KINDS``): the offline BM25 agent (default, no network) or the
OpenAI-compatible HTTP agent.
"""

from .base import Agent, AgentError, Hit, TraverseDecision, Usage


def __getattr__(name: str):
    """The agent kinds (and what they import: BM25, the lexicon) load on first use, so that the
    operator, which imports the step types for their engine half (``steps.traverse_node`` needs
    ``agents.base``), does not hold them."""
    if name in ("AGENT_KINDS", "make_agent"):
        from . import registry
        return getattr(registry, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

__all__ = ["AGENT_KINDS", "Agent", "AgentError", "Hit", "TraverseDecision", "Usage", "make_agent"]
