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
    out = tmp_path / "out.csv"
    pane.export(out)
    qtbot.waitUntil(lambda: out.exists(), timeout=30000)
    rows = list(csv.DictReader(open(out, encoding="utf-8")))
    assert len(rows) == len(finished.results) + len(finished.bad_rows)


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
