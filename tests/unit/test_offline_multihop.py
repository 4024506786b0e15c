"""The offline agent's multi-hop judgement, on a small organisation corpus written for it."""

from __future__ import annotations

import json
import random

import pytest

from searchrun.agents.base import Hop, PathContext, Proposal
from searchrun.agents.intent import classify
from searchrun.agents.lexicon import LEXICON
from searchrun.agents.offline import OfflineAgent
from searchrun.agents.question import HOWTO, WHO, analyse
from searchrun.corpus import Corpus, parse_corpus

TEAM_Q = "Which team is on call for the service that sends password-reset emails?"

ORG = {
    "mailer": {
        "title": "Mailer service",
        "type": "service",
        "content": "The mailer sends password-reset emails, sign-up confirmations and invoices. "
        "It queues messages and hands them to the relay.",
        "relationships": {"depends_on": ["smtp-relay"], "owned_by": ["identity-team"], "runbook": ["mailer-runbook"]},
    },
    "identity-team": {
        "title": "Identity team",
        "type": "team",
        "content": "Six engineers with a weekly pager rotation. They are on call around the clock "
        "and answer pages within fifteen minutes.",
        "relationships": {"owns": ["mailer", "login-service"]},
    },
    "smtp-relay": {
        "title": "SMTP relay",
        "type": "service",
        "content": "Relays outgoing mail for every service. Sends through two providers.",
        "relationships": {"owned_by": ["platform-team"]},
    },
    "platform-team": {
        "title": "Platform team",
        "type": "team",
        "content": "Runs the shared infrastructure. Not on call at night.",
        "relationships": {"owns": ["smtp-relay"]},
    },
    "mailer-runbook": {
        "title": "Mailer runbook",
        "type": "runbook",
        "content": "When emails are delayed, check the queue depth, then the relay. Password-reset "
        "emails have priority.",
        "relationships": {"part_of": ["mailer"]},
    },
    "login-service": {
        "title": "Login service",
        "type": "service",
        "content": "Checks passwords and issues sessions. Ships behind feature flags.",
        "relationships": {"owned_by": ["identity-team"]},
    },
    "audit-logs": {
        "title": "Audit logs",
        "type": "service",
        "content": "Every admin action is written to the audit log with who did it and when.",
        "relationships": {"governed_by": ["records-policy"]},
    },
    "records-policy": {
        "title": "Records policy",
        "type": "policy",
        "content": "Admin action records are retained for 400 days, then deleted.",
        "relationships": {},
    },
    "python": {"title": "Python", "type": "language", "content": "Python is a programming language with dynamic types."},
    "tooling": {"title": "Build tooling", "content": "Our build scripts are written in Python and Bash."},
    "notebooks": {"title": "Notebooks", "content": "Analysts use Python notebooks for reports."},
}


def corpus(docs: dict = ORG) -> Corpus:
    return parse_corpus(json.dumps({"documents": docs}).encode(), "org")


@pytest.fixture(scope="module")
def agent() -> OfflineAgent:
    return OfflineAgent(corpus(), 0.35)


def seed_step(agent: OfflineAgent, query: str, doc: str, k: int = 3):
    return agent.traverse(query, doc, k, 5000, PathContext())


def child_path(agent: OfflineAgent, parent: str, decision, child: str) -> PathContext:
    """The PathContext a parent step hands one of its children (what the engine passes on)."""
    relation = next(p.relation for p in decision.proposals if p.doc_id == child)
    return PathContext((Hop(parent, agent.corpus.get(parent).title),), relation, decision.note)


# ------------------------------------------------------------------- two hops


def test_two_hop_answer_needs_the_path(agent):
    seed = seed_step(agent, TEAM_Q, "mailer")
    # the mailer matches most of the question but is not a team: no answer, and the team is open
    assert not seed.found and seed.score >= 0.35
    assert "open:" in seed.note and "team" in seed.note.split("open:")[1]
    assert seed.proposals[0] == Proposal("identity-team", "owned_by", seed.proposals[0].reason)
    assert "team" in seed.proposals[0].reason
    # on its own words (no document that ranks for the question links to it) the team's
    # document covers too little of the question
    unlinked = {**ORG, "mailer": {**ORG["mailer"], "relationships": {"depends_on": ["smtp-relay"]}},
                "login-service": {**ORG["login-service"], "relationships": {}}}
    alone = OfflineAgent(corpus(unlinked), 0.35).traverse(TEAM_Q, "identity-team", 3, 5000)
    assert not alone.found and not alone.implied
    # with the path that led to it, it answers
    dec = agent.traverse(TEAM_Q, "identity-team", 3, 5000, child_path(agent, "mailer", seed, "identity-team"))
    assert dec.found and dec.score > alone.score and "path covered" in dec.reason


