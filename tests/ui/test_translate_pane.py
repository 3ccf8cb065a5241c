"""The Translate pane with real services and the real default translation model (Gemma)."""

from __future__ import annotations

from pathlib import Path

import pytest

from PySide6.QtCore import Qt

from assistant.tasks.translation import translated_file_name
from ui.file_dialogs import start_folder
from ui.translate_pane import TRANSLATE_DEBOUNCE_MS, TranslatePane


@pytest.fixture
def pane(qtbot, services, jobs):
    widget = TranslatePane(services, jobs)
    qtbot.addWidget(widget)
    widget.show()
    yield widget
    assert widget.shutdown()


def test_translates_as_you_type_with_detected_language(qtbot, pane):
    # Not a few-shot example of the prompt (tests/assistant/test_translation.py checks the list).
    pane.source_edit.setPlainText("Where is the nearest bakery?")  # the debounce timer starts
    qtbot.waitUntil(lambda: pane.last_result is not None, timeout=180000)
    assert "boulangerie" in pane.output.toPlainText().lower()
    assert "English (detected)" in pane.status.text()


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


def test_tab_without_a_suggestion_moves_on_and_types_no_tab(qtbot, pane):
    pane.source_edit.suggestions_enabled = False
    pane.activateWindow()
    pane.source_edit.setFocus()
    qtbot.waitUntil(pane.source_edit.hasFocus, timeout=5000)
    qtbot.keyClicks(pane.source_edit, "Hello")
    qtbot.keyClick(pane.source_edit, Qt.Key.Key_Tab)
    assert pane.source_edit.toPlainText() == "Hello"
    assert not pane.source_edit.hasFocus()
    pane.stop()


def _translated(qtbot, pane, text: str, source: str = "en", target: str = "fr"):
    pane.source_combo.setCurrentIndex(pane.source_combo.findData(source))
    pane.target_combo.setCurrentIndex(pane.target_combo.findData(target))
    pane.source_edit.setPlainText(text)
    with qtbot.waitSignal(pane.sig_translation_finished, timeout=180000) as finished:
        pane.translate()
    return finished.args[0]


def test_a_new_translation_marks_the_old_output_outdated_until_it_finishes(qtbot, pane):
    first = _translated(qtbot, pane, "Where is the train station?")
    assert not first.cancelled and not pane.output_outdated and pane.output.styleSheet() == ""
    old_output = pane.output.toPlainText()
    pane.source_edit.setPlainText("Thank you very much for your help.")
    seen_while_running = []
    pane.sig_translation_finished.connect(lambda _e: seen_while_running.append(pane.output_outdated))
    with qtbot.waitSignal(pane.sig_translation_finished, timeout=180000):
        pane.translate()
        assert pane.busy and pane.output_outdated, "the previous output is marked while the new one runs"
        assert pane.outdated_label.isVisible() and "Out of date" in pane.outdated_label.text()
        assert pane.output.toPlainText() == old_output and "color" in pane.output.styleSheet()
    assert seen_while_running == [False], "the marker goes when the new translation is in"
    assert not pane.outdated_label.isVisible() and pane.output.styleSheet() == ""
    assert "merci" in pane.output.toPlainText().lower()


def test_swap_exchanges_languages_and_texts_and_copy_puts_the_result_on_the_clipboard(qtbot, pane):
    from PySide6.QtGui import QGuiApplication

    _translated(qtbot, pane, "Where is the train station?", source="auto", target="fr")
    assert pane.source_combo.currentData() == "auto" and pane.last_result.source == "en"
    original, translation = pane.source_edit.toPlainText(), pane.output.toPlainText()
    assert pane.copy_button.isEnabled()
    qtbot.mouseClick(pane.copy_button, Qt.MouseButton.LeftButton)
    assert QGuiApplication.clipboard().text() == translation
    qtbot.mouseClick(pane.swap_button, Qt.MouseButton.LeftButton)
    assert pane.source_combo.currentData() == "fr" and pane.target_combo.currentData() == "en"
    assert pane.source_edit.toPlainText() == translation and pane.output.toPlainText() == original
    assert not pane.busy and not pane.output_outdated
    qtbot.wait(TRANSLATE_DEBOUNCE_MS + 200)
    assert not pane.busy, "a swap does not translate again what is already each other's translation"
    pane.swap()  # and back
    assert (pane.source_combo.currentData(), pane.target_combo.currentData()) == ("en", "fr")
    assert (pane.source_edit.toPlainText(), pane.output.toPlainText()) == (original, translation)


