"""The offline agent's fifth round, on the dev corpora (``bench/search/dev/``): the fan-in's
preference for answers whose evidence path names the question's relations."""

from __future__ import annotations

from pathlib import Path

import pytest

from searchrun.agents.link_support import link_support
from searchrun.agents.offline import OfflineAgent
from searchrun.agents.scoring import analyse
from searchrun.corpus import load_corpus
from searchrun.steps.aggregate_results import select
from support.agent_walk import walk

DEV = Path(__file__).resolve().parents[2] / "bench" / "search" / "dev"


def agent_for(name: str) -> OfflineAgent:
    return OfflineAgent(load_corpus(f"file://{DEV / name}.json"), 0.35)


@pytest.fixture(scope="module")
def city() -> OfflineAgent:
    return agent_for("city")


def test_the_link_that_names_the_relation_asked_is_support(city):
    q = "Where is the office that takes bookings to collect a sofa?"
    *_, office = walk(city, q, ["svc-bulky", "svc-contact-centre", "place-market-square"])
    *_, depot = walk(city, q, ["svc-bulky", "dept-environment", "place-depot"])
    assert office.found and depot.found
    assert office.support > depot.support  # booked_via names "bookings"; run_by names nothing asked


def test_link_support_counts_terms_and_the_who_link():
    q = analyse("Who maintains the library that the renderer depends on?")
    assert link_support(q, ["depends_on"], "maintained_by") == 3  # depends, maintains, and a "who" link
    assert link_support(q, [], "maintained_by") == 2
    assert link_support(q, [], "part_of") == 0
    assert link_support(analyse("Where is the depot?"), [], "located_at") == 1


def test_the_fan_in_drops_an_answer_as_good_whose_path_names_fewer_relations():
    answers = [{"docId": "depot", "score": 0.80, "depth": 3, "stepId": "t0-1-0", "support": 1,
                "path": [{"doc": "bulky"}, {"doc": "env"}, {"doc": "depot"}]},
               {"docId": "office", "score": 0.78, "depth": 3, "stepId": "t0-0-0", "support": 2,
                "path": [{"doc": "bulky"}, {"doc": "centre"}, {"doc": "office"}]}]
    assert [a["docId"] for a in select(answers)] == ["office"]
    for a in answers:
        a.pop("support")  # an agent that does not say: both kept, as before
    assert [a["docId"] for a in select(answers)] == ["depot", "office"]


def test_the_nouns_of_related_verbs_bridge_a_paraphrase():
    """"kept" ~ "retain" (WordNet) ~ "retention" (its noun): one step further than the table."""
    from searchrun.agents.lexicon import LEXICON

    assert "retent" not in LEXICON.related_terms("kept")
    assert "retent" in LEXICON.derived_terms("kept")
    kept = next(t for t in analyse("How long are my notes kept?").terms if t.surface == "kept")
    assert "retent" in kept.related


def test_a_retention_policy_answers_how_long_something_is_kept():
    hosp = agent_for("hosp")
    q = "How long are my notes kept after I ask for copies of them?"
    service, policy = walk(hosp, q, ["svc-patient-records", "pol-records"])
    assert policy.found and "kept (title ~retent)" in policy.reason


def test_an_agent_noun_is_the_same_word():
    q = analyse("Who is paged when the printer that the owner leads stops?")
    variants = {t.stem: t.variants for t in q.terms}
    assert variants["page"] == {"pager"}
    assert variants["lead"] == {"leader"}
    sign = next(t for t in analyse("Who signed it?").terms)
    assert "signal" in sign.related and "signal" not in sign.variants  # only agent endings


def test_past_an_answer_the_rotation_that_carries_the_pager_answers_who_is_paged():
    """The team that owns the app answers "who", but the rota past it says "pager" (for "paged")."""
    air = agent_for("air")
    q = "Who is paged at night for problems with the phone app used to check in?"
    app, team, rota = walk(air, q, ["sys-app", "team-digital", "rota-digital"])
    assert team.found and rota.found and "=pager" in rota.reason
