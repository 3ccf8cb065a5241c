"""Study: cards from real documents through the real embedding model, FSRS reviews in the
store, typed-answer checking, Anki and CSV decks in and out, and clear errors."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import zipfile
from datetime import datetime, timezone
from pathlib import Path

import pytest
from fsrs import Card as FsrsCard
from fsrs import Rating

from assistant.errors import StudyError
from assistant.study.answers import check_answer
from assistant.study.cards import BLANK, check, normalise
from assistant.study.decks import Decks, scheduler
from assistant.study.exchange import MAX_IMPORT_BYTES, export_apkg, export_csv, import_csv
from assistant.study.sources import propose_for
from assistant.documents.text import paragraphs, sentences

ROOT = Path(__file__).resolve().parents[2]

NOTES = """# Photosynthesis notes

Photosynthesis is the process by which green plants turn light, water and carbon dioxide into sugar and oxygen.
Chlorophyll is the green pigment that absorbs the light used in photosynthesis.
The light-dependent reactions take place in the thylakoid membranes of the chloroplast.
The Calvin cycle uses the energy stored in ATP to fix carbon dioxide into sugar.
Stomata are the small pores on leaves through which carbon dioxide enters the plant.
A plant kept in the dark cannot carry out photosynthesis and slowly uses up its stored sugar.

## Respiration

Cellular respiration releases the energy stored in sugar inside the mitochondria of every living cell.
Unlike photosynthesis, cellular respiration goes on day and night in the mitochondria.
"""

NOTES_FR = """# Notes de biologie

La photosynthèse est le processus par lequel les plantes vertes transforment la lumière en sucre et en oxygène.
La chlorophylle est le pigment vert qui absorbe la lumière utilisée par la photosynthèse des plantes.
Les stomates sont les petits pores des feuilles par lesquels le dioxyde de carbone entre dans la plante.
La respiration cellulaire libère l'énergie du sucre dans les mitochondries de chaque cellule vivante.
Les mitochondries sont les centrales énergétiques de la cellule et produisent la plus grande partie de son énergie.
"""


def add_documents(services, folder: Path, files: dict[str, str], collection: str) -> int:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / name).write_text(text, encoding="utf-8")
    documents, _retriever = services.documents_core()
    list(documents.add_paths([folder], collection))
    return documents.collection_id(collection)


def test_cards_come_from_the_document_and_cite_it(services, tmp_path):
    collection = add_documents(services, tmp_path / "notes", {"biology.md": NOTES}, "biology")
    proposal = propose_for(services, [collection])
    assert proposal.kept, [why for _c, why in proposal.dropped]
    kinds = {card.kind for card in proposal.kept}
    assert "cloze" in kinds
    for card in proposal.kept:
        source = card.source
        assert source["file"] == "biology.md" and source["chunk_id"] is not None
        assert normalise(card.back) in normalise(source["sentence"]), card  # extractive: the answer is in the source
        assert source["sentence"] in NOTES.replace("\n", " ")
        assert check(card) is None and card.language == "en"
        if card.kind == "cloze":
            assert BLANK in card.front and card.front.replace(BLANK, card.back) == source["sentence"]
        if card.kind == "choice":
            assert card.back in card.choices and len(set(card.choices)) == 4
    # The source opens as chat sources do: its chunk is the passage that holds the sentence.
    from assistant.chat.sources import open_source

    card = proposal.kept[0]
    passage = open_source(services, card.source["chunk_id"])
    assert normalise(card.source["sentence"]) in normalise(passage["passage"])


def test_cards_are_in_the_documents_language(services, tmp_path):
    collection = add_documents(services, tmp_path / "notes-fr", {"biologie.md": NOTES_FR}, "biologie")
    proposal = propose_for(services, [collection])
    assert proposal.kept
    assert {card.language for card in proposal.kept} == {"fr"}
    questions = [card.front for card in proposal.kept if card.kind == "qa"]
    assert all(q.startswith("Qu'est-ce que") for q in questions)


def test_a_card_whose_answer_is_not_in_its_sentence_is_dropped():
    from assistant.study.cards import Card

    source = {"sentence": "Stomata are the small pores on leaves.", "file": "b.md", "location": "", "chunk_id": 1, "path": "b.md"}
    invented = Card("qa", "What are stomata?", "breathing holes of animals", source, "en")
    assert check(invented) == "the answer is not in the source sentence"
    stop_word = Card("cloze", f"Stomata are {BLANK} small pores on leaves.", "the", source, "en")
    assert check(stop_word) == "the blank is a stop word"
    good = Card("cloze", f"{BLANK} are the small pores on leaves.", "Stomata", source, "en")
    assert check(good) is None


def test_sentences_that_lean_on_their_context_are_not_made_into_cards():
    from assistant.study.cards import reads_alone

    leaning = [
        "Another proposal we considered was defining new operators on a domain of function types.",
        "Finally, note that a type variable tuple may not be used as the type of keyword arguments.",
        "In fact, forbidding instantiation of parameterized types is what the typing module does today.",
        "We do not allow this; type unions may not appear within the parameters of a tuple.",
        "Expressions whose type is a subtype of an argument type are also accepted for that argument.",
        "The deprecated functionality may eventually be removed from the typing module in a later release.",
        "An early version of this PEP discussed matters beyond generics in standard collections.",
        "As alluded to above_ , the issue is name collisions between positional parameters.",
    ]
    for sentence in leaning:
        assert reads_alone(sentence, "en") is not None, sentence
    assert reads_alone("Type checkers should infer a final attribute that is initialized in a class body as "
                       "being a class variable.", "en") is None


def test_a_blank_that_is_part_of_a_longer_term_is_dropped():
    from assistant.study.cards import Card, document_nouns

    sentence = "Type variable tuples can be used anywhere a normal TypeVar can be used in a function."
    source = {"sentence": sentence, "file": "p.rst", "location": "", "chunk_id": 1, "path": "p.rst"}
    nouns = document_nouns(["A tuple of types is packed into a type variable.", sentence])
    fragment = Card("cloze", sentence.replace("Type variable", BLANK, 1), "Type variable", source, "en")
    assert check(fragment, nouns) == "the blank is part of a longer term"
    version = "The annotations are evaluated lazily from Python 3.10 onwards in every module of a program."
    source = dict(source, sentence=version)
    assert check(Card("cloze", version.replace("Python", BLANK), "Python", source, "en")) == \
        "the blank is part of a longer term"
    subject = "Type checkers proposes to check the annotations of every function in a module."
    source = dict(source, sentence=subject)
    assert check(Card("cloze", subject.replace("Type checkers", BLANK), "Type checkers", source, "en"), nouns) is None


def test_cards_leave_out_example_names_and_choices_are_terms_of_the_same_kind():
    import numpy as np

    from assistant.study.cards import SourceDocument, example_names, propose

    examples = """For example::

    class Employee:
        pass
    UserId = int