def test_a_seed_is_judged_with_the_link_from_a_document_that_ranks_for_the_question(agent):
    """A seed has no path, but the mailer (the best match) links to the team: judged as reached
    from it, the team answers, and says which hop it assumed."""
    dec = seed_step(agent, TEAM_Q, "identity-team")
    assert dec.found and dec.implied == (Hop("mailer", "Mailer service", "owned_by"),)
    assert "judged as reached from mailer via owned_by" in dec.reason


# A seed two links past the best match: the archive (the first seed) links to the rig, which
# is no match for the question itself, and the rig to the vendor, which is a seed too. The
# traversal's path archive -> rig -> vendor cannot reach the vendor again (no document twice).
CAMERA_Q = "Which vendor supplies the camera that photographs the medieval maps?"
ARCHIVE = {
    "map-archive": {"title": "Map archive", "type": "collection",
                    "content": "The medieval maps and sea charts of the old port, photographed page by page for the online catalogue.",
                    "relationships": {"photographed_by": ["imaging-rig"], "housed_in": ["vault"]}},
    "imaging-rig": {"title": "Imaging rig", "type": "equipment",
                    "content": "A copy stand with two lights, used at night when the reading room is closed.",
                    "relationships": {"supplied_by": ["optika"]}},
    "optika": {"title": "Optika", "type": "vendor",
               "content": "A vendor of camera equipment for museums and libraries.", "relationships": {}},
    "vault": {"title": "Vault", "type": "room", "content": "A cold, dry room under the library.", "relationships": {}},
    "lensco": {"title": "Lensco", "type": "vendor", "content": "A vendor of reading glasses.", "relationships": {}},
    "atlas-shop": {"title": "Atlas shop", "type": "shop", "content": "Sells prints of maps.", "relationships": {}},
}


def test_a_seed_is_judged_with_a_two_link_path_through_a_document_that_is_no_match():
    archive = OfflineAgent(corpus(ARCHIVE), 0.35)
    seeds, _ = archive.plan_seeds(CAMERA_Q, 3, 5000)
    assert seeds[:2] == ["map-archive", "optika"]
    assert not archive.traverse(CAMERA_Q, "imaging-rig", 3, 5000).found  # the rig alone: no match
    dec = seed_step(archive, CAMERA_Q, "optika")
    assert dec.found, dec.reason
    assert dec.implied == (Hop("map-archive", "Map archive", "photographed_by"), Hop("imaging-rig", "Imaging rig", "supplied_by"))
    assert "judged as reached from map-archive via photographed_by then imaging-rig via supplied_by" in dec.reason


def test_a_two_link_path_starts_only_where_a_traversal_would_have_started(monkeypatch):
    """The chain's first document must rank above the seed in the seed ranking: with the archive
    ranked below the vendor, no traversal would have come from it, and the vendor is no answer."""
    archive = OfflineAgent(corpus(ARCHIVE), 0.35)
    ranking = archive._seed_ranking
    monkeypatch.setattr(archive, "_seed_ranking", lambda q: sorted(ranking(q), key=lambda x: x[0] == "map-archive"))
    dec = seed_step(archive, CAMERA_Q, "optika")
    assert not dec.found and not dec.implied, dec.reason


def test_no_single_document_answers_the_two_hop_question(agent):
    """Without a path (its own, or one implied by a link from a document that ranks for the
    question), no document answers."""
    for doc in agent.corpus.ids():
        dec = agent.traverse(TEAM_Q, doc, 3, 5000)
        assert not dec.found or dec.implied, doc


