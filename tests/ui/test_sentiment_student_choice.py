"""The Sentiment pane's model choice: the language model or a saved sentiment student."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from PySide6.QtCore import Qt

from assistant.documents.collections import engine_embedder
from assistant.tasks.sentiment import SentimentAnalyzer
from assistant.tasks.sentiment_student import SentimentStudent, StudentAnalyzer, embedder_identity, fit_logistic, students_dir
from engine import model_pack
from engine.convert_bert import ensure_gguf
from ui.sentiment_pane import SentimentPane

# Hand-labelled texts: a student fitted on them through the real MiniLM embeddings. (Students
# taught by the language model are covered in tests/assistant/test_sentiment_student.py; here
# only the pane's wiring matters, so the slow teacher is left out.)
LABELLED = [
    ("I loved this film, wonderful acting.", 1.0), ("Great phone, works perfectly.", 1.0),
    ("The food was delicious and the staff friendly.", 1.0), ("Best purchase I have made this year.", 1.0),
    ("A terrible, boring movie.", 0.0), ("The battery died after a day, awful.", 0.0),
    ("Cold food and rude service.", 0.0), ("Complete waste of money.", 0.0),
]


def _head_student(services, neutral_below: float) -> SentimentStudent:
    """A head fitted on LABELLED through the library's MiniLM (seconds, no training process)."""
    embed = engine_embedder(services)
    vectors = embed([t for t, _ in LABELLED])
    weights, bias = fit_logistic(vectors, np.array([y for _, y in LABELLED]), l2=1e-3)
    minilm = ensure_gguf(model_pack.locate(model_pack.MINILM, services.paths.models_dir), services.paths.models_dir)
    return SentimentStudent(weights, bias, neutral_below, embedder_identity(minilm, vectors.shape[1]),
                            {"data": "8 hand-labelled sentences"})


@pytest.fixture
def student_path(services):
    return _head_student(services, 0.0).save(students_dir(services.paths.models_dir) / "reviews.json")


def test_pane_offers_students_and_uses_the_chosen_one(qtbot, services, jobs, student_path):
    pane = SentimentPane(services, jobs)
    qtbot.addWidget(pane)
    try:
        combo = pane.model_combo
        assert combo.accessibleName() == "Sentiment model"
        assert [combo.itemText(i) for i in range(combo.count())] == [
            "Language model (most accurate)", "Student: reviews (fast)"]
        assert isinstance(pane.analyzer, SentimentAnalyzer)
        combo.setCurrentIndex(1)
        assert isinstance(pane.analyzer, StudentAnalyzer)
        pane.text_edit.setText("What a wonderful, delightful film.")
        with qtbot.waitSignal(pane.sig_text_analysed, timeout=180000) as blocker:
            pane.analyse_text()
        assert blocker.args[0].label == "positive"
        combo.setCurrentIndex(0)
        assert isinstance(pane.analyzer, SentimentAnalyzer)
    finally:
        assert pane.shutdown()


