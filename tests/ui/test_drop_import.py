"""A .gguf dragged anywhere onto the window is imported through the library's usual checks."""

from __future__ import annotations

import gc
import shutil
from pathlib import Path

import pytest
from PySide6.QtCore import QCoreApplication, QEvent, QMimeData, QPointF, Qt, QUrl
from PySide6.QtGui import QDragEnterEvent, QDragMoveEvent, QDropEvent
from PySide6.QtWidgets import QApplication, QMessageBox

from assistant.app import build_services
from assistant.config import AppPaths
from engine import model_pack
from engine.library import sha256_file
from tests.engine.gguf_corpus import build_malformed_corpus
from ui.drop_import import model_paths


def _smollm2(pack_template: Path) -> Path:
    path = model_pack.locate(model_pack.SMOLLM2, pack_template / "models")
    assert path is not None, "the default model pack (SmolLM2) is not installed: run `make test`"
    return path


def _mime(paths: list[Path]) -> QMimeData:
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(p)) for p in paths])
    return mime


def _drag_and_drop(widget, paths: list[Path]) -> tuple[bool, bool]:
    """The events a real drag sends to the widget under the cursor: enter, move, drop."""
    mime = _mime(paths)
    point = QPointF(5, 5)
    args = (Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier)
    enter = QDragEnterEvent(point, *args)
    enter.setAccepted(False)
    QApplication.sendEvent(widget, enter)
    move = QDragMoveEvent(point, *args)
    QApplication.sendEvent(widget, move)
    drop = QDropEvent(point, *args)
    drop.setAccepted(False)
    QApplication.sendEvent(widget, drop)
    return enter.isAccepted(), drop.isAccepted()


@pytest.fixture
def empty_window(qtbot, qapp, data_dir, theme):
    """The real window on a library with no model yet (a new user who brings their own)."""
    from ui.app import create_window

    services = build_services(AppPaths(data_dir / "empty"), sync_pack=False)
    win = create_window(services, theme=theme)
    win.show()
    qtbot.waitExposed(win)
    qtbot.waitUntil(lambda: win.models.view is not None, timeout=60000)
    yield win, services
    win.shutdown()
    win.close()
    win.deleteLater()
    QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
    del win
    gc.collect()
    services.close()


def test_smollm2_dropped_on_the_chat_box_is_imported_not_pasted(qtbot, empty_window, pack_template):
    win, services = empty_window
    smol = _smollm2(pack_template)
    assert services.library.list() == []
    win.show_page("chat")
    composer = win.chat.composer
    composer.setPlainText("draft kept")
    with qtbot.waitSignal(win.models.sig_import_finished, timeout=120000) as done:
        entered, dropped = _drag_and_drop(composer, [smol])
        assert entered and dropped
    assert done.args == [1, 0]
    # The text box did not get the file's path pasted into it.
    assert composer.toPlainText() == "draft kept"
    assert win.current_page == "models"
    (record,) = services.library.list()
    assert record.source == "user"
    assert record.metadata["architecture"] == "llama"
    assert record.sha256 == sha256_file(smol)
    # It is a chat model: the chat pane offers it.
    qtbot.waitUntil(lambda: win.chat.model_combo.findData(record.id) >= 0, timeout=30000)


def test_a_malformed_gguf_dropped_on_the_window_gives_one_clear_message(qtbot, window, services, tmp_path,
                                                                         pack_template):
    # An interrupted copy of a real model: its header promises more than the file holds.
    broken = tmp_path / "half-copied.gguf"
    with open(_smollm2(pack_template), "rb") as source:
        broken.write_bytes(source.read(4096))
    before = {m.id for m in services.library.list()}
    window.show_page("chat")
    with qtbot.waitSignal(window.models.sig_import_finished, timeout=60000) as done:
        entered, dropped = _drag_and_drop(window, [broken])
        assert entered and dropped
    assert done.args == [0, 1]
    box = window.models.active_dialog
    assert isinstance(box, QMessageBox) and box.isVisible()
    assert "half-copied.gguf" in box.text() and "truncated" in box.text().lower()
    assert "Traceback" not in box.text()
    assert {m.id for m in services.library.list()} == before
    box.accept()


def test_several_files_in_one_drop_each_get_their_answer(qtbot, window, services, tmp_path, pack_template):
    corpus = dict((p.name, (p, e)) for p, e in build_malformed_corpus(tmp_path / "bad"))
    html, html_error = corpus["html.gguf"]
    duplicate = tmp_path / "smol-again.gguf"
    shutil.copyfile(_smollm2(pack_template), duplicate)
    with qtbot.waitSignal(window.models.sig_import_finished, timeout=120000) as done:
        _drag_and_drop(window.sidebar, [html, duplicate])
    assert done.args == [0, 2]
    text = window.models.active_dialog.text()
    assert html_error.lower() in text.lower()
    assert "already in the library" in text
    window.models.active_dialog.accept()


def test_files_that_are_not_models_are_left_to_the_page_under_the_cursor(qtbot, window, tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("some notes\n")
    importer = window.drop_importer
    window.show_page("chat")
    entered, _dropped = _drag_and_drop(window, [notes])
    # The window itself takes no such drop; nothing was queued or imported, the page did not change.
    assert not entered
    assert importer.pending == [] and not window.models.importing
    assert window.current_page == "chat"
    # Mixed drops and remote addresses are not ours either (no guessing what the user meant).
    assert model_paths(_mime([tmp_path / "a.gguf", notes])) == []
    web = QMimeData()
    web.setUrls([QUrl("https://example.invalid/model.gguf")])
    assert model_paths(web) == []
    assert model_paths(_mime([tmp_path / "A.GGUF"])) == [str(tmp_path / "A.GGUF")]


def test_a_file_opened_before_the_library_is_ready_is_imported_when_it_is(qtbot, qapp, data_dir, theme,
                                                                           pack_template):
    """`assistant model.gguf` (Open with): the window shows before the library opens."""
    from ui.app import create_window

    win = create_window(None, theme=theme)
    services = build_services(AppPaths(data_dir / "later"), sync_pack=False)
    try:
        win.show()
        win.drop_importer.import_files([str(_smollm2(pack_template))])
        assert win.drop_importer.pending and win.current_page == "models"
        with qtbot.waitSignal(win.models.sig_import_finished, timeout=120000) as done:
            win.set_services(services)
        assert done.args == [1, 0]
        assert win.drop_importer.pending == []
        assert [m.metadata["architecture"] for m in services.library.list()] == ["llama"]
    finally:
        win.shutdown()
        win.close()
        win.deleteLater()
        QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
        gc.collect()
        services.close()
