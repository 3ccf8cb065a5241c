"""Translation: segmentation, language detection, bad input, and real Gemma 3 270M output."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from assistant.tasks import langdetect
from assistant.tasks.translation import (
    MAX_TRANSLATE_FILE_BYTES,
    SegmentDone,
    TaskInputError,
    TranslationError,
    TranslationFinished,
    TranslationMemory,
    Translator,
    assemble,
    read_text_file,
    resolve_language,
    segment,
)
from engine import model_pack


class FakeLibrary:
    def __init__(self, path: str):
        self.path = path

    def for_task(self, task: str):
        return self


@pytest.fixture(scope="module")
def gemma(tmp_path_factory) -> str:
    # A folder shared by the session: the 250 MB join happens once, later calls reuse it.
    return str(model_pack.join_parts(model_pack.GEMMA3, tmp_path_factory.getbasetemp() / "pack-models"))


@pytest.fixture
def translator(engine, gemma):
    return Translator(engine, FakeLibrary(gemma))


# ----- no model -------------------------------------------------------------------------
LAYOUT = "Title line\n\n  Mr. Smith arrived at noon. He was late!  Then he left...\n- a list item\n\n3.14 is pi.\n"


def test_segmentation_keeps_every_character_and_splits_sentences():
    pieces = segment(LAYOUT)
    assert "".join(p.text for p in pieces) == LAYOUT
    segments = [p.text for p in pieces if p.translate]
    assert segments == ["Title line", "Mr. Smith arrived at noon.", "He was late!", "Then he left...",
                        "- a list item", "3.14 is pi."]
    translated = {i: p.text.upper() for i, p in enumerate(pieces) if p.translate}
    assert assemble(pieces, translated) == LAYOUT.replace("Title line", "TITLE LINE").replace(
        "Mr. Smith arrived at noon.", "MR. SMITH ARRIVED AT NOON.").replace("He was late!", "HE WAS LATE!").replace(
        "Then he left...", "THEN HE LEFT...").replace("- a list item", "- A LIST ITEM").replace("3.14 is pi.", "3.14 IS PI.")


def test_very_long_sentences_are_cut_and_numbers_pass_through():
    long_sentence = ", ".join(["the river runs under the old stone bridge"] * 30) + "."
    pieces = segment(long_sentence + "\n42\n")
    assert all(len(p.text) <= 400 for p in pieces)
    assert "".join(p.text for p in pieces) == long_sentence + "\n42\n"
    assert [p.text for p in pieces if p.text == "42"] and not [p for p in pieces if p.text == "42" and p.translate]


@pytest.mark.parametrize("text", [
    # French typography: the closing » after a space, and the attribution after it, stay with the quote.
    "« Nous ne céderons pas ! » a lancé la maire devant les grévistes.",
    "« Le chantier sera fini en mars. », a assuré M. Lefèvre.",
    "« Êtes-vous certain ? » demande Mme Roux à son voisin.",
    "\"Le budget ne suffira pas\", a-t-il ajouté.",
    # Titles and abbreviations that end in a full stop.
    "Dr. Patel moved the meeting to Friday afternoon.",
    "Das Treffen mit Dr. Braun findet z.B. nächste Woche statt.",
    "¿Vendrás mañana? preguntó la Sra. Ortega.",
    "Prices rose in the north (wheat, barley, etc.) and fell elsewhere.",
])
def test_a_quote_or_abbreviation_does_not_cut_its_sentence(text):
    # Sentences that are not among the prompt's few-shot examples
    # (resources/prompts/translation_examples.json).
    paragraph = f"{text} La séance a repris à midi."
    pieces = segment(paragraph)
    assert "".join(p.text for p in pieces) == paragraph
    assert [p.text for p in pieces if p.translate] == [text, "La séance a repris à midi."]


def test_a_quote_that_ends_a_sentence_ends_it():
    text = "Il a dit : « Je pars. » Puis il a fermé la porte. Elle a répondu \"Enfin !\" Tout le monde a ri."
    assert [p.text for p in segment(text) if p.translate] == [
        "Il a dit : « Je pars. »", "Puis il a fermé la porte.", "Elle a répondu \"Enfin !\"", "Tout le monde a ri."]


@pytest.mark.parametrize("text, code", [
    # Not the prompt's few-shot sentences: short and longer lines in each supported language.
    ("The museum is closed on Mondays.", "en"),
    ("My neighbour lent me his ladder last weekend, so I could finally clean the gutters.", "en"),
    ("Le musée est fermé le lundi.", "fr"),
    ("Mon voisin m'a prêté son échelle le week-end dernier pour nettoyer les gouttières.", "fr"),
    ("Das Museum ist montags geschlossen.", "de"),
    ("Mein Nachbar hat mir am letzten Wochenende seine Leiter geliehen, damit ich die Dachrinne säubern kann.", "de"),
    ("El museo cierra los lunes.", "es"),
    ("Mi vecino me prestó su escalera el fin de semana pasado para limpiar los canalones.", "es"),
    # Other languages are recognised, to be refused by name.
    ("Il museo è chiuso il lunedì, ma domani possiamo andarci insieme.", "it"),
    ("O museu fecha às segundas-feiras.", "pt"),
    ("Я не знаю, где вокзал.", "ru"),
])
def test_language_detection(text, code):
    found = langdetect.detect(text)
    assert found.language == code
    assert found.supported == (code in langdetect.SUPPORTED)


@pytest.mark.parametrize("text", ["12345 67 89", "!!! ...", "   "])
def test_language_detection_says_when_nothing_tells(text):
    assert langdetect.detect(text) == langdetect.Detection(None, 0.0, False)


def test_language_names_and_unsupported_pairs():
    assert resolve_language("French", "target") == "fr"
    assert resolve_language("deu", "target") == "de"
    with pytest.raises(TranslationError, match="Italian is not supported"):
        resolve_language("it", "target")
    with pytest.raises(TranslationError, match="--to"):
        resolve_language("auto", "target")


def test_bad_input_gets_clear_messages(tmp_path, translator):
    with pytest.raises(TranslationError, match="no text"):
        list(translator.translate_stream("   \n ", "fr"))
    with pytest.raises(TranslationError, match="already in French"):
        list(translator.translate_stream("Bonjour, je suis là et je ne sais pas pourquoi.", "fr"))
    with pytest.raises(TranslationError, match="Italian"):
        list(translator.translate_stream("Non so dove sia la stazione, mi puoi aiutare?", "en"))
    with pytest.raises(TranslationError, match="Could not tell"):
        list(translator.translate_stream("12345 67 89", "fr"))
    big = tmp_path / "big.txt"
    big.write_bytes(b"a" * (5 * 1024 * 1024))
    with pytest.raises(TaskInputError, match="5.2 MB"):
        list(translator.translate_file(big, "fr", None))
    binary = tmp_path / "image.txt"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    with pytest.raises(TaskInputError, match=r"^image.txt is not UTF-8 text \(it looks like a PNG image\)\.$"):
        read_text_file(binary, MAX_TRANSLATE_FILE_BYTES)
    noise = tmp_path / "noise.txt"  # invalid UTF-8 and no text in any 8-bit encoding: named, not shown as bytes
    noise.write_bytes(b"\xe0\x1a2\x04" + bytes(range(1, 32)) * 40)
    with pytest.raises(TaskInputError, match=r"^noise.txt is not UTF-8 text \(it looks like a binary file\)\.$"):
        read_text_file(noise, MAX_TRANSLATE_FILE_BYTES)
    legacy = tmp_path / "legacy.txt"  # an older 8-bit encoding that reads as text is still accepted
    legacy.write_bytes("Café crème, très bien.".encode("cp1252"))
    assert read_text_file(legacy, MAX_TRANSLATE_FILE_BYTES) == "Café crème, très bien."
    with pytest.raises(TaskInputError, match="does not exist"):
        read_text_file(tmp_path / "missing.txt", MAX_TRANSLATE_FILE_BYTES)
    with pytest.raises(TaskInputError, match="folder"):
        read_text_file(tmp_path, MAX_TRANSLATE_FILE_BYTES)


def test_translation_memory_finds_neighbours_nearest_last(tmp_path):
    path = tmp_path / "memory.tsv"
    path.write_text("eng\tfra\nThe cat sleeps.\tLe chat dort.\nThe dog barks loudly.\tLe chien aboie fort.\n"
                    "I like green apples.\tJ'aime les pommes vertes.\n", encoding="utf-8")
    memory = TranslationMemory()
    assert memory.add_file(path) == 3
    found = memory.nearest("My dog barks at the cat.", "en", "fr", k=2)
    assert found[-1] == ("The dog barks loudly.", "Le chien aboie fort.")
    assert memory.nearest("Le chien aboie.", "fr", "en", k=1) == [("Le chien aboie fort.", "The dog barks loudly.")]
    bad = tmp_path / "bad.tsv"
    bad.write_text("a\tb\nx\ty\n", encoding="utf-8")
    with pytest.raises(TranslationError, match="unknown language columns"):
        memory.add_file(bad)


# ----- real model -----------------------------------------------------------------------
def test_french_and_german_translations_contain_key_words(translator):
    # Sentences that are not among the prompt's few-shot examples
    # (resources/prompts/translation_examples.json): a copied example would prove nothing.
    french = translator.translate("Where is the nearest bakery?", "fr", source="en")
    assert "boulangerie" in french.text.lower()
    german = translator.translate("My brother works in a hospital.", "de")
    assert german.source == "en"
    assert "bruder" in german.text.lower() and "krankenhaus" in german.text.lower()


def test_the_sentences_above_are_not_few_shot_examples():
    import json

    import resources

    path = Path(resources.__file__).resolve().parent / "prompts" / "translation_examples.json"
    examples = json.dumps(json.loads(path.read_text(encoding="utf-8")))
    for sentence in ("Where is the nearest bakery?", "My brother works in a hospital.",
                     "Je voudrais un café, s'il vous plaît."):
        assert json.dumps(sentence)[1:-1] not in examples


def test_to_english_with_auto_detection(translator):
    result = translator.translate("Je voudrais un café, s'il vous plaît.", "en")
    assert result.source == "fr"
    assert "coffee" in result.text.lower()


def test_layout_is_kept_and_segments_stream(translator):
    text = "Good morning.\n\nWhere is the museum? It is closed today."
    events = list(translator.translate_stream(text, "es", source="en"))
    final = events[-1]
    assert isinstance(final, TranslationFinished) and not final.cancelled
    assert final.text.count("\n") == 2 and "\n\n" in final.text
    assert sum(isinstance(e, SegmentDone) for e in events) == 3
    assert "dónde" in final.text.lower()


def test_file_translation_and_cancel_keeps_finished_segments(tmp_path, translator):
    source = tmp_path / "in.txt"
    sentences = [f"This is sentence number {i} about the weather in the mountains." for i in range(40)]
    source.write_text("Hello.\n" + "\n".join(sentences) + "\n", encoding="utf-8")
    out = tmp_path / "out.txt"
    cancel = threading.Event()
    final = None
    for event in translator.translate_file(source, "fr", out, source="en", cancel=cancel):
        if isinstance(event, SegmentDone):
            cancel.set()
        if isinstance(event, TranslationFinished):
            final = event
    assert final.cancelled and 0 < final.segments_done < final.segments_total
    written = out.read_text(encoding="utf-8")
    assert written.count("\n") == source.read_text(encoding="utf-8").count("\n")
    assert sentences[-1] in written, "untranslated segments stay in the original"