def test_a_file_is_translated_line_by_line_with_progress_full_only_at_the_end(qtbot, pane, tmp_path):
    lines = ["Where is the train station?", "Thank you very much.", "The cat is black."]
    source = tmp_path / "notes.txt"
    source.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = tmp_path / "notes.fr.txt"
    assert translated_file_name(source, "fr") == out
    pane.source_combo.setCurrentIndex(pane.source_combo.findData("auto"))
    pane.target_combo.setCurrentIndex(pane.target_combo.findData("fr"))
    seen = []
    pane.file_progress.valueChanged.connect(
        lambda value: seen.append((value, pane.file_progress.maximum(), out.exists())))
    with qtbot.waitSignal(pane.sig_file_translated, timeout=300000) as done:
        pane.translate_file(source, out)
        assert pane.file_busy and pane.file_cancel_button.isVisible() and not pane.file_button.isEnabled()
    assert done.args[0] == out and pane.written_file == out
    written = out.read_text(encoding="utf-8").splitlines()
    assert len(written) == len(lines) and all(a != b for a, b in zip(written, lines))
    assert "gare" in written[0].lower() and "merci" in written[1].lower() and "chat" in written[2].lower()
    assert pane.file_progress.maximum() == len(lines) + 1 and pane.file_progress.value() == len(lines) + 1
    full = [i for i, (value, maximum, _exists) in enumerate(seen) if maximum and value == maximum]
    assert full == [len(seen) - 1], f"full only once, at the end: {seen}"
    assert seen[-1][2], "the file is written when the bar is full"
    assert not pane.file_busy and pane.file_button.isEnabled() and not pane.file_cancel_button.isVisible()
    assert "saved as" in pane.file_status.text()


def test_a_file_that_is_not_text_is_a_message_in_words(qtbot, pane, tmp_path):
    blob = tmp_path / "photo.txt"
    blob.write_bytes(b"\xe0\x1a2\x04" + bytes(range(1, 32)) * 40)
    with qtbot.waitSignal(pane.sig_file_translated, timeout=60000) as done:
        pane.translate_file(blob, tmp_path / "photo.fr.txt")
    assert done.args[0] is None
    assert pane.file_status.text() == "photo.txt is not UTF-8 text (it looks like a binary file)."
    assert not (tmp_path / "photo.fr.txt").exists() and pane.file_button.isEnabled()


def test_file_dialogs_start_in_home_then_beside_the_chosen_file(qtbot, pane, tmp_path, monkeypatch):
    asked = []
    monkeypatch.setattr("ui.translate_pane.QFileDialog.getOpenFileName",
                        lambda *a: (asked.append(("open", a[2])), (str(tmp_path / "story.md"), ""))[1])
    monkeypatch.setattr("ui.translate_pane.QFileDialog.getSaveFileName",
                        lambda *a: (asked.append(("save", a[2])), ("", ""))[1])
    assert start_folder(pane.input_file) == str(Path.home())
    pane.target_combo.setCurrentIndex(pane.target_combo.findData("de"))
    pane._choose_file()
    assert asked == [("open", str(Path.home())), ("save", str(tmp_path / "story.de.md"))]
    pane.input_file = tmp_path / "story.md"  # a file was translated: the next dialog starts beside it
    assert start_folder(pane.input_file) == str(tmp_path)
    pane._choose_file()
    assert asked[2] == ("open", str(tmp_path))
