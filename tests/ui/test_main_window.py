"""The main window: pages, shortcuts, accessible names, engine status, sidebar, search, theme."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtGui import QPalette
from PySide6.QtTest import QTest
from PySide6.QtWidgets import (
    QAbstractButton,
    QAbstractSpinBox,
    QApplication,
    QComboBox,
    QLineEdit,
    QListWidget,
    QPlainTextEdit,
    QTableWidget,
    QTextEdit,
    QWidget,
)

from assistant.settings import AppSettings
from tests.ui.conftest import link_joined_models
from ui.main_window import PAGES, SHORTCUTS
from ui.theme import COLORS

ROOT = Path(__file__).resolve().parents[2]


def test_every_page_opens_and_empty_ones_say_what_is_coming(qtbot, window):
    for key, label, coming in PAGES:
        window.show_page(key)
        assert window.current_page == key
        page = window.stack.currentWidget()
        assert page.isVisible()
        if coming:
            texts = " ".join(w.text() for w in page.findChildren(type(window.engine_label)))
            assert "Coming soon" in texts and label in texts


def test_keyboard_shortcuts_and_their_help(qtbot, window):
    window.show_page("models")
    QTest.keySequence(window, "Ctrl+N")
    assert window.current_page == "chat"
    QTest.keySequence(window, "Ctrl+F")
    assert QApplication.focusWidget() is window.sidebar.search_box or window.sidebar.search_box.hasFocus()
    QTest.keySequence(window, "Ctrl+K")
    assert window.chat.composer.hasFocus()
    QTest.keySequence(window, "Ctrl+,")
    assert window.current_page == "settings"
    QTest.keySequence(window, "F1")
    dialog = window.shortcuts_dialog
    assert dialog is not None and dialog.isVisible()
    table = dialog.findChild(QTableWidget)
    listed = {table.item(r, 1).text() for r in range(table.rowCount())}
    assert {action for _keys, action in SHORTCUTS} == listed
    for needed in ("Ctrl+N", "Ctrl+F", "Ctrl+K", "Ctrl+,"):
        assert needed in {keys for keys, _ in SHORTCUTS}
    dialog.reject()


def _controls(root):
    kinds = (QAbstractButton, QLineEdit, QComboBox, QAbstractSpinBox, QPlainTextEdit, QTextEdit, QListWidget)
    for widget in root.findChildren(QWidget):
        if not isinstance(widget, kinds):
            continue
        parent = widget.parentWidget()
        # Parts Qt builds inside composite widgets (a spin box's line edit, a combo's popup).
        if isinstance(parent, (QAbstractSpinBox, QComboBox)) or (parent is not None
                                                                 and parent.inherits("QComboBoxPrivateContainer")):
            continue
        yield widget


def test_every_control_has_an_accessible_name(qtbot, window):
    qtbot.waitUntil(lambda: window.models.list.count() > 0, timeout=30000)
    qtbot.waitUntil(lambda: window.settings_pane.isEnabled(), timeout=30000)
    missing = []
    for widget in _controls(window):
        name = widget.accessibleName()
        if not name:
            missing.append(f"{type(widget).__name__} {widget.objectName()!r} {getattr(widget, 'text', lambda: '')()!r}")
    assert not missing, "controls without an accessible name:\n" + "\n".join(missing)


def test_engine_status_is_always_visible_and_reaches_ready(qtbot, window):
    assert window.engine_label.isVisible()
    qtbot.waitUntil(lambda: window.engine_state == "ready", timeout=60000)
    assert window.engine_label.text().startswith("Engine: ready")


def test_theme_switches_and_is_saved_in_the_store(qtbot, window, services, theme):
    window.show_page("settings")
    pane = window.settings_pane
    pane.set_theme("dark")
    assert theme.scheme == "dark"
    assert QApplication.instance().palette().color(QPalette.ColorRole.Window).name() == COLORS["dark"]["window"]
    assert window.chat.colors == COLORS["dark"]
    qtbot.waitUntil(lambda: AppSettings.load(services.store).theme == "dark", timeout=10000)
    pane.set_theme("light")
    assert QApplication.instance().palette().color(QPalette.ColorRole.Window).name() == COLORS["light"]["window"]
    qtbot.waitUntil(lambda: AppSettings.load(services.store).theme == "light", timeout=10000)
    pane.set_theme("system")
    assert theme.setting == "system" and theme.scheme in ("light", "dark")


def test_the_system_theme_is_followed_while_the_app_runs(qtbot, window, theme, monkeypatch, qapp):
    import ui.theme

    assert theme.setting == "system"
    # Offscreen has no desktop to change its mind; stand in for it, then tell Qt it changed.
    monkeypatch.setattr(ui.theme, "system_scheme", lambda: "dark")
    qapp.styleHints().colorSchemeChanged.emit(Qt.ColorScheme.Dark)
    assert theme.scheme == "dark" and window.chat.colors == COLORS["dark"]
    assert qapp.palette().color(QPalette.ColorRole.Base).name() == COLORS["dark"]["base"]
    monkeypatch.setattr(ui.theme, "system_scheme", lambda: "light")
    qapp.styleHints().colorSchemeChanged.emit(Qt.ColorScheme.Light)
    assert theme.scheme == "light"
    # An explicit choice is not overridden by the desktop.
    theme.apply("dark")
    qapp.styleHints().colorSchemeChanged.emit(Qt.ColorScheme.Light)
    assert theme.scheme == "dark"


def test_settings_are_saved_in_the_store(qtbot, window, services):
    pane = window.settings_pane
    pane.threads.setValue(1)
    pane.n_ctx.setValue(2048)
    pane.temperature.setValue(0.3)
    pane.font_size.setValue(12)
    pane.system_prompt.setPlainText("Be brief.")
    qtbot.waitUntil(lambda: pane.status.text() == "Saved.", timeout=10000)
    saved = AppSettings.load(services.store)
    assert saved.engine.n_threads == 1 and saved.engine.n_ctx == 2048
    assert abs(saved.sampling.temperature - 0.3) < 1e-6
    assert saved.font_size == 12 and saved.default_system_prompt == "Be brief."
    assert QApplication.instance().font().pointSize() == 12
    pane.top_p.setValue(0.01)
    pane.min_p.setValue(0.99)  # valid separately; the store gets them both
    qtbot.waitUntil(lambda: pane.status.text() == "Saved.", timeout=10000)


def _seed_history(services):
    conversations = services.conversations
    first = conversations.create("Trip planning")
    conversations.add_message(first.id, "user", "Where should I travel in spring?")
    conversations.add_message(first.id, "assistant", "Kyoto is lovely when the cherry blossoms bloom.")
    second = conversations.create("Zoo facts")
    conversations.add_message(second.id, "user", "Tell me about zebras.")
    hit = conversations.add_message(second.id, "assistant", "A zebra's stripes are as unique as fingerprints.")
    third = conversations.create("Groceries")
    conversations.add_message(third.id, "user", "Milk, eggs, bread.")
    return first, second, third, hit


def test_search_history_and_open_the_hit(qtbot, window, services):
    _first, second, _third, hit = _seed_history(services)
    window.sidebar.refresh()
    qtbot.waitUntil(lambda: window.sidebar.list.count() == 3, timeout=10000)
    QTest.keySequence(window, "Ctrl+F")
    with qtbot.waitSignal(window.sidebar.sig_search_finished, timeout=10000) as found:
        qtbot.keyClicks(window.sidebar.search_box, "fingerprints")
    assert found.args == [1]
    assert window.sidebar.results.isVisible() and not window.sidebar.list.isVisible()
    label = window.sidebar.results.itemWidget(window.sidebar.results.item(0))
    assert "<b>fingerprints</b>" in label.text() and "Zoo facts" in label.text()

    rect = window.sidebar.results.visualItemRect(window.sidebar.results.item(0))
    qtbot.mouseClick(window.sidebar.results.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    qtbot.waitUntil(lambda: window.chat.conversation_id == second.id and window.chat.view_for(hit.id) is not None,
                    timeout=10000)
    view = window.chat.view_for(hit.id)
    assert view.property("found") == "true"
    assert window.chat.title_label.text() == "Zoo facts"
    qtbot.waitUntil(lambda: not view.visibleRegion().isEmpty(), timeout=5000)

    # No match, then a cleared box brings the list back.
    with qtbot.waitSignal(window.sidebar.sig_search_finished, timeout=10000) as none:
        window.sidebar.search_box.setText("xylophone")
    assert none.args == [0] and window.sidebar.search_status.text() == "No matches."
    window.sidebar.search_box.clear()
    assert window.sidebar.list.isVisible()


def test_sidebar_orders_pins_renames_and_deletes_with_undo(qtbot, window, services):
    first, second, third, _hit = _seed_history(services)
    sidebar = window.sidebar
    sidebar.refresh()
    qtbot.waitUntil(lambda: sidebar.list.count() == 3, timeout=10000)
    order = [sidebar.list.item(r).data(Qt.ItemDataRole.UserRole) for r in range(3)]
    assert order == [third.id, second.id, first.id]  # last activity first

    sidebar.pin(first.id, True)
    qtbot.waitUntil(lambda: sidebar.list.item(0).data(Qt.ItemDataRole.UserRole) == first.id, timeout=10000)
    assert sidebar.list.item(0).text() == "Trip planning" and not sidebar.list.item(0).icon().isNull()
    assert sidebar.list.item(1).icon().isNull()

    item = sidebar.item_for(second.id)
    sidebar.list.setCurrentItem(item)
    sidebar.rename(item)
    editor = sidebar.list.findChild(QLineEdit)
    assert editor is not None
    editor.selectAll()
    qtbot.keyClicks(editor, "Animal facts")
    qtbot.keyClick(editor, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: services.conversations.get(second.id).title == "Animal facts", timeout=10000)

    window.open_conversation(third.id)
    qtbot.waitUntil(lambda: window.chat.conversation_id == third.id and len(window.chat.views) == 1, timeout=10000)
    sidebar.delete(third.id)
    qtbot.waitUntil(lambda: sidebar.undo_bar.isVisible() and sidebar.list.count() == 2, timeout=10000)
    assert services.conversations.get(third.id).in_trash
    # The chat pane does not keep showing a conversation in the trash.
    qtbot.waitUntil(lambda: window.chat.conversation_id is None, timeout=10000)
    qtbot.mouseClick(sidebar.undo_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: sidebar.list.count() == 3, timeout=10000)
    assert not services.conversations.get(third.id).in_trash
    assert not sidebar.undo_bar.isVisible()


def test_the_model_can_be_changed_per_conversation(qtbot, window, services, tmp_path):
    from tests.engine.gguf_corpus import write_valid_gguf

    extra = services.library.add(write_valid_gguf(tmp_path / "tiny.gguf"))
    assert "chat" in extra.tasks
    conversation = services.conversations.create("Model choice")
    services.conversations.add_message(conversation.id, "user", "hi")
    window.chat.refresh_models()
    window.open_conversation(conversation.id)
    combo = window.chat.model_combo
    qtbot.waitUntil(lambda: combo.findData(extra.id) >= 0 and window.chat.conversation_id == conversation.id,
                    timeout=10000)
    assert combo.currentData() == services.library.for_task("chat").id
    combo.setCurrentIndex(combo.findData(extra.id))
    qtbot.waitUntil(lambda: services.conversations.get_setting(conversation.id, "model") == extra.id, timeout=10000)
    window.new_chat()
    qtbot.waitUntil(lambda: combo.currentData() == services.library.for_task("chat").id, timeout=10000)
    window.open_conversation(conversation.id)
    qtbot.waitUntil(lambda: combo.currentData() == extra.id, timeout=10000)


PROBE = r"""
import json, sys, time
started = time.time()
from PySide6.QtCore import QTimer
from ui.app import run
seen = {}
def milestone(name, window):
    seen[name] = time.time() - started
    if name == "services_ready":
        seen["pages"] = window.stack.count()
        QTimer.singleShot(0, window.close)
