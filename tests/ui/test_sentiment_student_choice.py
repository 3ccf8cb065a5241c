"""The Sentiment pane's model choice: the language model or a saved sentiment student."""

from __future__ import annotations

import numpy as np
import pytest

from assistant.documents import engine_embedder
from assistant.sentiment import SentimentAnalyzer
from assistant.sentiment_student import SentimentStudent, StudentAnalyzer, embedder_identity, fit_logistic, students_dir
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


@pytest.fixture
def student_path(services):
    embed = engine_embedder(services)
    vectors = embed([t for t, _ in LABELLED])
    weights, bias = fit_logistic(vectors, np.array([y for _, y in LABELLED]), l2=1e-3)
    minilm = ensure_gguf(model_pack.locate(model_pack.MINILM, services.paths.models_dir), services.paths.models_dir)
    student = SentimentStudent(weights, bias, 0.0, embedder_identity(minilm, vectors.shape[1]),
                               {"data": "8 hand-labelled sentences"})
    return student.save(students_dir(services.paths.models_dir) / "reviews.json")


def test_pane_offers_students_and_uses_the_chosen_one(qtbot, services, student_path):
    pane = SentimentPane(services)
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
