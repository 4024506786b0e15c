"""Round 8 of the offline agent (issue 11): contractions, one word for one term, general names
for an organisation, and what a document says it is."""

from __future__ import annotations

import json

from searchrun.agents.offline import OfflineAgent
from searchrun.agents.question import analyse
from searchrun.agents.scoring import View
from searchrun.agents.text import terms_of, words
from searchrun.corpus import parse_corpus

from test_offline_round7 import _child


def _corpus(docs: dict) -> OfflineAgent:
    return OfflineAgent(parse_corpus(json.dumps({"documents": docs}).encode(), "test"), 0.35)


def test_a_contraction_gives_no_term_of_its_own():
    assert words("We're down and it won't start, we can't log in") == \
        ["we", "down", "and", "it", "will", "not", "start", "we", "can", "not", "log", "in"]
    assert "re" not in terms_of("We're being flooded") and "won" not in terms_of("Websites won\u2019t load")
    assert terms_of("the team's rota") == terms_of("the team rota")


def test_a_word_of_the_question_is_not_also_a_related_word_of_another_of_its_terms():
    q = analyse("Phones can't get a data session: who is on call?")
    call = next(t for t in q.terms if t.surface == "call")
    phones = next(t for t in q.terms if t.surface == "phones")
    assert phones.stem not in call.related and phones.stem not in call.ordered
    assert "call" not in phones.related
    assert analyse("Who is on call for the mailer?").terms[0].related  # alone, it keeps its related words


def test_a_general_name_for_an_organisation_asks_for_a_vendor_or_a_regulator():
    for q, asked in (("Which outfit repairs the ducts?", "vendor"), ("Which body licenses the masts?", "regulator")):
        qa = analyse(q)
        assert View("Halloran Civils", asked, None, "").focus_strength(qa) == 1.0
        assert View("Duct plant", "system", None, "").focus_strength(qa) == 0.0


def test_what_a_document_says_it_is_stops_before_a_participle():
    assert View("Halloran Civils", "document", None, "Halloran Civils is a civil engineering contractor based in Brisley.").isa \
        == set(terms_of("contractor"))
    assert View("Tool", "document", None, "An automated system used by clerks.").isa == set(terms_of("system"))


def test_which_outfit_is_answered_by_the_contractor_the_link_leads_to():
    agent = _corpus({
        "ducts": {"title": "Duct and chamber plant", "type": "network system",
                  "content": "The underground network of pipes that cables are pulled through.",
                  "relationships": {"repaired_by": ["civils"], "governed_by": ["works"]}},
        "civils": {"title": "Halloran Civils", "type": "document",
                   "content": "Halloran Civils is a civil engineering contractor based in Brisley. Its crews excavate roads."},
        "works": {"title": "Street works policy", "type": "policy", "content": "Rules for digging in the road."},
    })
    q = "Which outfit fixes the underground pipes our cables run through?"
    assert _child(agent, q, ["ducts", "civils"]).found
    assert not _child(agent, q, ["ducts", "works"]).found


def test_what_a_group_does_is_no_request_for_a_procedure():
    from searchrun.agents.question import HOWTO
    assert analyse("What does the leakage team do?").focus != HOWTO
    assert analyse("The help line menu has broken: what should I do?").focus == HOWTO
    assert analyse("What does the team do when a pipe bursts?").focus == HOWTO