def test_a_sibling_that_echoes_the_path_is_not_an_answer(agent):
    seed = seed_step(agent, TEAM_Q, "mailer")
    for child in ("mailer-runbook", "smtp-relay"):
        dec = agent.traverse(TEAM_Q, child, 3, 5000, child_path(agent, "mailer", seed, child))
        assert not dec.found, (child, dec.reason)


def test_a_path_without_structure_still_counts_its_titles(agent):
    # a note from another agent, free text with a "still open" marker
    path = PathContext((Hop("mailer", "Mailer service"),), "owned_by", "The mailer sends password-reset emails. Still open: which team is on call.")
    assert agent.traverse(TEAM_Q, "identity-team", 3, 5000, path).found


# ---------------------------------------------------------------- children


def test_zero_overlap_child_is_proposed_when_it_is_the_only_way_on(agent):
    q = "How long are audit logs kept?"
    dec = agent.traverse(q, "audit-logs", 2, 5000, PathContext())
    assert dec.next == ["records-policy"] and dec.proposals[0].relation == "governed_by"
    assert dec.proposals[0].reason


def test_children_are_ranked_by_what_is_still_open(agent):
    dec = seed_step(agent, TEAM_Q, "mailer", k=1)
    assert len(dec.next) == 2 and dec.next[0] == "identity-team"
    assert [p.doc_id for p in dec.proposals] == dec.next


# -------------------------------------------------------------------- note


@pytest.mark.parametrize("limit", [0, 1, 5, 30, 80, 400])
def test_note_is_bounded_by_max_note_chars(agent, limit):
    dec = agent.traverse(TEAM_Q, "mailer", 3, 5000, PathContext(), max_note_chars=limit)
    assert len(dec.note) <= limit
    if limit >= 30:
        assert dec.note


def test_note_words_count_into_tokens_and_the_allowance_bounds_everything(agent):
    long_note = "established: " + "word " * 2000
    path = PathContext((Hop("mailer", "Mailer service"),), "owned_by", long_note)
    for allowance in (1, 10, 50, 200, 5000):
        dec = agent.traverse(TEAM_Q, "identity-team", 3, allowance, path)
        assert dec.usage.tokens <= allowance and len(dec.note) <= 400
    short = agent.traverse(TEAM_Q, "identity-team", 3, 5000, PathContext((), "owned_by", ""))
    longer = agent.traverse(TEAM_Q, "identity-team", 3, 5000, path)
    assert longer.usage.tokens > short.usage.tokens


def test_bad_paths_do_not_crash(agent):
    weird = PathContext((Hop("ghost", ""), Hop("mailer", "x" * 10_000, "no_such_kind")), "", "\x00" * 50)
    dec = agent.traverse(TEAM_Q, "identity-team", 3, 5000, weird, max_note_chars=50)
    assert len(dec.note) <= 50


# --------------------------------------------------------------- paraphrase


def test_lexicon_relates_paraphrases():
    assert "retain" in LEXICON.related_terms("kept")
    assert "keep" in LEXICON.related_terms("retained")
    assert "supervis" in LEXICON.related_terms("oversee") or "manag" in LEXICON.related_terms("oversee")
    assert LEXICON.related_terms("qwxzy") == ()


def test_paraphrase_matches_through_the_lexicon_below_an_exact_match():
    q = "How long are admin records kept?"
    docs = {
        "retained": {"title": "Records policy", "content": "Admin records are retained for 400 days."},
        "kept": {"title": "Records policy", "content": "Admin records are kept for 400 days."},
        "neither": {"title": "Records policy", "content": "Admin records are printed for 400 days."},
    }
    a = OfflineAgent(corpus(docs))
    s = {d: a.traverse(q, d, 0, 5000) for d in docs}
    assert s["kept"].score > s["retained"].score > s["neither"].score
    assert "~retain" in s["retained"].reason


# --------------------------------------------------------------- calibration


