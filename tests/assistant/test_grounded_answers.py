"""Answers the app stands behind (assistant/documents/answers.py), with the real MiniLM through
the session's engine: the extractive answer is a sentence of the sources with its citation (from
any retrieved passage, the question's terms and the document's marked terms counting beside the
cosine), a model reply that contradicts it is hidden, an unanswerable question gets "I couldn't
find this", boilerplate passages leave the sources unless they are all that matched."""

from __future__ import annotations

from pathlib import Path

import pytest

from assistant.chat.events import ReplyDone
from assistant.chat.session import ChatSession
from assistant.chat.sources import MODEL_AGREES, shown_answer, with_verdict
from assistant.documents.answers import (
    NOT_FOUND,
    best_answer,
    candidates,
    choose_answer,
    drop_boilerplate,
    is_boilerplate,
    form,
    judge_reply,
    names,
    passage_sentences,
    terms,
    unsupported_facts,
)
from assistant.documents.collections import Documents, default_counter
from assistant.documents.grounded import GroundedChat
from assistant.documents.retrieval import Retriever, Scope
from assistant.documents.text import clean_inline
from assistant.store import Store
from tests.keyring_for_tests import TEST_DATABASE_KEY

MANUAL = """# Kestrel K2 manual

## Cleaning

Wipe the steam wand after every use. Descale the machine every 200 cups, or when the orange
descale light flashes. The water filter should be replaced every two months.

## Error codes

E1 means the water tank is empty. E3 means the machine is overheating; unplug it and let it
cool down for 30 minutes.
"""
#: A few sections of PEP 484 as a user might keep them (reST, its own markup).
PEP = """PEP 484 -- Type Hints
====================

Type aliases
------------

Type aliases are defined by simple variable assignments::

  Url = str

  def retry(url: Url, retry_count: int) -> None: ...

Note that we recommend capitalizing alias names, since they represent
user-defined types, which (like user-defined classes) are typically
spelled that way.

The ``Any`` type
----------------

A special kind of type is ``Any``.  Every type is consistent with
``Any``.  It can be considered a type that has all values and all methods.
Note that ``Any`` and builtin type ``object`` are completely different.

When the type of a value is ``object``, the type checker will reject
almost all operations on it, and assigning it to a variable (or using
it as a return value) of a more specialized type is a type error.

Union types
-----------

Since accepting a small, limited set of expected types for a single
argument is common, there is a new special factory called ``Union``.
"""
LEGAL = """# Legal notice

Copyright (c) 2023 Kestrel Home Appliances Ltd. All rights reserved.
No part of this manual may be reproduced without the prior written permission of the publisher.
Kestrel is a registered trademark of Kestrel Home Appliances Ltd.
"""
LINKS = """# Further reading

- https://www.example.com/kestrel/k2/faq
- https://www.example.com/kestrel/k2/videos
- https://www.example.com/kestrel/descaling
"""


def _indexed(tmp_path, embed, collections: dict) -> tuple:
    """An encrypted store with each collection's files (name -> text) written and indexed."""
    store = Store(tmp_path / "db.sqlite3", key=TEST_DATABASE_KEY)
    documents = Documents(store, embed, default_counter())
    for collection, files in collections.items():
        (tmp_path / collection).mkdir()
        for name, text in files.items():
            (tmp_path / collection / name).write_text(text, encoding="utf-8")
        list(documents.add_paths([tmp_path / collection], collection))
    return store, documents


@pytest.fixture()
def manual(tmp_path, embed, engine, smollm2_path):
    """A manual collection and a legal-only collection indexed with the session's engine."""
    store, documents = _indexed(tmp_path, embed, {"manual": {"k2.md": MANUAL, "legal.md": LEGAL, "links.md": LINKS},
                                                  "legal": {"legal.md": LEGAL}})
    chat = GroundedChat(Retriever(store, embed), engine, smollm2_path, context_tokens=2048, reply_tokens=64)
    yield chat, {name: documents.collection_id(name) for name in ("manual", "legal")}
    store.close()


