"""The agent kinds ``spec.agent.type`` names, and ``make_agent``, which builds the one a step asks for.

Adding a kind: a module with its agent (see ``base.Agent``), a factory line in
``AGENT_KINDS``, and the value in ``api.AgentType`` (then regenerate the CRD).
"""

from __future__ import annotations

from typing import Callable, Mapping

from ..api import AgentSpec
from ..corpus import Corpus
from .base import Agent, AgentError
from .offline import OfflineAgent

# (the run's agent spec, the corpus, the step's environment) -> the agent
AgentFactory = Callable[[AgentSpec, Corpus, Mapping[str, str]], Agent]


def _offline(spec: AgentSpec, corpus: Corpus, env: Mapping[str, str]) -> Agent:
    return OfflineAgent(corpus, spec.relevanceThreshold, cost_per_1k=spec.costPer1kTokensUSD)


def _openai(spec: AgentSpec, corpus: Corpus, env: Mapping[str, str]) -> Agent:
    # Imported here, not at the top: it brings in the HTTP client (urllib.request, ssl, http.client),
    # which a step of an offline run, the common case, would otherwise load at every start.
    from ..endpoint_policy import step_policy
    from .openai_compat import OpenAICompatAgent

    return OpenAICompatAgent(spec, corpus, env.get(spec.apiKeyEnv) or None, policy=step_policy(env))


AGENT_KINDS: dict[str, AgentFactory] = {
    "offline": _offline,
    "openai": _openai,
}


def make_agent(spec: AgentSpec, corpus: Corpus, env: Mapping[str, str]) -> Agent:
    """The agent ``spec`` describes. The openai agent's key is read from ``env[spec.apiKeyEnv]``
    (on a cluster the operator maps the Secret into that variable); no key means no
    Authorization header (fine for local endpoints)."""
    kind = getattr(spec.type, "value", spec.type)
    factory = AGENT_KINDS.get(kind)
    if factory is None:
        raise AgentError(f"unknown agent type {kind!r} ({' or '.join(AGENT_KINDS)})")
    return factory(spec, corpus, env)