def test_scores_mean_the_same_in_a_small_and_a_big_corpus():
    rnd = random.Random(7)
    vocab = [f"w{i}" for i in range(3000)]
    pad = {f"pad{i}": {"title": " ".join(rnd.choices(vocab, k=3)), "content": " ".join(rnd.choices(vocab, k=120))} for i in range(5000)}
    small, big = OfflineAgent(corpus()), OfflineAgent(corpus({**ORG, **pad}))
    queries = [TEAM_Q, "How long are audit logs kept?", "What is Python?", "Which service sends emails?"]
    for q in queries:
        for doc in ORG:
            a, b = small.traverse(q, doc, 0, 5000), big.traverse(q, doc, 0, 5000)
            assert (a.found, a.score) == (b.found, b.score), (q, doc)
    seed = small.traverse(TEAM_Q, "mailer", 3, 5000)
    path = child_path(small, "mailer", seed, "identity-team")
    assert small.traverse(TEAM_Q, "identity-team", 3, 5000, path).score == big.traverse(TEAM_Q, "identity-team", 3, 5000, path).score


# ------------------------------------------------------------------ junk


def test_one_incidental_word_is_not_an_answer(agent):
    dec = agent.traverse("Who is behind the feature flags rollout?", "login-service", 2, 5000)
    assert not dec.found
    dec = agent.traverse("Which flags does the billing rollout use?", "login-service", 2, 5000)
    assert not dec.found


def test_what_is_x_returns_the_one_document_about_x(agent):
    hits, _ = agent.simple_search("What is Python?", 5, 5000)
    assert [h.doc_id for h in hits] == ["python"]


# ------------------------------------------------------------------ intent


@pytest.mark.parametrize(
    "query,intent",
    [
        ("What is Python?", "simple"),
        ("What is BM25?", "simple"),
        ("How does BM25 work?", "simple"),
        ("What are TF-IDF and BM25?", "simple"),
        ("exponential backoff retries", "simple"),
        ("Define eventual consistency", "simple"),
        (TEAM_Q, "deep"),
        ("Who owns the billing service?", "deep"),
        ("Compare Raft and Paxos", "deep"),
        ("Why do retries cause outages?", "deep"),
        ("How can quantum computing speed up machine learning, and what limits it?", "deep"),
        ("What does the service that stores invoices depend on?", "deep"),
        # a lookup of the thing named, by a question word
        ("Who is Priya Raman?", "simple"),
        ("Where is the Dunmore distribution centre?", "simple"),
        ("What happens if I pay late?", "simple"),
        # the one asked for is found through what it is related to
        ("Who rents us the analytics warehouse?", "deep"),
        ("Which outside company does Postbox rely on to get its mail out?", "deep"),
        ("Who is Edith Crane's agent?", "deep"),
        ("Who is the head of finance?", "deep"),
        ("The ledger database is down: how do we recover it?", "deep"),
    ],
)
def test_intent(query, intent):
    assert classify(query)[0] == intent


@pytest.mark.parametrize(
    "query,focus,agent_object",
    [
        ("Which outside company does Postbox rely on?", "compani", False),  # past the modifier
        ("Which external company does Postbox rely on?", "compani", False),  # the noun before the verb
        ("What procedure covers problems with the cache?", HOWTO, False),  # a procedure is asked for
        ("What rules cover what the shop keeps?", "rule", False),
        ("What happens if I leave my bin out?", None, False),  # a verb, not a kind
        ("What is Python?", None, False),
        ("Who is in charge of the group that owns Conveyor?", WHO, True),  # the group's "of"
        ("Who is the boss of the staff at the depot?", WHO, True),
        ("Who is in charge of the ward for heart patients?", WHO, False),  # a ward is no group
    ],
)
def test_question_focus(query, focus, agent_object):
    q = analyse(query)
    assert (q.focus, q.agent_object) == (focus, agent_object)


def test_which_company_is_answered_by_a_vendor_not_by_the_service():
    corpus = parse_corpus(json.dumps({"documents": {
        "postbox": {"title": "Postbox", "type": "service", "content": "Postbox sends our transactional mail.",
                    "relationships": {"depends_on": ["courier"]}},
        "courier": {"title": "MailCourier", "type": "vendor", "content": "An email delivery provider with an API."},
    }}).encode(), "test")
    a = OfflineAgent(corpus, 0.35)
    q = "Which outside company does Postbox rely on to get its mail out?"
    seed = a.traverse(q, "postbox", 2, 5000)
    assert not seed.found and "not what the question asks for" in seed.reason
    child = a.traverse(q, "courier", 2, 5000, PathContext((Hop("postbox", "Postbox"),), "depends_on", seed.note))
    assert child.found


