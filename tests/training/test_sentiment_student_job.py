"""The "sentiment_student" training job refuses bad input before the encoder loads.

The full run (fine-tuning, the GGUF encoder through llama.cpp, the student in use) is
tested with the real teacher in tests/assistant/test_sentiment_student.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine import model_pack
from tests.training.jobs import run


def _job(tmp_path: Path, rows: list, encoder_dir: Path | None = None, **settings) -> Path:
    data = tmp_path / "labels.jsonl"
    data.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    encoder = encoder_dir or model_pack.locate(model_pack.MINILM, Path("/nonexistent"))
    job = {"kind": "sentiment_student", "encoder_dir": str(encoder), "data": str(data),
           "output_dir": str(tmp_path / "out"), "settings": settings}
    path = tmp_path / "job.json"
    path.write_text(json.dumps(job), encoding="utf-8")
    return path


def _error(job: Path) -> str:
    code, events, err = run(job)
    assert code == 2, err[-2000:]
    assert events[-1]["event"] == "error"
    message = events[-1]["message"]
    assert "\n" not in message and "Traceback" not in message
    return message


ROWS = [{"text": f"review number {i} was {'great' if i % 2 else 'awful'}", "positive": 0.9 if i % 2 else 0.1}
        for i in range(60)]


@pytest.mark.parametrize("rows, settings, expected", [
    ([{"text": "fine", "positive": 0.8}] * 100, {}, "at least 40 different non-empty texts"),
    (ROWS[:10] + ["{not json"], {}, "Line 11 of labels.jsonl is not a labelled text"),
    (ROWS, {"epochs": 0}, "at least one epoch"),
    (ROWS, {"learning_rat": 1e-4}, "Unknown sentiment student setting 'learning_rat'"),
])
def test_bad_data_and_settings_are_refused_clearly(tmp_path, rows, settings, expected):
    assert expected in _error(_job(tmp_path, rows, **settings))
    assert not (tmp_path / "out" / "encoder.gguf").exists()


def test_an_encoder_that_is_not_bert_is_refused(tmp_path):
    folder = tmp_path / "not-an-encoder"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "llama"}))
    assert "must be a BERT sentence encoder" in _error(_job(tmp_path, ROWS, encoder_dir=folder))
    assert "not a sentence encoder folder" in _error(_job(tmp_path, ROWS, encoder_dir=tmp_path / "missing"))


def test_missing_labels_are_refused(tmp_path):
    job = _job(tmp_path, ROWS)
    (tmp_path / "labels.jsonl").unlink()
    assert "label the texts first" in _error(job)