def test_the_answer_is_a_sentence_of_the_sources_with_its_citation(manual, embed):
    chat, ids = manual
    prepared = chat.prepare("How often should the machine be descaled?", Scope(collections=[ids["manual"]]))
    quote = prepared.quote
    assert quote is not None and "every 200 cups" in quote.text
    source = prepared.sources[quote.number - 1]
    assert source.chunk_id == quote.chunk_id and source.path.endswith("k2.md")
    assert quote.text in passage_sentences(source.passage)  # a whole sentence of that passage, as written
    assert source.location == "Kestrel K2 manual > Cleaning"
    # The best-scoring sentence for another question, whatever the threshold says of it.
    sources = chat.prepare("What does error E3 mean?", Scope(collections=[ids["manual"]])).sources
    error = best_answer(candidates("What does error E3 mean?", sources, embed), threshold=0.0)
    assert error is not None and "overheating" in error.text


@pytest.fixture()
def pep(tmp_path, embed, engine, smollm2_path):
    """A collection holding the PEP excerpt, indexed with the session's engine."""
    store, _documents = _indexed(tmp_path, embed, {"peps": {"pep-0484.rst": PEP}})
    yield GroundedChat(Retriever(store, embed), engine, smollm2_path, context_tokens=2048, reply_tokens=64)
    store.close()


def test_the_pep_question_gets_the_sentence_that_answers_from_any_passage(pep):
    prepared = pep.prepare("What does PEP 484 say about the Any type?")
    quote = prepared.quote
    assert quote is not None, "the first sources hold the answer: the app must not say it does not know"
    # A sentence of the section on Any, as written there, that says something of Any.
    source = prepared.sources[quote.number - 1]
    assert clean_inline(source.location).endswith("The Any type") and quote.text in passage_sentences(source.passage)
    assert "Any" in quote.text and "Union" not in quote.text
    aliases = pep.prepare("How are type aliases defined?").quote
    assert aliases is not None and "simple variable assignments" in aliases.text


def test_a_question_the_documents_do_not_answer_gets_i_couldnt_find_this(pep, embed):
    for question in ("When will Python 4.0 be released?",  # a number no source holds
                     "How much memory does an Any value use compared to a dataclass?"):  # its subject is not there
        prepared = pep.prepare(question)
        assert prepared.sources and prepared.quote is None, question
        sources = [{"number": s.number, "chunk_id": s.chunk_id, "path": s.path, "file": Path(s.path).name,
                    "location": s.location, "passage": s.passage} for s in prepared.sources]
        assert shown_answer(sources)["text"] == NOT_FOUND


def test_what_a_question_asks_about_and_what_a_sentence_is():
    assert terms("What does error E3 mean?") == {"error", "e3"}  # "mean" says nothing; E3 is one term
    assert terms("When will Python 4.0 be released?") == {"python", "releas", "4.0"}
    assert names("What time does the museum in Porto open?") == {"porto"}
    assert names("When will Python 4.0 be released?") == {"python", "4.0"}
    assert form("E3 means the machine is overheating.") == 1.0
    assert form("x: TypeAlias = int  # type alias") < 1.0  # a line of code
    assert form("What does this mean?") < 1.0
    assert form("Here is how to do this using the class-based syntax:") < 1.0  # it only introduces
    assert form("Forget about ClassVar altogether.", "Rejected/Postponed Proposals") < 1.0


def test_an_unanswerable_question_gets_i_dont_know(manual, embed):
    chat, ids = manual
    prepared = chat.prepare("What voltage does the machine need in the United States?", Scope(collections=[ids["manual"]]))
    assert prepared.sources and prepared.quote is None
    assert choose_answer("Who won the football world cup in 1954?", prepared.sources, embed) is None
    sources = [{"number": s.number, "chunk_id": s.chunk_id, "path": s.path, "file": Path(s.path).name,
                "location": s.location, "passage": s.passage} for s in prepared.sources]
    shown = shown_answer(sources)
    assert shown["found"] is False and shown["text"] == NOT_FOUND == "I couldn't find this in your documents."


