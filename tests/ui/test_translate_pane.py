"""The Translate pane with real services and the real default translation model (Gemma)."""

from __future__ import annotations

import pytest

from PySide6.QtCore import Qt

from ui.translate_pane import TranslatePane


@pytest.fixture
def pane(qtbot, services, jobs):
    widget = TranslatePane(services, jobs)
    qtbot.addWidget(widget)
    widget.show()
    yield widget
    assert widget.shutdown()


def test_translates_as_you_type_with_detected_language(qtbot, pane):
    pane.source_edit.setPlainText("Where is the train station?")  # the debounce timer starts
    qtbot.waitUntil(lambda: pane.last_result is not None, timeout=180000)
    assert "gare" in pane.output.toPlainText().lower()
    assert "English (detected)" in pane.status.text() or "English" in pane.status.text()


def test_unsupported_language_is_a_clear_message(qtbot, pane):
    pane.source_edit.setPlainText("Non so dove sia la stazione, mi puoi aiutare?")
    pane.translate()
    qtbot.waitUntil(lambda: "Italian" in pane.status.text(), timeout=60000)
    assert not pane.busy or qtbot.waitUntil(lambda: not pane.busy, timeout=60000) is None


def test_inline_suggestion_arrives_and_tab_accepts_it(qtbot, pane):
    pane.target_combo.setCurrentIndex(pane.target_combo.findData("de"))
    pane.source_edit.setFocus()
    qtbot.keyClicks(pane.source_edit, "Good morning, my name is")
    qtbot.waitUntil(lambda: bool(pane.source_edit.suggestion), timeout=120000)
    suggestion = pane.source_edit.suggestion
    qtbot.keyClick(pane.source_edit, Qt.Key.Key_Tab)
    assert pane.source_edit.toPlainText() == "Good morning, my name is" + suggestion
    qtbot.keyClicks(pane.source_edit, ".")
    assert pane.source_edit.suggestion == "", "typing on dismisses"
    pane.stop()