def test_teaching_a_student_from_the_open_file_in_the_window(qtbot, services, jobs, tmp_path):
    """A person opens a file of reviews, presses "Teach a fast student", watches the progress,
    and gets a student chosen in the model list that then analyses a sentence (real teacher:
    the library's sentiment model; real fine-tuning in a training process)."""
    import csv

    from tests.assistant.test_sentiment import DATA

    with open(DATA / "sentiment" / "uci_sentiment_labelled.tsv", encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))
    reviews = tmp_path / "my reviews.csv"
    with open(reviews, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["comment"])  # no labels: the student learns from the language model
        writer.writerows([r["text"]] for r in rows[7:3000:60])  # 50 lines over the three sources
    pane = SentimentPane(services, jobs)
    qtbot.addWidget(pane)
    try:
        assert not pane.teach_button.isEnabled()
        pane.load_file(reviews)
        qtbot.waitUntil(lambda: pane.teach_button.isEnabled(), timeout=60000)
        assert pane.column_combo.currentText() == "comment"
        # Every status the pane shows, as it shows it: polling could miss one that a queued
        # event replaces within the same turn of the event loop (the last labelling count).
        stages = []
        show = pane.status.setText
        pane.status.setText = lambda text: (stages.append(text), show(text))[-1]
        qtbot.mouseClick(pane.teach_button, Qt.MouseButton.LeftButton)
        assert not pane.teach_button.isEnabled()
        qtbot.waitUntil(lambda: pane.model_combo.count() == 2, timeout=1800000)
        assert any("labelling the texts" in s for s in stages) and any("The student is learning" in s for s in stages), stages
        assert pane.model_combo.currentText() == "Student: my-reviews (fast)"
        assert "is ready and chosen above" in pane.status.text() and "agrees with the language model" in pane.status.text()
        assert isinstance(pane.analyzer, StudentAnalyzer)
        saved = students_dir(services.paths.models_dir)
        assert (saved / "my-reviews.json").is_file() and (saved / "my-reviews.encoder.gguf").is_file()
        assert not [p for p in saved.iterdir() if p.name.startswith(".")], "the scratch folder is gone"
        pane.text_edit.setText("Absolutely wonderful, I loved every minute of it.")
        with qtbot.waitSignal(pane.sig_text_analysed, timeout=180000) as blocker:
            pane.analyse_text()
        assert blocker.args[0].label in ("positive", "negative", "neutral") and blocker.args[0].confidence > 0
        assert pane.teach_button.isEnabled()
    finally:
        assert pane.shutdown()


def test_the_automatic_default_comes_first_and_shows_rows_in_file_order(qtbot, services, jobs, tmp_path):
    """Where set-up built the default student, the pane starts on "Automatic"; a file is answered
    partly by the student and partly by the language model, and the table ends in file order.
    (A head on the library's MiniLM stands in for the fine-tuned default student here; the built
    one is covered in tests/assistant/test_sentiment_default.py.)"""
    from assistant.tasks.sentiment_default import ROUTE_CONFIDENCE, RoutedAnalyzer, default_student_path

    student = _head_student(services, 0.6)
    student.save(default_student_path(services.paths.models_dir))
    embed = engine_embedder(services)
    reviews = tmp_path / "reviews.csv"
    texts = ["I loved it, wonderful from start to finish.", "It arrived on Tuesday.", "Awful. Just awful.",
             "The second half was slower than the first.", "Great value and lovely staff."]
    positive = student.positive(np.asarray(embed(texts), dtype=np.float64))
    unsure = int(np.sum(np.maximum(positive, 1 - positive) < ROUTE_CONFIDENCE))
    with open(reviews, "w", encoding="utf-8", newline="") as handle:
        csv.writer(handle).writerows([["text"]] + [[t] for t in texts])
    pane = SentimentPane(services, jobs)
    qtbot.addWidget(pane)
    try:
        combo = pane.model_combo
        assert combo.itemText(0) == "Automatic: fast, the language model when unsure" and combo.currentIndex() == 0
        assert combo.itemText(1) == "Language model (most accurate)"
        assert isinstance(pane.analyzer, RoutedAnalyzer)
        pane.load_file(reviews)
        qtbot.waitUntil(lambda: pane.run_button.isEnabled(), timeout=60000)
        with qtbot.waitSignal(pane.sig_batch_finished, timeout=600000) as blocker:
            pane.run_batch()
        assert blocker.args[0].metrics["routed"] == unsure  # the student's unsure rows went to the language model
        assert [pane.results_table.item(row, 0).text() for row in range(pane.results_table.rowCount())] == \
            ["2", "3", "4", "5", "6"]  # the file's line numbers (the header is line 1)
        combo.setCurrentIndex(1)
        assert isinstance(pane.analyzer, SentimentAnalyzer)
        combo.setCurrentIndex(0)
        assert isinstance(pane.analyzer, RoutedAnalyzer)
    finally:
        assert pane.shutdown()
