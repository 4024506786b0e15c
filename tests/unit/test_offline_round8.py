"""Round 8 of the offline agent (issue 11): contractions, one word for one term, general names
for an organisation, and what a document says it is."""

from __future__ import annotations

from searchrun.agents.question import analyse
from searchrun.agents.scoring import View
from searchrun.agents.text import terms_of, words

from test_offline_round7 import _child, _corpus


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


def test_a_phrasal_verb_is_read_as_the_verb_it_means():
    from searchrun.agents.question import plain_verbs
    assert plain_verbs("Who looks after the billing platform?") == "Who maintain the billing platform?"
    assert plain_verbs("Who does Priya Nair answer to?") == "Who does Priya Nair report to?"
    assert plain_verbs("How long do we hang on to call recordings?") == "How long do we keep call recordings?"
    assert plain_verbs("Who do we ring when Quill goes wrong?") == "Who do we ring when Quill fail?"
    assert {t.surface for t in analyse("Who keeps an eye on the router checks?").terms} == {"monitor", "router", "checks"}


def test_a_reporting_link_says_who_the_boss_is():
    boss = next(t for t in analyse("Who is Ruth Lane's boss?").terms if t.surface == "boss")
    assert View("Tom Ridley", "person", "reports_to", "").strength(boss)[0] >= 0.8
    assert View("Tom Ridley", "person", "member_of", "").strength(boss)[0] == 0.0


def test_who_does_the_person_who_manages_it_report_to_is_answered_by_a_person():
    agent = _corpus({
        "office": {"title": "Cardiff Office", "type": "site", "content": "Our claims office in Cardiff.",
                   "relationships": {"managed_by": ["sian"]}},
        "sian": {"title": "Sian Morgan", "type": "person", "content": "Sian Morgan manages the Cardiff office.",
                 "relationships": {"reports_to": ["owen"]}},
        "owen": {"title": "Owen Pritchard", "type": "person", "content": "Owen Pritchard is chief operating officer."},
    })
    q = "Who does the person who manages the Cardiff office report to?"
    assert _child(agent, q, ["office", "sian", "owen"]).found


def test_the_person_a_who_question_names_is_not_its_answer():
    agent = _corpus({
        "priya": {"title": "Priya Nair", "type": "person", "content": "Priya Nair is a claims handler; she reports to Daniel.",
                  "relationships": {"reports_to": ["daniel"]}},
        "daniel": {"title": "Daniel Reyes", "type": "person", "content": "Daniel Reyes is head of motor claims."},
    })
    q = "Who does Priya Nair answer to?"
    seed = agent.traverse(q, "priya", 3, 5000)
    assert not seed.found and "names this document" in seed.reason
    assert _child(agent, q, ["priya", "daniel"]).found
    hits, _ = agent.simple_search("Who is Priya Nair?", 3, 5000)  # a lookup of her is still answered by her
    assert [h.doc_id for h in hits] == ["priya"]


def test_which_group_is_answered_by_a_team():
    q = analyse("Which group owns the rating engine?")
    assert View("Pricing Team", "team", "owned_by", "").focus_strength(q) == 1.0


def test_a_weak_seed_passes_on_what_the_document_linking_to_it_established():
    agent = _corpus({
        "runbook": {"title": "Ember rollback runbook", "type": "runbook",
                    "content": "How to roll back a rate release that produces wrong premiums.",
                    "relationships": {"applies_to": ["ember"]}},
        "ember": {"title": "Ember", "type": "system", "content": "Ember is the rating engine.",
                  "relationships": {"owned_by": ["pricing"]}},
        "pricing": {"title": "Pricing Team", "type": "team", "content": "The pricing team builds the rating models."},
    })
    q = "Which group owns the software that the Ember rollback runbook covers?"
    seed = agent.traverse(q, "ember", 3, 5000)  # a seed: no path of its own
    assert not seed.found and "rollback" in seed.note.split("open:")[0]
