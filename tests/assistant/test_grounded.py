"""Grounded answers: budgeted prompt, cited sources, "answer only from my documents"."""

from __future__ import annotations

from dataclasses import replace

import pytest

from assistant.chat.events import ReplyDone, Token, TurnPrepared
from assistant.chat.session import ChatSession
from assistant.documents.answers import best_answer, candidates, passage_sentences
from assistant.documents.collections import Documents, default_counter
from assistant.documents.grounded import (
    DONT_KNOW,
    GroundedChat,
    best_quote,
    cut_loop,
    drop_unknown_citations,
    format_quote,
    format_sources,
)
from assistant.documents.retrieval import Retriever
from assistant.store import Store
from tests.assistant import test_ingest as docfiles
from tests.keyring_for_tests import TEST_DATABASE_KEY


@pytest.fixture()
def chat(tmp_path, embed, engine, smollm2_path):  # noqa: F811
    store = Store(tmp_path / "db.sqlite3", key=TEST_DATABASE_KEY)
    documents = Documents(store, embed, default_counter())
    files = docfiles.write_all_good(tmp_path / "docs")
    (tmp_path / "docs" / "lighthouse.md").write_text(
        "# Lighthouse Log\n\n## Keeper\n\nThe keeper of the Skerry lighthouse is named Ingrid Falk. "
        "She lights the lamp at sunset.\n", encoding="utf-8")
    list(documents.add_paths([tmp_path / "docs"]))
    yield GroundedChat(Retriever(store, embed), engine, smollm2_path, context_tokens=2048, reply_tokens=64), files
    store.close()


@pytest.fixture()
def documented(services, tmp_path):
    """Real services whose documents hold the test files and a lighthouse log."""
    documents, _retriever = services.documents_core()
    docfiles.write_all_good(tmp_path / "docs")
    (tmp_path / "docs" / "lighthouse.md").write_text(
        "# Lighthouse Log\n\n## Keeper\n\nThe keeper of the Skerry lighthouse is named Ingrid Falk. "
        "She lights the lamp at sunset.\n", encoding="utf-8")
    list(documents.add_paths([tmp_path / "docs"]))
    return services


def _ask(services, question: str, only: bool = False) -> list:
    session = ChatSession(services, persist=False, documents={"collections": None, "only": only})
    return list(session.turn(question))


def test_answer_cites_the_document_it_used(documented):
    events = _ask(documented, "Who is the keeper of the Skerry lighthouse?")
    prepared, done = events[0], events[-1]
    assert isinstance(prepared, TurnPrepared) and isinstance(done, ReplyDone) and not prepared.refused
    top = prepared.sources[0]
    assert top["path"].endswith("lighthouse.md") and top["number"] == 1
    assert top["location"] == "Lighthouse Log > Keeper" and "Ingrid Falk" in top["passage"]
    assert "Ingrid" in done.message.text  # a 135M model copies a name it was given
    assert done.message.documents[0] == f"chunk:{top['chunk_id']}"
    assert 0 < prepared.budget["used"] <= prepared.budget["total"]
    assert "[1] lighthouse.md, Lighthouse Log > Keeper" in format_sources(list(prepared.sources))
    # The sentence that answers is quoted from the passage itself, with its source number.
    assert top["quote"] == "The keeper of the Skerry lighthouse is named Ingrid Falk."
    assert format_quote(list(prepared.sources)) == (
        "From your documents [1] (lighthouse.md, Lighthouse Log > Keeper): "
        "\u201cThe keeper of the Skerry lighthouse is named Ingrid Falk.\u201d")


def test_quote_picks_the_answering_line_of_a_list_and_nothing_when_unrelated(chat):
    grounded, _files = chat
    notes = ("# Moving house checklist\n\n"
             "- Book the removal van at least three weeks before the move: vans are scarce at the end of the month.\n"
             "- The spare keys are in the blue box in the kitchen drawer.\n"
             "- The new flat's internet is installed by the building on the 14th; the router stays in the hallway.\n")
    assert passage_sentences(notes)[1] == "The spare keys are in the blue box in the kitchen drawer."
    prepared = grounded.prepare("Who is the keeper of the Skerry lighthouse?")
    sources = [replace(prepared.sources[0], passage=notes)]
    embed = grounded.retriever.embed
    assert best_quote("Where are the spare keys?", sources, embed).text == passage_sentences(notes)[1]
    # Under the threshold chosen on the benchmark's development part the app may say it does not
    # know; the best-ranked line is still the one that answers.
    van = best_answer(candidates("How early do I book the van?", sources, embed), threshold=0.0)
    assert "three weeks" in van.text
    assert best_quote("What is the capital of Peru?", sources, embed) is None
    assert best_quote("Anything?", [replace(sources[0], passage="# Only a heading")], embed) is None


def test_citations_to_sources_that_do_not_exist_are_removed():
    assert drop_unknown_citations("Keys [1] are in the box [2] [5].", 2) == "Keys [1] are in the box [2]."
    assert drop_unknown_citations("See [0] and [3].", 2) == "See and."
    assert drop_unknown_citations("No marks here.", 0) == "No marks here."


def test_budget_limits_the_passages(chat):
    grounded, _files = chat
    small = grounded.prepare("Who is the keeper of the Skerry lighthouse?", budget_tokens=60)
    assert small.budget["total"] == 60 and small.budget["used"] <= 60
    assert len(small.sources) >= 1
    large = grounded.prepare("Who is the keeper of the Skerry lighthouse?")
    assert len(large.sources) > len(small.sources)
    # The instruction is the system message, the passages come with the question.
    instruction, asked = large.messages[0]["content"], large.messages[-1]["content"]
    assert "Cite the sources" in instruction and "Ingrid Falk" not in instruction
    assert asked.startswith("Sources:\n\n[1] ") and "Ingrid Falk" in asked
    assert asked.endswith("Question: Who is the keeper of the Skerry lighthouse?")


def test_only_documents_says_it_does_not_know(documented):
    events = _ask(documented, "What is the airspeed velocity of an unladen swallow?", only=True)
    prepared, done = events[0], events[-1]
    assert prepared.refused and prepared.sources == ()
    assert [e.text for e in events if isinstance(e, Token)] == [DONT_KNOW]
    assert isinstance(done, ReplyDone) and done.message.text == DONT_KNOW


def test_only_documents_still_asks_the_model_when_they_cover_the_question(chat):
    grounded, _files = chat
    covered = grounded.prepare("Who keeps the Skerry lighthouse?", only_documents=True)
    assert not covered.refuse and covered.sources[0].path.endswith("lighthouse.md")
    assert DONT_KNOW in covered.messages[0]["content"]


def test_a_reply_that_loops_is_cut_after_the_first_saying():
    looped = "The key is here. " + "The key to a moving checklist: " * 20 + "[26"
    assert cut_loop(looped) == "The key is here. The key to a moving checklist: …"
    ordinary = "Book the van three weeks ahead. Read the meters on the day; read them twice if unsure."
    assert cut_loop(ordinary) == ordinary
    assert cut_loop("ha ha ha") == "ha ha ha"  # short repeats are words, not a loop
