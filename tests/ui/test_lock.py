"""The window's lock (issue 24): Ctrl+L and auto-lock close the data, clear every text of the
user's from the window, answer 423 on the window's API server, and unlock again with the keyring
(instantly) or the passphrase (one prompt); closing while locked leaves no marker behind."""

from __future__ import annotations

import threading

import httpx2 as httpx
import pytest
from PySide6.QtCore import Qt
from PySide6.QtTest import QTest
from PySide6.QtWidgets import (
    QAbstractButton,
    QComboBox,
    QLabel,
    QLineEdit,
    QListWidget,
    QMenu,
    QPlainTextEdit,
    QTableWidget,
    QTableWidgetItem,
    QTextEdit,
    QTreeWidget,
    QTreeWidgetItemIterator,
    QWidget,
)

from assistant.app import build_services, vault_for
from assistant.config import AppPaths
from ui.main_window import SHORTCUTS
from ui.unlock import PassphraseDialog

MARKER = "quokka-marmalade-4417"


def window_texts(window) -> list[str]:
    """Every text a widget of the window holds: labels, text boxes, list, tree and table items
    (and their tooltips), combo items, buttons, tooltips, the title."""
    texts = [window.windowTitle()]
    for widget in window.findChildren(QWidget):
        texts.append(widget.toolTip())
        if isinstance(widget, QLabel):
            texts.append(widget.text())
        elif isinstance(widget, (QTextEdit, QPlainTextEdit)):
            texts.append(widget.toPlainText())
        elif isinstance(widget, QLineEdit):
            texts.append(widget.text())
        elif isinstance(widget, QAbstractButton):
            texts.append(widget.text())
        elif isinstance(widget, QComboBox):
            texts += [widget.itemText(i) for i in range(widget.count())]
        if isinstance(widget, QListWidget):
            for i in range(widget.count()):
                texts += [widget.item(i).text(), widget.item(i).toolTip()]
        elif isinstance(widget, QTreeWidget):
            iterator = QTreeWidgetItemIterator(widget)
            while iterator.value():
                item = iterator.value()
                texts += [item.text(c) for c in range(widget.columnCount())]
                iterator += 1
        elif isinstance(widget, QTableWidget):
            for row in range(widget.rowCount()):
                for column in range(widget.columnCount()):
                    item = widget.item(row, column)
                    if item is not None:
                        texts.append(item.text())
    return texts


def _showing(window, text: str) -> list[str]:
    return [t for t in window_texts(window) if text in (t or "")]


def _seed_conversation(services, title: str) -> str:
    conversation = services.conversations.create(title=title)
    services.conversations.add_message(conversation.id, "user", f"Tell me about the {title}")
    services.conversations.add_message(conversation.id, "assistant", f"The {title} is a small marsupial.")
    return conversation.id


def _fill_every_pane_with(qtbot, window, services, marker: str) -> None:
    """The marker in a stored conversation shown in the chat, the conversation list and a search,
    and as if a translation, a sentiment batch, a document list and study cards showed it."""
    conversation_id = _seed_conversation(services, f"{marker} trip")
    window.sidebar.refresh()
    qtbot.waitUntil(lambda: window.sidebar.item_for(conversation_id) is not None, timeout=10000)
    window.open_conversation(conversation_id)
    qtbot.waitUntil(lambda: window.chat.conversation_id == conversation_id and len(window.chat.views) == 2,
                    timeout=10000)
    with qtbot.waitSignal(window.sidebar.sig_search_finished, timeout=10000):
        window.sidebar.search_box.setText(marker)
    window.chat.composer.setPlainText(f"draft about {marker}")
    qtbot.waitUntil(lambda: window.translate is not None, timeout=30000)
    for widget in (window.translate.source_edit, window.translate.output):
        widget.blockSignals(True)  # shown text only: no translation is started
        widget.setPlainText(f"{marker} in French")
        widget.blockSignals(False)
    window.sentiment.text_edit.setText(f"I love {marker}")
    window.sentiment.results_table.setRowCount(1)
    window.sentiment.results_table.setItem(0, 0, QTableWidgetItem(f"{marker} was great"))
    window.documents.files.addItem(f"{marker}.pdf")
    window.documents.question.setText(f"where is {marker}?")
    window.study.proposal_list.addItem(f"What is a {marker}?")
    assert len(_showing(window, marker)) >= 8


def _wait_locked(qtbot, window) -> None:
    qtbot.waitUntil(lambda: window.state == "locked", timeout=60000)


