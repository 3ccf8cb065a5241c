"""The Study page in the real window: cards proposed from real documents, kept in a deck, a
review with the keyboard (Space shows the answer, 3 rates Good), the stats, an export."""

from __future__ import annotations

import sqlite3
import zipfile

from PySide6.QtCore import Qt

from tests.assistant.test_study import NOTES


def test_propose_keep_review_with_keys_and_export(qtbot, window, services, tmp_path, monkeypatch):
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "biology.md").write_text(NOTES, encoding="utf-8")
    documents, _retriever = services.documents_core()
    list(documents.add_paths([folder], "biology"))
    window.show_page("study")
    pane = window.study
    pane.refresh()
    qtbot.waitUntil(lambda: pane.propose_button.isEnabled(), timeout=30000)
    assert not pane.empty_label.isVisible()
    pane.collection_combo.setCurrentIndex(pane.collection_combo.findText("biology (1 file)"))
    with qtbot.waitSignal(pane.sig_cards_proposed, timeout=120000) as proposed:
        qtbot.mouseClick(pane.propose_button, Qt.MouseButton.LeftButton)
    count = proposed.args[0]
    assert count > 0 and pane.proposal_list.count() == count
    assert pane.deck_name.text() == "biology"
    pane.proposal_list.item(0).setCheckState(Qt.CheckState.Unchecked)  # dropped by the user
    qtbot.mouseClick(pane.keep_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: pane.deck_combo.count() == 1 and "biology" in pane.deck_combo.currentText(), timeout=30000)
    assert f"({count - 1} cards, {count - 1} due)" in pane.deck_combo.currentText()

    with qtbot.waitSignal(pane.sig_review_shown, timeout=30000) as shown:
        qtbot.mouseClick(pane.review_button, Qt.MouseButton.LeftButton)
    first = shown.args[0]
    assert pane.front_label.text().startswith(first.front)
    assert not any(button.isEnabled() for button in pane.rating_buttons)
    pane.rating_buttons[0].parentWidget().setFocus()
    qtbot.keyClick(pane.stack.currentWidget(), Qt.Key.Key_Space)
    assert pane.answer_shown and first.back in pane.answer_label.text() and "biology.md" in pane.source_label.text()
    with qtbot.waitSignal(pane.sig_review_shown, timeout=30000) as second:
        qtbot.keyClick(pane.stack.currentWidget(), Qt.Key.Key_3)
    assert second.args[0].id != first.id
    qtbot.waitUntil(lambda: "Today: 1 reviewed" in pane.stats_label.text(), timeout=30000)
    assert "streak 1 day" in pane.stats_label.text() and sum(pane.chart.counts) == 1
    # A typed answer is checked by meaning.
    pane.typed.setText(second.args[0].back.upper())
    qtbot.keyClick(pane.typed, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: "right" in pane.answer_label.text(), timeout=30000)

    target = tmp_path / "biology.apkg"
    monkeypatch.setattr("ui.study_pane.QFileDialog.getSaveFileName", lambda *a, **k: (str(target), ""))
    pane.end_review()
    qtbot.waitUntil(lambda: pane.export_button.isEnabled(), timeout=30000)
    qtbot.mouseClick(pane.export_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: target.exists() and "written" in pane.status.text(), timeout=30000)
    with zipfile.ZipFile(target) as package:
        package.extract("collection.anki2", tmp_path)
    conn = sqlite3.connect(tmp_path / "collection.anki2")
    try:
        assert conn.execute("SELECT COUNT(*) FROM notes").fetchone()[0] == count - 1
    finally:
        conn.close()
