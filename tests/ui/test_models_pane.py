"""The Models page: library details, import by dialog and by drop, bad files, removal, routing."""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
from PySide6.QtGui import QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import QApplication, QMessageBox

from tests.engine.gguf_corpus import build_malformed_corpus, write_valid_gguf


@pytest.fixture
def pane(qtbot, window):
    window.show_page("models")
    qtbot.waitUntil(lambda: window.models.list.count() == 3, timeout=30000)
    return window.models


def _ids(services) -> set[str]:
    return {m.id for m in services.library.list()}


def test_the_library_shows_metadata_and_licence(qtbot, pane, services):
    for row in range(pane.list.count()):
        pane.list.setCurrentRow(row)
        model = pane.selected_model()
        assert pane.fields["id"].text() == model.id
        assert pane.fields["quantization"].text()
        assert pane.licence.toPlainText().strip()
        # The default pack cannot be removed.
        assert not pane.remove_button.isEnabled()
    gemma = next(r for r in range(pane.list.count()) if pane.list.item(r).data(Qt.ItemDataRole.UserRole) == "gemma-3-270m")
    pane.list.setCurrentRow(gemma)
    licence = pane.licence.toPlainText()
    assert licence.startswith("Gemma Terms of Use") and "Section 1: DEFINITIONS" in licence
    assert "Send feedback" not in licence and "Sign in" not in licence, "the terms, not the web page around them"
    assert pane.fields["architecture"].text() == "gemma3"


def _drop(pane, paths: list[Path]) -> None:
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(p)) for p in paths])
    enter = QDragEnterEvent(QPointF(10, 10), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                            Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(pane, enter)
    assert enter.isAccepted()
    drop = QDropEvent(QPointF(10, 10), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                      Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(pane, drop)
    assert drop.isAccepted()


def test_import_by_the_file_dialog(qtbot, pane, services, tmp_path):
    path = write_valid_gguf(tmp_path / "dialog-model.gguf", name="Dialog Model")
    dialog = pane.open_import_dialog()
    assert dialog.isVisible()
    dialog.setDirectory(str(tmp_path))
    dialog.selectFile(str(path))
    with qtbot.waitSignal(pane.sig_import_finished, timeout=30000) as done:
        dialog.accept()
    assert done.args == [1, 0]
    qtbot.waitUntil(lambda: pane.list.count() == 4, timeout=10000)
    assert "dialog-model" in _ids(services)
    assert pane.selected_model().id == "dialog-model"
    assert pane.fields["source"].text() == "Imported"
    assert pane.remove_button.isEnabled()
    # A new chat model shows up in the chat pane's model list too.
    qtbot.waitUntil(lambda: pane.window().chat.model_combo.findData("dialog-model") >= 0, timeout=10000)


def test_import_by_drag_and_drop(qtbot, pane, services, tmp_path):
    path = write_valid_gguf(tmp_path / "dropped.gguf", name="Dropped Model")
    with qtbot.waitSignal(pane.sig_import_finished, timeout=30000) as done:
        _drop(pane, [path])
    assert done.args == [1, 0]
    qtbot.waitUntil(lambda: pane.list.count() == 4, timeout=10000)
    assert "dropped-model" in _ids(services)


def _expect_one_dialog(qtbot, pane, services, paths, needle: str) -> None:
    before = _ids(services)
    with qtbot.waitSignal(pane.sig_import_finished, timeout=30000) as done:
        _drop(pane, paths)
    assert done.args == [0, 1]
    box = pane.active_dialog
    assert isinstance(box, QMessageBox) and box.isVisible()
    assert needle.lower() in box.text().lower()
    assert "Traceback" not in box.text()
    assert _ids(services) == before
    assert len([w for w in pane.findChildren(QMessageBox) if w.isVisible()]) == 1
    box.accept()
    qtbot.waitUntil(lambda: pane.active_dialog is None, timeout=5000)


def test_a_file_that_is_not_gguf_gives_one_clear_dialog(qtbot, pane, services, tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("just some notes, not a model\n")
    _expect_one_dialog(qtbot, pane, services, [text], "not a GGUF")


def test_a_malformed_gguf_gives_one_clear_dialog(qtbot, pane, services, tmp_path):
    corpus = build_malformed_corpus(tmp_path / "bad")
    path, expected = corpus[0]
    _expect_one_dialog(qtbot, pane, services, [path], expected)


def test_a_model_too_large_for_memory_gives_one_clear_dialog(qtbot, pane, services, tmp_path):
    path = write_valid_gguf(tmp_path / "huge-context.gguf")
    # The check adds the KV cache of the configured context; a huge context cannot fit.
    services.settings.engine.n_ctx = 2**40
    _expect_one_dialog(qtbot, pane, services, [path], "memory")


def test_remove_never_deletes_the_file_without_a_second_confirmation(qtbot, pane, services, tmp_path):
    path = write_valid_gguf(tmp_path / "removable.gguf", name="Removable")
    record = services.library.add(path)
    pane.refresh(select=record.id)
    qtbot.waitUntil(lambda: pane.selected_model() is not None and pane.selected_model().id == record.id,
                    timeout=10000)

    # First question, box ticked; the second question is answered "Cancel": nothing happens.
    box = pane.ask_remove()
    box.checkBox().setChecked(True)
    remove = next(b for b in box.buttons() if b.text() == "Remove")
    remove.click()
    second = pane.active_dialog
    assert second is not None and second is not box and "cannot be undone" in second.informativeText()
    second.button(QMessageBox.StandardButton.Cancel).click()
    qtbot.wait(200)
    assert record.id in _ids(services) and path.exists()

    # Without the box: out of the library, the file stays.
    box = pane.ask_remove()
    next(b for b in box.buttons() if b.text() == "Remove").click()
    qtbot.waitUntil(lambda: record.id not in _ids(services), timeout=10000)
    assert path.exists()
    qtbot.waitUntil(lambda: pane.list.count() == 3, timeout=10000)

    # Both confirmations: the file goes too.
    record = services.library.add(path)
    pane.refresh(select=record.id)
    qtbot.waitUntil(lambda: pane.selected_model() is not None and pane.selected_model().id == record.id,
                    timeout=10000)
    box = pane.ask_remove()
    box.checkBox().setChecked(True)
    next(b for b in box.buttons() if b.text() == "Remove").click()
    second = pane.active_dialog
    next(b for b in second.buttons() if b.text() == "Delete file").click()
    qtbot.waitUntil(lambda: not path.exists(), timeout=10000)
    assert record.id not in _ids(services)


def test_which_model_serves_which_task(qtbot, pane, services, tmp_path):
    record = services.library.add(write_valid_gguf(tmp_path / "router.gguf", name="Router"))
    pane.refresh()
    combo = pane.route_combos["chat"]
    qtbot.waitUntil(lambda: combo.findData(record.id) >= 0, timeout=10000)
    assert combo.currentIndex() == 0 and "smollm2" in combo.currentText()
    combo.setCurrentIndex(combo.findData(record.id))
    qtbot.waitUntil(lambda: services.library.routes().get("chat") == record.id, timeout=10000)
    assert services.library.for_task("chat").id == record.id
    combo = pane.route_combos["chat"]
    qtbot.waitUntil(lambda: combo.currentData() == record.id, timeout=10000)
    combo.setCurrentIndex(0)
    qtbot.waitUntil(lambda: "chat" not in services.library.routes(), timeout=10000)