# ---------------------------------------------------------------- bad corpora

BIG = " ".join(["payments ledger reconciles invoices nightly"] * 40_000)[:1_000_000]  # ~1 MiB

HOSTILE = {
    "ledger": {
        "title": "Ledger service",
        "type": "service",
        "content": BIG,
        "relationships": {"zz_unheard_of_kind": ["finance-team"], "self": ["ledger"], "loops_to": ["cycle-a"],
                          "points_at": ["no-such-doc"], "": ["untitled"]},
    },
    "finance-team": {"title": "Finance team", "type": "team", "content": "Owns the ledger. On call weekdays.",
                     "relationships": {"owns": ["ledger"], "Ω-weird kind!": ["finance-team", "ghost"]}},
    "cycle-a": {"title": "Cycle A", "content": "first of three", "relationships": {"next": ["cycle-b"]}},
    "cycle-b": {"title": "Cycle B", "content": "second of three", "relationships": {"next": ["cycle-c"]}},
    "cycle-c": {"title": "Cycle C", "content": "third of three", "relationships": {"next": ["cycle-a", "ledger"]}},
    "untitled": {"title": "", "type": "", "content": "", "relationships": {"up": ["ledger"]}},
}
HOSTILE_Q = "Which team is on call for the service that reconciles the payments ledger?"


@pytest.fixture(scope="module")
def hostile() -> OfflineAgent:
    return OfflineAgent(corpus(HOSTILE), 0.35)


def test_unknown_kinds_cycles_self_and_dangling_links_do_not_crash(hostile):
    """Every document, as a seed and as a child of every linking document: no crash, a bounded
    note, no proposal of itself or of a missing document, tokens within the allowance."""
    ids = hostile.corpus.ids()
    for doc in ids:
        paths = [PathContext()]
        for src in ids:
            for kind, dst in hostile.corpus.links(src):
                if dst == doc:
                    paths.append(PathContext((Hop(src, hostile.corpus.get(src).title),), kind, "established: x; open: y"))
        for path in paths:
            for allowance in (5, 400, 5000):
                dec = hostile.traverse(HOSTILE_Q, doc, 2, allowance, path, max_note_chars=120)
                assert len(dec.note) <= 120 and dec.usage.tokens <= allowance
                assert all(p.doc_id != doc and p.doc_id in hostile.corpus for p in dec.proposals), (doc, dec.proposals)
    seeds, _ = hostile.plan_seeds(HOSTILE_Q, 3, 5000)
    assert seeds and len(set(seeds)) == len(seeds)
    hits, _ = hostile.simple_search("What is the ledger?", 3, 5000)
    assert [h.doc_id for h in hits][:1] == ["ledger"]


def test_a_1mib_document_is_read_only_as_far_as_the_allowance_goes(hostile):
    dec = hostile.traverse(HOSTILE_Q, "ledger", 2, 5000, PathContext())
    assert dec.usage.tokens <= 5000 and "read the first" in dec.reason and len(dec.snippet) <= 300
    # the team reached from the big ledger: the note the ledger wrote is bounded and the team answers
    path = PathContext((Hop("ledger", "Ledger service"),), "zz_unheard_of_kind", dec.note)
    team = hostile.traverse(HOSTILE_Q, "finance-team", 2, 5000, path)
    assert len(dec.note) <= 400 and team.usage.tokens <= 5000


def test_an_empty_title_is_handled(hostile):
    for path in (PathContext(), PathContext((Hop("ledger", ""),), "", "")):
        dec = hostile.traverse(HOSTILE_Q, "untitled", 2, 5000, path)
        assert not dec.found and len(dec.note) <= 400
    assert hostile.traverse("", "untitled", 2, 5000).found is False


def test_the_notes_own_labels_are_no_evidence():
    """ "established" (a label of the note) is related to "build" in the lexicon: it must not
    cover "building"."""
    from searchrun.agents.scoring import analyse, path_covered

    q = analyse("Which building is the unit with ventilators in?")
    note = "established: unit, ventilators (Intensive care unit); answered by Intensive care unit; open: building"
    covered = path_covered(q, PathContext((Hop("icu", "Intensive care unit"),), "located_in", note))
    assert "unit" in covered and not any(s.startswith("build") for s in covered)
