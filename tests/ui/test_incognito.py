"""Incognito chat in the window (issue 24): started from the menu, the sidebar or Ctrl+Shift+N,
marked by a banner, a tint and the window title, answered by the real default model, never in
the conversation list or the history search, and forgotten when the user leaves it or closes
the window."""

from __future__ import annotations

import uuid
from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtGui import QKeySequence
from PySide6.QtTest import QTest

from tests.assistant.test_incognito import files_holding
from tests.ui.conftest import wait_idle
from ui.chat.pane import EMPTY_HINT, EMPTY_INCOGNITO_HINT, INCOGNITO_FORGOTTEN
from ui.chat.widgets import IncognitoBanner
from ui.main_window import ACTION_KEYS, SHORTCUTS


def type_and_send(qtbot, win, text: str) -> None:
    win.chat.focus_composer()
    qtbot.keyClicks(win.chat.composer, text)
    qtbot.keyClick(win.chat.composer, Qt.Key.Key_Return)


def start_incognito(qtbot, window, how: str) -> None:
    if how == "action":
        window.actions_by_name["new_incognito_chat"].trigger()
    elif how == "button":
        qtbot.mouseClick(window.sidebar.incognito_button, Qt.MouseButton.LeftButton)
    else:
        window.activateWindow()
        QTest.keySequence(window, QKeySequence(ACTION_KEYS["new_incognito_chat"]))
    # The empty chat's view comes from a job: the title says "Incognito chat" once it is shown.
    qtbot.waitUntil(lambda: window.chat.title_label.text() == "Incognito chat" and window.chat.ready, timeout=30000)


def test_an_incognito_chat_is_marked_answered_unlisted_and_forgotten_when_left(qtbot, window, services):
    chat, sidebar = window.chat, window.sidebar
    earlier = services.conversations.create("Earlier chat")
    services.conversations.add_message(earlier.id, "user", "A stored question.")
    sidebar.refresh()
    qtbot.waitUntil(lambda: sidebar.list.count() == 1, timeout=10000)

    window.show_page("models")
    start_incognito(qtbot, window, "action")
    assert window.current_page == "chat"
    # Marked: the banner above the chat, the tinted header and composer, the hint, the title bar.
    assert chat.incognito is not None and chat.incognito_banner.isVisible()
    assert chat.incognito_banner.label.text() == IncognitoBanner.TEXT
    assert IncognitoBanner.TEXT.startswith("Incognito — this chat is not saved and disappears when you close it")
    assert all(widget.property("incognito") is True for widget in chat._tinted)
    assert chat.empty_label.text() == EMPTY_INCOGNITO_HINT
    assert "Incognito" in window.windowTitle()
    assert sidebar.list.currentItem() is None or not sidebar.list.currentItem().isSelected()

    marker = f"Quixotl{uuid.uuid4().hex[:10]}"
    type_and_send(qtbot, window, f"My name is {marker}. Say hello.")
    wait_idle(qtbot, window)
    assert [v.role for v in chat.views] == ["user", "assistant"]
    assert chat.views[1].text.strip() and not chat.banner.isVisible(), chat.banner.label.text()
    assert chat.title_label.text() == f"Incognito · My name is {marker}. Say hello."
    conversation_id = chat.conversation_id
    holder = chat.incognito
    assert conversation_id and holder.exists(conversation_id)
    assert [m.text for m in holder.messages(conversation_id)][0] == f"My name is {marker}. Say hello."

    # Regenerate works as in a stored chat; the earlier reply is a variant, in memory.
    assert chat.regenerate()
    wait_idle(qtbot, window)
    assert len(chat.views[-1].variant_ids) == 2 and len(holder.variants(chat.views[-1].message_id)) == 2

    # Never listed, never found: the sidebar still holds only the stored chat; search finds nothing.
    qtbot.wait(200)
    assert sidebar.list.count() == 1 and sidebar.list.item(0).text() == "Earlier chat"
    assert [c.id for c in services.conversations.list(include_archived=True, include_deleted=True)] == [earlier.id]
    with qtbot.waitSignal(sidebar.sig_search_finished, timeout=10000) as found:
        sidebar.search_box.setText(marker)
    assert found.args == [0]
    sidebar.search_box.clear()

    # Switching to another conversation forgets it, with a notice, and the look goes back.
    window.open_conversation(earlier.id)
    qtbot.waitUntil(lambda: chat.conversation_id == earlier.id and len(chat.views) == 1, timeout=10000)
    assert chat.incognito is None and not chat.incognito_banner.isVisible()
    assert holder.discarded and not holder.exists(conversation_id)
    assert chat.banner.isVisible() and chat.banner.label.text() == INCOGNITO_FORGOTTEN
    assert not any(marker in v.text for v in chat.views)
    assert all(widget.property("incognito") is False for widget in chat._tinted)
    assert chat.empty_label.text() == EMPTY_HINT and "Incognito" not in window.windowTitle()
    assert sidebar.list.count() == 1
    assert services.history.search(marker) == []
    assert files_holding(Path(services.paths.data_dir), marker) == []


def test_new_chat_and_closing_the_window_forget_an_incognito_chat(qtbot, window, services):
    chat = window.chat
    start_incognito(qtbot, window, "shortcut")
    first = chat.incognito
    type_and_send(qtbot, window, "Hello there.")
    wait_idle(qtbot, window)
    QTest.keySequence(window, QKeySequence(ACTION_KEYS["new_chat"]))
    qtbot.waitUntil(lambda: chat.title_label.text() == "New conversation", timeout=10000)
    assert first.discarded and chat.incognito is None and chat.views == []
    assert chat.banner.label.text() == INCOGNITO_FORGOTTEN

    start_incognito(qtbot, window, "button")
    second = chat.incognito
    assert second is not None and second is not first and chat.incognito_banner.isVisible()
    type_and_send(qtbot, window, "Count to three.")
    # Closed while the reply streams: the reply stops and the chat is gone with the window.
    qtbot.waitUntil(lambda: chat.streaming_view is not None and bool(chat.streaming_view.text), timeout=120000)
    window.close()
    assert second.discarded and services.conversations.list() == []


def test_the_shortcut_is_listed_in_the_help_and_clashes_with_no_other():
    keys = [QKeySequence(k).toString() for k, _action in SHORTCUTS]
    assert (ACTION_KEYS["new_incognito_chat"], "New incognito chat (never saved)") in SHORTCUTS
    assert len(keys) == len(set(keys)), keys