def test_ctrl_l_locks_clears_the_window_and_unlock_brings_the_conversations_back(qtbot, window, services,
                                                                                  data_dir):
    assert ("Ctrl+L", "Lock now: close your data and clear it from the window") in SHORTCUTS
    file_menu = next(menu for menu in window.menuBar().findChildren(QMenu) if menu.title() == "&File")
    assert "Lock now" in [action.text() for action in file_menu.actions()]
    _fill_every_pane_with(qtbot, window, services, MARKER)

    QTest.keySequence(window, "Ctrl+L")
    assert window.locked and window.lock_page.isVisible() and not window.stack.isVisible()
    assert not _showing(window, MARKER), _showing(window, MARKER)  # gone at once, not when the pool is done
    _wait_locked(qtbot, window)
    assert window.services is None
    with pytest.raises(Exception):
        services.conversations.list()  # the store's connection is closed
    assert (data_dir / "locked").is_file() and vault_for(services.paths).is_locked()
    assert not _showing(window, MARKER)
    unlock = window.lock_page.unlock_button
    assert unlock.isEnabled() and unlock.hasFocus()
    assert not window.actions_by_name["new_chat"].isEnabled()  # nothing reaches the data while locked

    QTest.keyClick(unlock, Qt.Key.Key_Space)  # keyboard only; with a keyring nothing is asked
    qtbot.waitUntil(lambda: window.state == "open", timeout=60000)
    assert window.services is not None and window.services is not services
    qtbot.waitUntil(lambda: window.sidebar.list.count() == 1, timeout=10000)
    assert window.sidebar.list.item(0).text() == f"{MARKER} trip"
    assert window.stack.isVisible() and not window.lock_page.isVisible()
    qtbot.waitUntil(lambda: not (data_dir / "locked").exists(), timeout=10000)
    assert window.actions_by_name["new_chat"].isEnabled()


def test_a_locked_window_s_api_server_answers_423_and_serves_again_after_unlock(qtbot, window, services):
    pane = window.settings_pane
    qtbot.waitUntil(lambda: bool(pane.api_token.text()), timeout=30000)
    pane.api_port.setValue(18643)
    pane.api_port.editingFinished.emit()
    pane.api_enabled.setChecked(True)
    qtbot.waitUntil(lambda: pane.api_status.text().startswith("On"), timeout=30000)
    url, headers = pane.api_url.text(), {"Authorization": f"Bearer {pane.api_token.text()}"}
    assert httpx.get(url + "/models", headers=headers).status_code == 200

    window.lock()
    _wait_locked(qtbot, window)
    response = httpx.get(url + "/models", headers=headers)
    assert response.status_code == 423 and "locked" in response.json()["error"]["message"]

    window.unlock()
    qtbot.waitUntil(lambda: window.state == "open", timeout=60000)
    qtbot.waitUntil(lambda: window.settings_pane.api_status.text().startswith("On"), timeout=30000)
    qtbot.waitUntil(lambda: not vault_for(window.paths).is_locked(), timeout=10000)
    assert httpx.get(url + "/models", headers=headers).status_code == 200


def test_auto_lock_waits_for_running_work_then_locks_and_closing_leaves_no_marker(qtbot, window, services,
                                                                                 data_dir):
    assert services.settings.auto_lock_minutes == 15  # the default (see AppSettings)
    assert window.idle_watcher.idle_s == 15 * 60 and window.idle_watcher.active
    window.settings_pane.security.auto_lock.setValue(5)  # Settings -> Security -> Lock after
    qtbot.waitUntil(lambda: services.settings.auto_lock_minutes == 5, timeout=10000)
    qtbot.waitUntil(lambda: window.idle_watcher.idle_s == 5 * 60, timeout=10000)
    assert services.store.get_setting("app", "AppSettings", {})["auto_lock_minutes"] == 5
    release = threading.Event()
    window.jobs.run(release.wait, 30)  # a job the user waits for: activity, not idleness
    window.idle_watcher.set_idle_seconds(0.3)
    qtbot.wait(1200)
    assert window.state == "open"
    release.set()
    _wait_locked(qtbot, window)
    assert (data_dir / "locked").is_file()
    window.shutdown()  # closing the window while locked
    assert not (data_dir / "locked").exists()


def test_input_keeps_the_window_unlocked(qtbot, window):
    window.idle_watcher.set_idle_seconds(0.6)
    for _ in range(6):
        qtbot.wait(200)
        QTest.mouseMove(window.chat.composer)
        QTest.keyClick(window.chat.composer, Qt.Key.Key_A)
    assert window.state == "open"


