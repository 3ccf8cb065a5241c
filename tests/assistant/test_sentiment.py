"""Sentiment: label-token scoring with calibration on the real default model, files, bad input."""

from __future__ import annotations

import csv
import os
import threading
from pathlib import Path

import pytest

from assistant.tasks.sentiment import (
    MAX_SENTIMENT_FILE_BYTES,
    PromptConfig,
    SentimentAnalyzer,
    SentimentError,
    SentimentFinished,
    SentimentProgress,
    TaskInputError,
    export_csv,
    parse_examples,
    read_table,
)
from engine import model_pack

DATA = Path(os.environ.get("ASSISTANT_SHARED_DATA", Path(__file__).resolve().parents[2] / ".." / "shared" / "data"))


class FakeLibrary:
    """Routes classify the way the app's library does for the default pack (Gemma)."""

    def __init__(self, path: str):
        self.path = path

    def routes(self) -> dict:
        return {}

    def get(self, name: str):
        return self

    def for_task(self, task: str):
        return self


@pytest.fixture(scope="module")
def gemma(tmp_path_factory) -> str:
    return str(model_pack.join_parts(model_pack.GEMMA3, tmp_path_factory.getbasetemp() / "pack-models"))


@pytest.fixture
def analyzer(engine, gemma):
    return SentimentAnalyzer(engine, FakeLibrary(gemma))


# ----- files and bad input (no model) ---------------------------------------------------
def test_csv_with_broken_quoting_and_wrong_field_counts_keeps_good_rows(tmp_path):
    path = tmp_path / "reviews.csv"
    path.write_text('id,text\n1,"Great phone, love it"\n2,"broken "quote" here\n3,Terrible battery\n'
                    '4,too,many,fields\n5,"Fine overall"\n', encoding="utf-8")
    table = read_table(path)
    texts = table.texts("text")
    # Row numbers are the file's line numbers (the header is line 1).
    assert texts == [(2, "Great phone, love it"), (4, "Terrible battery"), (6, "Fine overall")]
    reasons = {r.row: r.error for r in table.bad_rows}
    assert set(reasons) == {3, 5}
    assert "unreadable" in reasons[3] and "fields" in reasons[5]


def test_missing_column_and_other_bad_files_have_clear_messages(tmp_path):
    path = tmp_path / "data.tsv"
    path.write_text("comment\tscore\nnice\t5\n", encoding="utf-8")
    with pytest.raises(SentimentError, match="no column 'text'.*comment, score"):
        read_table(path).texts("text")
    assert read_table(path).texts(None) == [(2, "nice")], "a column named 'comment' is found without --column"
    big = tmp_path / "big.csv"
    with open(big, "wb") as handle:
        handle.write(b"text\n" + b"a fine review\n" * (5 * 1024 * 1024 // 14))
    with pytest.raises(TaskInputError, match="MB"):
        read_table(big)
    binary = tmp_path / "x.csv"
    binary.write_bytes(os.urandom(2048) + b"\x00")
    with pytest.raises(TaskInputError, match="binary"):
        read_table(binary)
    empty = tmp_path / "empty.csv"
    empty.write_text("", encoding="utf-8")
    with pytest.raises(SentimentError, match="empty"):
        read_table(empty)
    assert MAX_SENTIMENT_FILE_BYTES < 5 * 1024 * 1024


def test_plain_text_file_is_one_text_per_line(tmp_path):
    path = tmp_path / "lines.txt"
    path.write_text("first line\n\nsecond line\n", encoding="utf-8")
    assert read_table(path).texts(None) == [(1, "first line"), (3, "second line")]


def test_user_examples_file(tmp_path):
    path = tmp_path / "mine.csv"
    path.write_text("text,label\nLoved the pasta,1\nCold soup,negative\nmeh,maybe\n", encoding="utf-8")
    assert parse_examples(path) == [("Loved the pasta", "positive"), ("Cold soup", "negative")]


def test_prompt_file_labels_and_examples():
    config = PromptConfig.load()
    assert set(config.labels) == {"positive", "negative"}
    assert len(config.examples) >= 8 and {label for _, label in config.examples} == {"positive", "negative"}
    assert 0.5 < config.neutral_below < 1.0


# ----- real model -----------------------------------------------------------------------
def test_clear_sentences_get_the_right_label_with_high_confidence(analyzer):
    positive = analyzer.classify_one("This is the best film I have seen all year, the acting is superb and I loved it.")
    negative = analyzer.classify_one("Awful. The food was cold, the staff were rude and I will never go back.")
    assert positive.label == "positive" and positive.confidence > 0.8
    assert negative.label == "negative" and negative.confidence > 0.8


def test_empty_text_is_a_clear_error(analyzer):
    with pytest.raises(SentimentError, match="no text"):
        analyzer.classify_one("   ")


def test_batch_of_200_shared_lines_is_accurate_and_reports_bad_rows(analyzer, tmp_path):
    with open(DATA / "sentiment" / "uci_sentiment_labelled.tsv", encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))
    sample = rows[::4][:: max(1, len(rows[::4]) // 200)][:200]  # the development split, all three sources
    assert len(sample) == 200
    items = [(i + 1, r["text"]) for i, r in enumerate(sample)] + [(201, "   ")]
    progress = []
    final = None
    for event in analyzer.classify_stream(items):
        if isinstance(event, SentimentProgress):
            progress.append(event.done)
        elif isinstance(event, SentimentFinished):
            final = event
    assert progress and progress[-1] == 200
    assert [r.row for r in final.bad_rows] == [201] and final.bad_rows[0].error == "empty text"
    correct = sum(1 for r, row in zip(final.results, sample)
                  if (r.positive >= 0.5) == (row["label"] == "1"))
    assert correct / 200 >= 0.85
    out = tmp_path / "out.csv"
    export_csv(out, final.results, final.bad_rows)
    written = list(csv.DictReader(open(out, encoding="utf-8")))
    assert len(written) == 201 and written[-1]["error"] == "empty text"
    assert {w["label"] for w in written[:200]} <= {"positive", "negative", "neutral"}


def test_cancelled_batch_keeps_what_it_has_done(analyzer):
    items = [(i + 1, f"Review {i}: the service was {'great' if i % 2 else 'slow'} and the room was clean.")
             for i in range(600)]
    cancel = threading.Event()
    final = None
    for event in analyzer.classify_stream(items, cancel=cancel):
        if isinstance(event, SentimentProgress):
            cancel.set()
        elif isinstance(event, SentimentFinished):
            final = event
    assert final.cancelled
    assert 0 < len(final.results) < 600
    assert [r.row for r in final.results] == list(range(1, len(final.results) + 1))