The alias Employee stands for a record of a person who works for the company.
"""
    kinds = {
        "Return type": "The return type of a function is checked against each value the function gives back.\n"
                       "A declared return type is shown by the editor beside the function signature.\n"
                       "The return type may be omitted when the function body returns nothing.\n",
        "Argument type": "The argument type of a parameter is checked against every value passed to the function.\n"
                         "An argument type given as a string is evaluated when annotations are resolved.\n"
                         "The argument type may be a protocol that the passed value must satisfy.\n",
        "Union type": "A union type accepts the values of any of its member types in an annotation.\n"
                      "The union type of two classes is written with a vertical bar between the classes.\n"
                      "A union type with a single member is simplified to that member by checkers.\n",
        "Generic type": "A generic type has type parameters that are filled in where the class is used.\n"
                        "The generic type of a container names the kind of items the container holds.\n"
                        "A generic type without parameters is treated as having parameters of any kind.\n",
    }
    text = examples + "".join(kinds.values())
    assert {"Employee", "UserId"} <= example_names(text, kinds)
    assert "int" not in example_names(text, kinds)  # a builtin, not an example's name
    sections = [(examples, "Examples", 1)] + [(body, heading, i + 2) for i, (heading, body) in enumerate(kinds.items())]
    document = SourceDocument("/x/types.rst", "Types", sections)

    def embed(texts):  # a stand-in embedding: hashed bag of words, normalised
        vectors = np.zeros((len(texts), 64), dtype=np.float32)
        for row, t in enumerate(texts):
            for word in t.lower().split():
                vectors[row, sum(map(ord, word)) % 64] += 1
        return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-9)

    proposal = propose([document], embed)
    cards = proposal.kept + [card for card, _why in proposal.dropped]
    assert cards and not any("Employee" in card.source["sentence"] for card in cards)
    choices = [card for card in proposal.kept if card.kind == "choice"]
    assert choices, [(c.kind, c.front) for c in proposal.kept]
    for card in choices:  # wrong options share the answer's head word: other types, not other things
        assert len(set(card.choices)) == 4 and card.back in card.choices
        assert all(option.lower().split()[-1] == card.back.lower().split()[-1] for option in card.choices), card.choices


def test_markup_is_left_out_of_the_sentences():
    rst = ("Use ``TypedDict`` from :pep:`589` for `dictionaries <https://docs.python.org>`_ with fixed keys::\n\n"
           "    Movie = TypedDict('Movie', {'name': str})\n\n"
           ".. note::\n\n   A directive body.\n\n- First item of a list.\n- Second item, e.g. this one.\n")
    found = [s for p in paragraphs(rst) for s in sentences(p.text)]
    assert found == ["Use TypedDict from PEP 589 for dictionaries with fixed keys:", "First item of a list.",
                     "Second item, e.g. this one."]


def test_fsrs_schedules_the_reviews_as_the_library_does(services):
    now = [datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc).timestamp()]
    decks = Decks(services.store, clock=lambda: now[0])
    from assistant.study.cards import Card

    deck = decks.create("Biology")
    source = {"sentence": "Chlorophyll is the green pigment.", "file": "b.md"}
    assert decks.add_cards(deck, [Card("cloze", f"{BLANK} is the green pigment.", "Chlorophyll", source, "en")]) == 1
    [card] = decks.due(deck)
    expected = FsrsCard.from_dict(card.state)
    reference = scheduler()
    for rating in (3, 3, 1, 3, 4, 2):
        moment = datetime.fromtimestamp(now[0], timezone.utc)
        expected, _log = reference.review_card(expected, Rating(rating), moment)
        reviewed = decks.review(card.id, rating)
        assert reviewed.due == pytest.approx(expected.due.timestamp())
        now[0] = reviewed.due  # the next review comes when it is due
    with pytest.raises(StudyError, match="rated 1"):
        decks.review(card.id, 7)


def test_the_daily_count_and_the_streak_follow_the_days_reviewed(services):
    from assistant.study.cards import Card

    day = 24 * 3600
    start = datetime(2026, 3, 2, 12, 0).timestamp()  # local noon: one calendar day each step
    now = [start]
    decks = Decks(services.store, clock=lambda: now[0])
    deck = decks.create("Streak")
    decks.add_cards(deck, [Card("qa", f"Q{i}?", f"A{i}", {"sentence": f"A{i}"}, "en") for i in range(3)])
    card_ids = [c.id for c in decks.cards(deck)]
    for offset, reviews in ((0, 2), (1, 1), (2, 1)):
        now[0] = start + offset * day
        for card_id in card_ids[:reviews]:
            decks.review(card_id, 3)
    stats = decks.stats(deck)
    assert (stats.reviewed_today, stats.streak_days, stats.cards) == (1, 3, 3)
    assert [n for _d, n in stats.per_day[-3:]] == [2, 1, 1]
    now[0] = start + 3 * day  # the next day, nothing reviewed yet: the streak still counts to yesterday
    assert decks.stats(deck).streak_days == 3
    now[0] = start + 5 * day  # a day missed: the streak is over
    assert decks.stats(deck).streak_days == 0


CHILD = """
import os, signal, sys
sys.path.insert(0, sys.argv[1])
from assistant.store import Store
from assistant.study.decks import Decks
decks = Decks(Store(sys.argv[2], key=bytes.fromhex(sys.argv[4])))
for n, card in enumerate(decks.due(int(sys.argv[3]))):
    if n == 3:
        os.kill(os.getpid(), signal.SIGKILL)  # mid-session, between two answers
    decks.review(card.id, 3)