code = run(on_milestone=milestone)
seen["torch"] = "torch" in sys.modules
seen["code"] = code
print(json.dumps(seen))
"""


def test_run_paints_before_opening_the_library_and_never_imports_torch(data_dir, pack_template):
    link_joined_models(pack_template, data_dir)
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", ASSISTANT_DATA_DIR=str(data_dir))
    result = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    assert seen["code"] == 0 and seen["pages"] == len(PAGES)
    assert seen["first_paint"] < seen["services_ready"]
    assert seen["torch"] is False


def test_translate_sentiment_and_documents_pages_hold_their_real_panes(qtbot, window):
    from ui.documents_pane import DocumentsPane
    from ui.sentiment_pane import SentimentPane
    from ui.translate_pane import TranslatePane

    qtbot.waitUntil(lambda: window.translate is not None, timeout=30000)
    for key, kind in (("translate", TranslatePane), ("sentiment", SentimentPane), ("documents", DocumentsPane)):
        window.show_page(key)
        page = window.stack.currentWidget()
        assert isinstance(page.pane, kind) and page.pane.isVisible()
        assert not page.notice.isVisible()


def test_status_bar_names_the_chat_model_not_the_search_encoder(qtbot, window, services):
    """Loading MiniLM for document search must not read as if the chat model had changed."""
    from assistant.documents.collections import engine_embedder

    qtbot.waitUntil(lambda: window.engine_state == "ready", timeout=60000)
    chat_model = Path(services.library.for_task("chat").path)
    services.engine.chat(str(chat_model), [{"role": "user", "content": "Hi"}],
                         {"max_tokens": 2, "temperature": 0}).result(timeout=120)
    qtbot.waitUntil(lambda: window.engine_label.text() == f"Engine: ready · {chat_model.name}", timeout=30000)
    vectors = engine_embedder(services)(["A sentence to embed."])
    assert vectors.shape[0] == 1
    qtbot.waitUntil(lambda: "Document search" in window.engine_label.toolTip(), timeout=30000)
    assert window.engine_label.text() == f"Engine: ready · {chat_model.name}"
    assert ".gguf" in window.engine_label.toolTip().split("Document search and sentiment:")[1]
    # Two generation models loaded side by side: the label follows the one that answered last.
    translator = Path(services.library.for_task("translate").path)
    assert translator != chat_model
    services.engine.complete(str(translator), "Hello", {"max_tokens": 1, "temperature": 0}).result(timeout=120)
    qtbot.waitUntil(lambda: window.engine_label.text() == f"Engine: ready · {translator.name}", timeout=30000)
    services.engine.chat(str(chat_model), [{"role": "user", "content": "Hi"}],
                         {"max_tokens": 2, "temperature": 0}).result(timeout=120)
    qtbot.waitUntil(lambda: window.engine_label.text() == f"Engine: ready · {chat_model.name}", timeout=30000)


FIRST_PAINT_PROBE = r"""
import json
from PySide6.QtCore import QTimer
from PySide6.QtGui import QPalette
from ui.app import run
seen = {}
def milestone(name, window):
    if name == "first_paint":
        # Right after the first paint: what the user saw first.
        seen["window"] = window.palette().color(QPalette.ColorRole.Window).name()
        image = window.grab().toImage()
        seen["pixel_lightness"] = image.pixelColor(image.width() - 4, image.height() // 2).lightness()
    if name in ("services_ready", "services_failed"):
        QTimer.singleShot(0, window.close)
print(json.dumps({"code": run(on_milestone=milestone), **seen}))
"""


def test_the_saved_dark_theme_is_what_the_first_paint_shows(data_dir, pack_template, services):
    from ui.theme import COLORS

    services.settings.theme = "dark"
    services.save_settings()
    link_joined_models(pack_template, data_dir)
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", ASSISTANT_DATA_DIR=str(data_dir))
    result = subprocess.run([sys.executable, "-c", FIRST_PAINT_PROBE], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    assert seen["code"] == 0
    assert seen["window"] == COLORS["dark"]["window"]
    assert seen["pixel_lightness"] < 80, seen


def test_the_saved_appearance_is_read_without_opening_the_store(services, tmp_path):
    """The theme is needed before the first paint, which comes before the unlock: it is kept in
    a small unencrypted file of its own, and nothing the user wrote goes there."""
    from assistant.settings import APPEARANCE_FILE, saved_appearance

    assert saved_appearance(tmp_path / "nothing-here") == ("system", 0)
    (tmp_path / APPEARANCE_FILE).write_bytes(b"not json")
    assert saved_appearance(tmp_path) == ("system", 0)
    services.settings.theme, services.settings.font_size = "dark", 13
    services.settings.default_system_prompt = "MARKER-SYSTEM-PROMPT"
    services.save_settings()
    assert saved_appearance(services.paths.data_dir) == ("dark", 13)
    assert b"MARKER-SYSTEM-PROMPT" not in (services.paths.data_dir / APPEARANCE_FILE).read_bytes()


def test_restart_engine_applies_a_new_thread_count_and_context_without_restarting_the_app(qtbot, window, services):
    pane = window.settings_pane
    qtbot.waitUntil(lambda: window.engine_state == "ready", timeout=60000)
    before = services.engine.ping()
    assert not pane.restart_button.isVisibleTo(pane)  # nothing to apply yet
    threads = 1 if before["settings"]["n_threads"] != 1 else 2
    pane.threads.setValue(threads)
    pane.n_ctx.setValue(2048)
    assert pane.restart_button.isVisibleTo(pane) and "restart the engine" in pane.engine_note.text()
    with qtbot.waitSignal(pane.sig_engine_restarted, timeout=60000) as restarted:
        pane.restart_button.click()
    assert restarted.args == [True]
    after = services.engine.ping()
    assert after["pid"] != before["pid"]
    assert after["settings"]["n_threads"] == threads and after["settings"]["n_ctx"] == 2048
    assert not pane.restart_button.isVisibleTo(pane)
    assert f"{threads} threads" in pane.status.text()
    assert AppSettings.load(services.store).engine.n_threads == threads
    # The window's engine status follows the new worker, and a reply still comes.
    qtbot.waitUntil(lambda: window.engine_state == "ready", timeout=60000)
    chat_model = services.library.for_task("chat").path
    reply = services.engine.chat(chat_model, [{"role": "user", "content": "Hi"}],
                                 {"max_tokens": 2, "temperature": 0}).result(timeout=120)
    assert reply["event"] == "done"
