"""The built-in offline agent: BM25 to find where to start, path-aware judgement to decide.

* ``detect_intent``: "What is X?"-style lookups are simple; relational questions (a relative
  clause, a relation verb such as *owns* or *on call*, a comparison, *why*) and multi-clause ones
  ("..., and what limits it?") are deep. "how" or "and" alone decide nothing.
* ``plan_seeds``: BM25 (:mod:`.bm25`) over the query's terms and, at a lower weight, their
  related words from the lexicon (:mod:`.lexicon`).
* ``traverse``: judges the document together with the path that led to it (:mod:`.scoring`);
  a seed, which has no path, is also judged as reached from one of the documents that link to
  it and match the question themselves, or through one that does not, from a match that links
  to that one (``implied``; the step's evidence path starts there: the path a traversal would
  have taken, which it cannot take again once the seed is visited),
  writes a bounded note for its children (what is established, what is still open) and ranks
  every child by how well its title, type, link kind and first words cover what is still open.
  No child is dropped for sharing no word with the query.
* ``simple_search``: the BM25 candidates judged as seeds; a "What is X?" question gets the one
  document that is about X.

``relevanceThreshold`` is the share of the question a document covers together with its path
(see :mod:`.scoring`); it is independent of the corpus size.

Tokens are an estimate: ``ceil(words * 1.3)`` of what the agent reads (the query, the note and
path it is given, the document, the children's titles and first words) and writes (the note),
truncated to fit the allowance. Everything is deterministic: ties are broken by corpus order.
"""

from __future__ import annotations

from typing import Optional

from ..corpus import Corpus
from .base import DEFAULT_MAX_NOTE_CHARS, Hit, Hop, PathContext, Proposal, TraverseDecision, Usage, usage
from .bm25 import BM25Index, index_for, index_text  # noqa: F401  (re-exported)
from .corpus_kinds import kinds_for
from .scoring import WHO_TERMS, Question, View, analyse, judge, note_for, path_answered, path_covered
from .text import (  # noqa: F401  (re-exported for the openai agent and tests)
    WORD_RE,
    clip,
    count_words,
    estimate_tokens,
    query_terms,
    snippet,
    term,
    truncate_words,
    words,
    words_for,
)
from .intent import classify
from .link_support import link_support

RELATED_SEED_WEIGHT = 0.3
PEEK_WORDS = 15  # words of a child's content read to rank it (besides its title, type and link kind)
RELATIVE_CUT = 0.6  # a simple-search hit scores at least this share of the best one
IMPLIED_SCAN = 16  # a seed may be judged as reached from one of the first documents that link to it ...
IMPLIED_READ = 2  # ... ranked by title and first words; at most this many are read in full
IMPLIED_HOPS = 2  # ... or through one of those, from a match ranked above the seed that links to it


