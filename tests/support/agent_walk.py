"""Drive an agent down a chosen chain of documents, as the engine would (for unit tests)."""

from __future__ import annotations

from searchrun.agents.base import Hop, PathContext


def walk(agent, query: str, docs: list[str]):
    """The decisions along ``docs`` (a seed, then each child through the link the parent proposed)."""
    out, hops, path = [], (), None
    for i, doc in enumerate(docs):
        dec = agent.traverse(query, doc, 3, 5000, path)
        out.append(dec)
        if i + 1 < len(docs):
            via = next(p.relation for p in dec.proposals if p.doc_id == docs[i + 1])
            hops = hops + (Hop(doc, agent.corpus.get(doc).title, path.relation if path else None),)
            path = PathContext(hops, via, dec.note)
    return out