def test_a_contradicting_model_answer_is_hidden_and_an_agreeing_one_shown(embed):
    sentence = "E3 means the machine is overheating; unplug it and let it cool down for 30 minutes."
    known = "What does error E3 mean?\n" + MANUAL
    agreeing = judge_reply("Error E3 means the machine is overheating [1].", sentence, known, embed)
    assert agreeing.agrees, agreeing
    # A number the sources never state, a name they never mention: hidden whatever the cosine.
    wrong_number = judge_reply("E3 means the machine is overheating; let it cool for 90 minutes.", sentence, known, embed)
    assert not wrong_number.agrees and wrong_number.unsupported == ("90",)
    wrong_name = judge_reply("E3 means you should call Siemens support.", sentence, known, embed)
    assert not wrong_name.agrees and "Siemens" in wrong_name.unsupported
    unrelated = judge_reply("The steam wand makes the milk foamy.", sentence, known, embed)
    assert not unrelated.agrees and unrelated.cosine is not None and not unrelated.unsupported
    assert not judge_reply("I don't know from the sources.", sentence, known, embed).agrees
    assert not judge_reply("It means overheating.", None, known, embed).agrees  # nothing to agree with
    assert unsupported_facts("Descale every 200 cups, as Kestrel says.", known) == []


def test_the_session_keeps_the_verdict_and_hides_what_does_not_agree(services, tmp_path):
    documents, _retriever = services.documents_core()
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "k2.md").write_text(MANUAL, encoding="utf-8")
    list(documents.add_paths([tmp_path / "docs"]))
    session = ChatSession(services, persist=False, documents={"collections": None, "only": False})
    events = list(session.turn("How often should the machine be descaled?"))
    prepared, done = events[0], events[-1]
    assert isinstance(done, ReplyDone)
    assert "agrees" not in next(s for s in prepared.sources if s.get("quote"))  # not judged before the reply
    quoted = next(s for s in done.sources if s.get("quote"))
    assert "every 200 cups" in quoted["quote"]
    known = "How often should the machine be descaled?\n" + "\n".join(s["passage"] for s in done.sources)
    _d, retriever = services.documents_core()
    expected = judge_reply(done.message.text, quoted["quote"], known, retriever.embed).agrees
    assert quoted["agrees"] is expected and done.message.metrics[MODEL_AGREES] is expected
    shown = shown_answer(done.sources)
    assert shown["checked"] and shown["agrees"] is expected and shown["file"] == "k2.md"
    assert shown_answer(with_verdict(done.sources, False))["agrees"] is False


def test_boilerplate_is_told_by_its_structure():
    assert is_boilerplate(LEGAL)
    assert is_boilerplate(LINKS)
    assert is_boilerplate(".. [1] mypy\n   http://mypy-lang.org/\n.. [2] Scala Union Types\n   https://example.org/")
    assert is_boilerplate("This document has been placed in the public domain.", "PEP 484 > Copyright")
    assert is_boilerplate("Thanks to Mark Mendoza and Ran Benita for their comments.", "Acknowledgements")
    assert not is_boilerplate(MANUAL)
    assert not is_boilerplate("The hotel is Casa Amora (see www.example.org for the map), near the metro.\n"
                              "Check-in is from 15:00, so we leave the bags at reception first.\n"
                              "Breakfast is served until 10:30 in the garden.")
    assert not is_boilerplate("Support for ``@typing.final`` was added in Python 3.8.", "Specification")


def test_boilerplate_passages_leave_the_sources_unless_they_are_the_only_match(manual):
    chat, ids = manual
    prepared = chat.prepare("Who holds the copyright of the manual and where are further links?",
                            Scope(collections=[ids["manual"]]))
    assert prepared.sources and all(source.path.endswith("k2.md") for source in prepared.sources)
    only = chat.prepare("Who holds the copyright of the manual?", Scope(collections=[ids["legal"]]))
    assert only.sources and only.sources[0].path.endswith("legal.md")
    assert drop_boilerplate([LEGAL, LINKS], text=lambda passage: (passage, "")) == [LEGAL, LINKS]
    assert drop_boilerplate([LEGAL, MANUAL], text=lambda passage: (passage, "")) == [MANUAL]