"""


def test_a_review_session_killed_mid_way_keeps_every_answered_card(services):
    from assistant.study.cards import Card

    decks = Decks(services.store)
    deck = decks.create("Kill test")
    cards = [Card("qa", f"Question {i}?", f"answer {i}", {"sentence": f"answer {i}"}, "en") for i in range(6)]
    decks.add_cards(deck, cards)
    child = subprocess.run([sys.executable, "-c", CHILD, str(ROOT), str(services.store.path), str(deck),
                            services.store.key.hex()],
                           capture_output=True, text=True, timeout=120)
    assert child.returncode == -signal.SIGKILL, child.stderr
    with services.store.reading() as conn:
        reviews = conn.execute("SELECT COUNT(*) FROM study_reviews").fetchone()[0]
    assert reviews == 3
    assert len(decks.due(deck)) == 3  # the three answered cards moved on, the others are still due


def test_typed_answers_are_checked_by_form_and_meaning(services):
    _documents, retriever = services.documents_core()
    embed = retriever.embed
    assert check_answer("a variable annotation", "variable annotations", embed).right
    assert check_answer("a variable annotation", "Variable annotation").how == "exact"
    assert check_answer("photosynthesis", "photosynthesys").how == "near"
    assert not check_answer("a variable annotation", "a function", embed).right
    assert not check_answer("carbon dioxide", "", embed).right


def test_short_forms_of_an_answer_are_accepted_and_other_terms_are_not():
    # Without embeddings: these are decided by form alone.
    for expected, typed in (("the standard library", "stdlib"), ("United Nations", "UN"),
                            ("the Final qualifier", "Final"), ("stub files", "stubs"), ("Union types", "unions")):
        verdict = check_answer(expected, typed)
        assert verdict.right and verdict.how == "short form", (expected, typed)
    for expected, typed in (("type aliases", "type"), ("the typing module", "the os module"),
                            ("United Nations", "European Union"), ("United Nations", "US"),
                            ("the standard library", "stdio"), ("the Final qualifier", "qualifier")):
        assert not check_answer(expected, typed).right, (expected, typed)


def test_an_exported_apkg_is_a_valid_anki_package_with_sources(services, tmp_path):
    from assistant.study.cards import Card

    decks = Decks(services.store)
    deck = decks.create("Biology")
    source = {"sentence": "Stomata are the small pores on leaves.", "file": "biology.md", "location": "Leaves"}
    decks.add_cards(deck, [Card("cloze", f"{BLANK} are the small pores on leaves.", "Stomata", source, "en"),
                           Card("choice", f"{BLANK} are the small pores on leaves.", "Stomata", source, "en",
                                choices=["Stomata", "Xylem", "Phloem", "Roots"])])
    target = tmp_path / "out" / "biology.apkg"
    assert export_apkg(decks, deck, target) == 2
    with zipfile.ZipFile(target) as package:
        assert "collection.anki2" in package.namelist()
        package.extract("collection.anki2", tmp_path)
    conn = sqlite3.connect(tmp_path / "collection.anki2")
    try:
        notes = [row[0].split("\x1f") for row in conn.execute("SELECT flds FROM notes")]
        decks_json = json.loads(conn.execute("SELECT decks FROM col").fetchone()[0])
    finally:
        conn.close()
    assert len(notes) == 2 and all(len(fields) == 3 for fields in notes)
    assert {fields[1] for fields in notes} == {"Stomata"}
    assert all("biology.md" in fields[2] and "small pores" in fields[2] for fields in notes)
    assert any("Xylem" in fields[0] for fields in notes)
    assert "Biology" in {d["name"] for d in decks_json.values()}


def test_csv_decks_go_out_and_come_back_and_plain_two_column_files_import(services, tmp_path):
    from assistant.study.cards import Card

    decks = Decks(services.store)
    deck = decks.create("Out")
    decks.add_cards(deck, [Card("qa", "What are stomata?", "the small pores on leaves",
                                {"sentence": "Stomata are the small pores on leaves.", "file": "b.md"}, "en")])
    export_csv(decks, deck, tmp_path / "out.csv")
    assert import_csv(decks, tmp_path / "out.csv", "Back in") == (1, 0)
    [back] = decks.cards(decks.deck_id("Back in"))
    assert back.front == "What are stomata?" and back.source["sentence"] == "Stomata are the small pores on leaves."
    plain = tmp_path / "anki-export.txt"
    plain.write_text("Capital of France\tParis\nCapital of Spain\tMadrid\n", encoding="utf-8")
    assert import_csv(decks, plain, "Capitals") == (2, 0)
    assert import_csv(decks, plain, "Capitals") == (0, 2)  # nothing twice


def test_bad_input_gets_a_clear_message(services, tmp_path):
    decks = Decks(services.store)
    with pytest.raises(StudyError, match="nothing to study"):
        propose_for(services)  # no documents at all
    empty = tmp_path / "empty.csv"
    empty.write_text("\n\n", encoding="utf-8")
    with pytest.raises(StudyError, match="holds no cards"):
        import_csv(decks, empty, "x")
    huge = tmp_path / "huge.csv"
    with open(huge, "wb") as handle:
        handle.truncate(MAX_IMPORT_BYTES + 1)
    with pytest.raises(StudyError, match="at most"):
        import_csv(decks, huge, "x")
    binary = tmp_path / "binary.csv"
    binary.write_bytes(b"\xe0\x1a2\x04\xff\xfe" * 10)
    with pytest.raises(StudyError, match="not a text file"):
        import_csv(decks, binary, "x")
    with pytest.raises(StudyError, match="no deck called"):
        decks.deck_id("missing")
    # A document with no sentence that reads on its own makes no card, and says so in the CLI.
    add_documents(services, tmp_path / "codeonly", {"code.md": "```\nx = 1\n```\n\n| a | b |\n"}, "code")
    result = subprocess.run([sys.executable, "-m", "ui.launcher", "study", "propose", "--collection", "code", "--yes"],
                            cwd=ROOT, capture_output=True, text=True, timeout=300, env=dict(os.environ))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "No card could be made" in result.stderr or "nothing to study" in result.stderr
