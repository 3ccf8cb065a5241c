"""The Sentiment pane with real services and the real default model."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from ui.sentiment_pane import SentimentPane


@pytest.fixture
def pane(qtbot, services, jobs):
    widget = SentimentPane(services, jobs)
    qtbot.addWidget(widget)
    widget.show()
    yield widget
    assert widget.shutdown()


def test_one_text(qtbot, pane):
    pane.text_edit.setText("I loved this film, the cast is wonderful.")
    with qtbot.waitSignal(pane.sig_text_analysed, timeout=180000) as blocker:
        pane.analyse_text()
    assert blocker.args[0].label == "positive"
    assert pane.single_result.text().startswith("positive")


def test_file_with_a_bad_row_column_chooser_progress_table_chart_and_export(qtbot, pane, tmp_path):
    path = tmp_path / "reviews.csv"
    path.write_text('id,review\n1,"Great phone, love it"\n2,"broken "quote\n3,Terrible battery life\n4,\n',
                    encoding="utf-8")
    pane.load_file(path)
    qtbot.waitUntil(lambda: pane.run_button.isEnabled(), timeout=30000)
    assert pane.column_combo.currentText() == "review"
    with qtbot.waitSignal(pane.sig_batch_finished, timeout=180000) as blocker:
        pane.run_batch()
    finished = blocker.args[0]
    assert pane.results_table.rowCount() == 2
    assert pane.progress.value() == pane.progress.maximum()
    assert "skipped" in pane.status.text()
    assert sum(pane.chart.counts.values()) == 2
    labels = {pane.results_table.item(r, 1).text(): pane.results_table.item(r, 2).text() for r in range(2)}
    assert labels["Terrible battery life"] == "negative"
    # Rows are numbered once (by their line in the file) and the table fills its width.
    assert not pane.results_table.verticalHeader().isVisible()
    assert [pane.results_table.item(r, 0).text() for r in range(2)] == ["2", "4"]
    pane.resize(900, 600)
    qtbot.wait(50)
    header = pane.results_table.horizontalHeader()
    assert abs(header.length() - pane.results_table.viewport().width()) <= 2
    assert header.sectionSize(1) > header.sectionSize(0) + header.sectionSize(2) + header.sectionSize(3)
    out = tmp_path / "out.csv"
    pane.export(out)
    qtbot.waitUntil(lambda: out.exists(), timeout=30000)
    with open(out, encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle)
        header_row = next(reader)
        rows = list(reader)
    # The input's columns, in order, then the results; every line of the input, in order.
    assert header_row == ["id", "review", "label", "confidence", "positive", "error"]
    assert len(rows) == len(finished.results) + len(finished.bad_rows) == 4
    by_id = {row[0]: dict(zip(header_row, row)) for row in rows}
    assert by_id["1"]["review"] == "Great phone, love it" and by_id["1"]["label"] == "positive"
    assert by_id["3"]["review"] == "Terrible battery life" and by_id["3"]["label"] == "negative"
    result = next(r for r in finished.results if r.text == "Terrible battery life")
    assert by_id["3"]["confidence"] == f"{result.confidence:.4f}" and by_id["3"]["positive"] == f"{result.positive:.4f}"
    assert by_id["4"]["error"] == "empty text" and by_id["4"]["label"] == ""
    assert rows[1][:2] == ["", ""] and rows[1][5].startswith("unreadable row"), "the line that could not be read"
    assert [row[0] for row in rows] == ["1", "", "3", "4"]


def test_export_names_its_result_columns_apart_from_the_inputs_own(tmp_path):
    from assistant.tasks.sentiment import SentimentResult, export_csv, read_table

    source = tmp_path / "labelled.csv"
    source.write_text("text,label\nGood,1\nBad,0\n", encoding="utf-8")
    table = read_table(source)
    results = [SentimentResult(2, "Good", "positive", 0.9, 0.9), SentimentResult(3, "Bad", "negative", 0.8, 0.2)]
    out = tmp_path / "out.csv"
    export_csv(out, results, [], table)
    rows = list(csv.reader(open(out, encoding="utf-8", newline="")))
    assert rows[0] == ["text", "label", "sentiment_label", "confidence", "positive", "error"]
    assert rows[1:] == [["Good", "1", "positive", "0.9000", "0.9000", ""], ["Bad", "0", "negative", "0.8000", "0.2000", ""]]


def test_a_file_that_is_not_text_is_a_message_in_words(qtbot, pane, tmp_path):
    blob = tmp_path / "reviews.csv"
    blob.write_bytes(b"\xe0\x1a2\x04" + bytes(range(1, 32)) * 40)
    pane.load_file(blob)
    qtbot.waitUntil(lambda: "UTF-8" in pane.status.text(), timeout=30000)
    assert pane.status.text() == "reviews.csv is not UTF-8 text (it looks like a binary file)."


def test_missing_file_is_a_clear_message(qtbot, pane, tmp_path):
    pane.load_file(tmp_path / "nope.csv")
    qtbot.waitUntil(lambda: "does not exist" in pane.status.text(), timeout=30000)


def test_file_dialogs_start_where_the_users_files_are(qtbot, pane, tmp_path, monkeypatch):
    asked = []
    monkeypatch.setattr("ui.sentiment_pane.QFileDialog.getOpenFileName", lambda *a: (asked.append(a[2]), ("", ""))[1])
    monkeypatch.setattr("ui.sentiment_pane.QFileDialog.getSaveFileName", lambda *a: (asked.append(a[2]), ("", ""))[1])
    pane._choose_file()
    pane._choose_export()
    assert asked == [str(Path.home()), str(Path.home() / "sentiment.csv")]
    pane.path = tmp_path / "reviews.csv"  # a file was opened: its folder, and a name of its own
    pane._choose_file()
    pane._choose_export()
    assert asked[2:] == [str(tmp_path), str(tmp_path / "reviews-sentiment.csv")]