def test_with_a_passphrase_unlock_asks_it_once_and_a_wrong_one_is_asked_again(qtbot, qapp, theme, data_dir,
                                                                               no_keyring):
    from ui.app import create_window

    paths = AppPaths(data_dir).ensure()
    services = build_services(paths, sync_pack=False, passphrase="first passphrase")
    conversation_id = _seed_conversation(services, f"{MARKER} walk")
    window = create_window(services, theme=theme)
    window.show()
    try:
        qtbot.waitUntil(lambda: window.sidebar.item_for(conversation_id) is not None, timeout=30000)
        qtbot.waitUntil(window.settings_pane.isEnabled, timeout=30000)
        window.settings_pane.security.lock_button.click()  # Settings -> Security -> Lock now
        _wait_locked(qtbot, window)
        assert not _showing(window, MARKER)
        window.lock_page.unlock_button.click()
        qtbot.waitUntil(lambda: isinstance(window.unlock_flow.dialog, PassphraseDialog)
                        and window.unlock_flow.dialog.isVisible(), timeout=30000)
        first = window.unlock_flow.dialog
        first.passphrase.setText("not the passphrase")
        first._check()
        qtbot.waitUntil(lambda: window.unlock_flow.dialog is not first and window.unlock_flow.dialog.isVisible(),
                        timeout=30000)
        assert window.state == "unlocking" and "not the one" in window.unlock_flow.dialog.error.text()
        window.unlock_flow.dialog.passphrase.setText("first passphrase")
        window.unlock_flow.dialog._check()
        qtbot.waitUntil(lambda: window.state == "open", timeout=60000)
        qtbot.waitUntil(lambda: window.sidebar.item_for(conversation_id) is not None, timeout=10000)
    finally:
        window.shutdown()
        window.close()
        services.close()


def test_locking_mid_reply_stops_it_and_keeps_what_was_written(qtbot, window, services):
    """The reply's job is still saving when the panes go: the lock waits for it before it closes
    the store, so the partial reply is kept (marked interrupted), and no engine worker is left."""
    from engine.settings import SamplingParams
    from tests.ui.test_chat_pane import type_and_send, wait_streaming

    services.settings.sampling = SamplingParams(temperature=0.0, max_tokens=400, seed=7)
    type_and_send(qtbot, window, "Write a long story about a dragon who learns to bake bread.")
    wait_streaming(qtbot, window)
    conversation_id = window.chat.conversation_id
    QTest.keySequence(window, "Ctrl+L")
    _wait_locked(qtbot, window)
    assert services._engine is None  # the worker, holding the prompt's tokens, is closed

    window.unlock()
    qtbot.waitUntil(lambda: window.state == "open", timeout=60000)
    reply = window.services.conversations.messages(conversation_id)[-1]
    assert reply.role == "assistant" and reply.status == "interrupted" and reply.text.strip()


def test_a_passphrase_cancelled_at_start_leaves_the_lock_page_to_try_again(qtbot, theme, data_dir, no_keyring):
    from PySide6.QtWidgets import QDialog

    from ui.app import create_window

    paths = AppPaths(data_dir).ensure()
    build_services(paths, sync_pack=False, passphrase="first passphrase").close()
    window = create_window(theme=theme)
    window.show()
    try:
        window.open_library(paths)
        qtbot.waitUntil(lambda: isinstance(window.unlock_flow.dialog, PassphraseDialog)
                        and window.unlock_flow.dialog.isVisible(), timeout=30000)
        window.unlock_flow.dialog.done(QDialog.DialogCode.Rejected)
        qtbot.waitUntil(lambda: window.state == "locked", timeout=10000)
        assert window.lock_page.isVisible() and "stays locked" in window.lock_page.status.text()
        qtbot.waitUntil(lambda: window.focusWidget() is window.lock_page.unlock_button, timeout=5000)
        window.lock_page.unlock_button.click()
        qtbot.waitUntil(lambda: isinstance(window.unlock_flow.dialog, PassphraseDialog)
                        and window.unlock_flow.dialog.isVisible(), timeout=30000)
        window.unlock_flow.dialog.passphrase.setText("first passphrase")
        window.unlock_flow.dialog._check()
        qtbot.waitUntil(lambda: window.state == "open", timeout=60000)
        assert window.stack.isVisible() and window.services is not None
    finally:
        window.shutdown()
        window.close()