class OfflineAgent:
    """BM25 ranking, path-aware judgement; intent from the query's shape. No network, deterministic."""

    def __init__(self, corpus: Corpus, threshold: float = 0.35, cost_per_1k: float = 0.0):
        self.corpus = corpus
        self.threshold = float(threshold)
        self.cost_per_1k = float(cost_per_1k)
        self.index = index_for(corpus)
        self._incoming: Optional[dict[str, list[tuple[str, str]]]] = None
        self._ranks: Optional[tuple[tuple, dict[str, int]]] = None  # the last question's seed ranking

    def agents(self) -> frozenset:
        """This corpus's document types that are people or groups (see :func:`.corpus_kinds.agent_types`)."""
        return kinds_for(self.corpus)[0]

    def is_agent(self, doc_id: str) -> bool:
        """Is this document a person or group (its type, or its title's head noun, says so)?"""
        doc = self.corpus.get(doc_id)
        if doc is None:
            return False
        view = View(doc.title, doc.type, None, "", self.agents(), self.places(), self.types())
        if view.type:  # a typed document is what its type says ("Fare engine" is no engineer)
            return bool(view.type & (self.agents() | WHO_TERMS))
        return bool(view.head & WHO_TERMS)

    def types(self) -> frozenset:
        """Stems of every document type in this corpus."""
        return kinds_for(self.corpus)[2]

    def places(self) -> frozenset:
        """This corpus's document types that are places (see :func:`.corpus_kinds.place_types`)."""
        return kinds_for(self.corpus)[1]

    def incoming(self, doc_id: str) -> list[tuple[str, str]]:
        """(source, relationship kind) of every followable link into ``doc_id``, in corpus order."""
        if self._incoming is None:
            inc: dict[str, list[tuple[str, str]]] = {}
            for src in self.corpus.documents:
                for kind, dst in self.corpus.links(src):
                    inc.setdefault(dst, []).append((src, kind))
            self._incoming = inc
        return self._incoming.get(doc_id, [])

    def _usage(self, n_words: int) -> Usage:
        return usage(estimate_tokens(n_words), self.cost_per_1k)

    def _read_query(self, query: str, allowance: int) -> tuple[str, int, int]:
        """(the part of the query that fits, its words, words left for documents)."""
        budget = words_for(allowance)
        qwords = count_words(query)
        if qwords > budget:
            return truncate_words(query, budget), budget, 0
        return query, qwords, budget - qwords

    # ------------------------------------------------------------ questions

    def detect_intent(self, query: str, allowance: int) -> tuple[str, str, Usage]:
        if allowance <= 0:
            return "simple", "no token allowance: did not read the query, assuming simple", Usage()
        text, qwords, _ = self._read_query(query, allowance)
        if qwords == 0:
            return "simple", "empty query (or no allowance to read it): assuming simple", self._usage(0)
        intent, reason = classify(text)
        return intent, reason, self._usage(qwords)

    def _seed_ranking(self, q: Question) -> list[tuple[str, float]]:
        stems = q.stems
        weights = {s: 1.0 for s in stems}
        for t in q.terms:
            # related words matter most where the question's own word is absent from the corpus
            w = RELATED_SEED_WEIGHT if self.index.df(t.stem) == 0 else RELATED_SEED_WEIGHT / 3
            for r in t.ordered[:5]:
                weights.setdefault(r, w)
        return self.index.rank(list(weights), weights)

    def plan_seeds(self, query: str, k: int, allowance: int) -> tuple[list[str], Usage]:
        if allowance <= 0 or k <= 0:
            return [], Usage()
        text, qwords, left = self._read_query(query, allowance)
        seeds: list[str] = []
        read = qwords
        for doc_id, _ in self._seed_ranking(analyse(text)):
            if len(seeds) >= k:
                break
            tw = count_words(self.corpus.documents[doc_id].title) or 1
            if tw > left:
                break
            seeds.append(doc_id)
            left -= tw
            read += tw
        return seeds, self._usage(read)

    def _view(self, doc_id: str, left: int, relation: Optional[str] = None) -> tuple[View, int, str, bool]:
        """(view, words read, the content read, truncated) of reading at most ``left`` words."""
        doc = self.corpus.documents[doc_id]
        n = self.index.nwords(self.index.pos[doc_id])
        if n <= left:
            return View(doc.title, doc.type, relation, doc.content, self.agents(), self.places(), self.types()), n, doc.content, False
        tw = count_words(doc.title)
        if tw >= left:
            title, content = truncate_words(doc.title, left), ""
        else:
            title, content = doc.title, truncate_words(doc.content, left - tw)
        return View(title, doc.type, relation, content, self.agents(), self.places(), self.types()), count_words(title) + count_words(content), content, True

    def simple_search(self, query: str, k: int, allowance: int) -> tuple[list[Hit], Usage]:
        if allowance <= 0 or k <= 0:
            return [], Usage()
        text, qwords, left = self._read_query(query, allowance)
        q = analyse(text)
        read = qwords
        judged = []
        for doc_id, _ in self._seed_ranking(q)[: k + 2]:
            if left <= 0:
                break
            view, n, content, _ = self._view(doc_id, left)
            left -= n
            read += n
            j = judge(q, view, (), self.threshold)
            if not j.found:
                continue
            about = len(view.title & set(q.stems)) / max(1, len(view.title))  # how much the title is X
            judged.append((j.score, about, doc_id, content))
        if q.definitional:
            judged = [x for x in judged if x[1] > 0]
            judged.sort(key=lambda x: (-x[1], -x[0]))
            judged = judged[:1] + [x for x in judged[1:] if x[1] >= 1.0]
        else:
            judged.sort(key=lambda x: -x[0])
            if judged:
                judged = [x for x in judged if x[0] >= RELATIVE_CUT * judged[0][0]]
        hits = []
        for score, _, doc_id, content in judged[:k]:
            doc = self.corpus.documents[doc_id]
            hits.append(Hit(doc_id, score, snippet(content or doc.title, q.stems, self.index.idf)))
        return hits, self._usage(read)

    def traverse(
        self,
        query: str,
        doc_id: str,
        k: int,
        allowance: int,
        path: Optional[PathContext] = None,
        max_note_chars: int = DEFAULT_MAX_NOTE_CHARS,
    ) -> TraverseDecision:
        if allowance <= 0:
            return TraverseDecision(False, 0.0, "", [], "no token allowance: did not read the document", Usage())
        doc = self.corpus.get(doc_id)
        if doc is None:
            return TraverseDecision(False, 0.0, "", [], f"document {doc_id!r} is not in the corpus", Usage())
        text, read, left = self._read_query(query, allowance)
        q = analyse(text)
        # the path: the parent's note and the ancestors' titles, as far as the allowance reaches
        if path is not None and left > 0:
            note_in = truncate_words(path.note or "", left)
            left -= count_words(note_in)
            hops = []
            for h in path.hops:
                tw = count_words(h.title or "")
                if tw > left:
                    break
                hops.append(h)
                left -= tw
            read = words_for(allowance) - left
            path = PathContext(tuple(hops), path.relation, note_in)
        relation = path.relation if path is not None else None
        covered_by_path = path_covered(q, path)
        view, n, content, truncated = self._view(doc_id, left, relation)
        left -= n
        read += n
        before = any(self.is_agent(h.doc_id) for h in path.hops) if path is not None and path.hops else False
        j = judge(q, view, covered_by_path, self.threshold, after_answer=path_answered(path), agent_before=before)
        if covered_by_path and not j.found:
            alone = judge(q, view, (), self.threshold, agent_before=False)  # an answer on its own, whatever the path says
            if alone.found:
                j = alone
        implied: tuple[Hop, ...] = ()
        passed_on: set[str] = set()
        if (path is None or not path.hops) and j.score < 1.0:
            # a seed that answers on its own words is not sent looking for a longer way in
            ij, implied, implied_covered, peeked = self._implied_path(q, doc_id, content, left, 1 if j.found else IMPLIED_HOPS)
            left -= peeked
            read += peeked
            if ij is not None and ij.found and (not j.found or ij.score > j.score):
                j, covered_by_path = ij, implied_covered
            else:
                if ij is not None and not j.found and (max(j.score, ij.score) >= self.threshold or (q.agent_object and self.is_agent(doc_id))):
                    # not an answer either way, but a match for the question, on its own or as
                    # reached from the linking document (or the group that "who leads the team
                    # that ...?" names): the children are told what the linking document established too
                    passed_on = set(ij.covered)
                implied = ()
        passed_on = set(j.covered) | passed_on
        if implied:
            support = link_support(q, [h.relation for h in implied[:-1]], implied[-1].relation)
        else:
            support = link_support(q, [h.relation for h in path.hops] if path else [], relation)
        snip = snippet(content or doc.title, q.stems, self.index.idf)
        open_terms = [t for t in q.terms if t.stem not in passed_on]
        props, peeked = self._rank_children(q, doc_id, open_terms, 2 * k, left) if k > 0 else ([], 0)
        left -= peeked
        read += peeked
        note = ""
        if max_note_chars > 0 and left > 0:
            note = clip(truncate_words(note_for(q, passed_on, doc.title, j.found), left), max_note_chars)
            written = count_words(note)
            left -= written
            read += written
        parts = [f"score {j.score:.2f} >= threshold {self.threshold:.2f}" if j.found else (j.why_not or "not an answer")]
        if j.matched:
            parts.append("matched " + ", ".join(f"{s} ({w})" for s, _, w in j.matched[:8]))
        if implied:
            parts.append("judged as reached from " + " then ".join(f"{h.doc_id} via {h.relation}" for h in implied))
        if covered_by_path:
            parts.append(f"path covered {len(covered_by_path)} of {len(q.terms)} terms")
        if truncated:
            parts.append(f"read the first {n} words only (token allowance)")
        parts.append(f"{len(props)} children proposed" if props else "no children to explore")
        return TraverseDecision(
            j.found,
            j.score,
            snip,
            [p.doc_id for p in props],
            "; ".join(parts),
            self._usage(read),
            note=note,
            proposals=tuple(props),
            implied=implied,
            support=support if j.found else 0,
            past_answer=j.found and j.past_answer,
        )

    def _implied_path(self, q: Question, doc_id: str, content: str, left: int, hops: int = IMPLIED_HOPS,
                      avoid: frozenset = frozenset(), start_above: Optional[int] = None):
        """A seed has no path; but a chain of links into it that starts at a document matching the
        question itself is the path a traversal would have taken (and, the seed being visited
        already, could not take again: no document is visited twice). The chain is at most
        ``hops`` links (``IMPLIED_HOPS``); each document that links to the seed is also followed
        back one more step, to a match that the seed ranking puts above the seed (a traversal
        would have started there). ``start_above``: that rank, for the steps back. (judgement as
        reached by the best such chain, or None; the chain, first document first, each hop's
        relation the link out of it along the chain; the question's terms that chain covered;
        words read)."""
        inc = self.incoming(doc_id)
        if not inc or left <= 0 or not q.terms:
            return None, (), set(), 0
        avoid = avoid | {doc_id}
        read = 0
        peeked = []
        for j, (src, kind) in enumerate(inc[:IMPLIED_SCAN]):  # rank them as children are ranked
            c = self.corpus.documents[src]
            peek = truncate_words(c.content, PEEK_WORDS)
            cost = count_words(c.title) + count_words(peek)
            if src in avoid or read + cost > left:
                continue
            if start_above is not None and self._seed_rank(q, src) >= start_above:
                continue  # ranked below the seed: a traversal would not have started there
            read += cost
            view = View(c.title, c.type, None, peek, self.agents(), self.places(), self.types())
            peeked.append((-sum(view.strength(t)[0] for t in q.terms), j, src, kind))
        parents = sorted(peeked)[:IMPLIED_READ]
        doc = self.corpus.documents[doc_id]
        best = None
        for _, _, src, kind in parents:
            pview, n, pcontent, _ = self._view(src, left - read)
            read += n
            if read >= left:
                break
            ptitle = self.corpus.documents[src].title
            pj = judge(q, pview, (), self.threshold)
            ways = []  # (the parent's judgement, the chain before it)
            if pj.score >= self.threshold and pj.covered:
                ways.append((pj, ()))
            if hops > 1:
                # reached itself by a link from a match the seed ranking puts above the seed
                above = self._seed_rank(q, doc_id) if start_above is None else start_above
                gj, chain, _, peeked_back = self._implied_path(q, src, pcontent, left - read, hops - 1, avoid, above)
                read += peeked_back
                if gj is not None and gj.score >= self.threshold and gj.covered:
                    ways.append((gj, chain))
            for pj, chain in ways:
                # the path as a traversal hands it on: ancestors first, each with the link into it
                into = [None] + [h.relation for h in chain]
                ancestors = tuple(Hop(h.doc_id, h.title, r) for h, r in zip(chain + (Hop(src, ptitle),), into))
                ppath = PathContext(ancestors, kind, note_for(q, pj.covered, ptitle, pj.found))
                covered = path_covered(q, ppath)
                before = any(self.is_agent(h.doc_id) for h in ancestors)
                j = judge(q, View(doc.title, doc.type, kind, content, self.agents(), self.places(), self.types()), covered,
                          self.threshold, after_answer=pj.found, agent_before=before)
                # a finding first; else the best judgement, whose coverage the note passes on
                if best is None or (j.found, j.score) > (best[0].found, best[0].score):
                    best = (j, chain + (Hop(src, ptitle, kind),), covered)
        if best is None:
            return None, (), set(), read
        return best[0], best[1], best[2], read

    def _seed_rank(self, q: Question, doc_id: str) -> int:
        """``doc_id``'s place in this question's seed ranking (0 = the first seed; past the end
        for a document that matches none of its words). Computed once per question."""
        key = tuple(q.stems)
        if self._ranks is None or self._ranks[0] != key:
            self._ranks = (key, {d: i for i, (d, _) in enumerate(self._seed_ranking(q))})
        return self._ranks[1].get(doc_id, len(self.corpus.documents))

    def _rank_children(self, q: Question, doc_id: str, open_terms: list, limit: int, left: int) -> tuple[list[Proposal], int]:
        """Every child ranked by how well it can cover ``open_terms`` (all terms once nothing is
        open), with the words read to rank them (titles and the first ``PEEK_WORDS`` words)."""
        want = open_terms or list(q.terms)
        scored = []
        read = 0
        for j, (kind, child) in enumerate(self.corpus.links(doc_id)):
            c = self.corpus.documents[child]
            peek = truncate_words(c.content, PEEK_WORDS)
            cost = count_words(c.title) + count_words(peek)
            score, why = 0.0, "no title or content read (token allowance)"
            if cost <= left:
                left -= cost
                read += cost
                view = View(c.title, c.type, kind, peek, self.agents(), self.places(), self.types())
                got = [(t, *view.strength(t)) for t in want]
                score = sum(m for _, m, _ in got) / len(want) if want else 0.0
                if q.focus is not None:
                    score += 0.5 * view.focus_strength(q)  # surely the kind of thing asked for: more
                best = [f"{t.surface} ({w})" for t, m, w in sorted(got, key=lambda x: -x[1]) if m > 0][:3]
                why = ("may cover " + ", ".join(best)) if best else "shares no open term; still a way on"
            scored.append((-round(score, 6), j, Proposal(child, kind, f"via {kind}: {why}")))
        scored.sort(key=lambda x: (x[0], x[1]))
        return [p for _, _, p in scored[:limit]], read
