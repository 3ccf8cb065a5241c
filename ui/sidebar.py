"""The conversation list: newest activity first, pinned on top, rename, delete with undo,
and a search box over the whole history that jumps to the matching message. Above them,
New chat and Incognito (a chat kept in memory only, which never appears in this list).

GUI thread only; listing, renaming, deleting and searching are the core's calls, run as jobs.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QPoint, QSize, Qt, QTimer, Signal
from PySide6.QtGui import QIcon, QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QAbstractItemView,
    QFrame,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QMenu,
    QPushButton,
    QToolButton,
    QVBoxLayout,
    QWidget,
)


if TYPE_CHECKING:
    from assistant.app import Services
    from ui.jobs import Jobs

#: Typing pauses this long before the search runs: one query per word, not per key.
SEARCH_DELAY_MS = 250
#: How long Undo stays offered after a delete (the conversation stays in the trash after).
UNDO_MS = 15000
#: The sidebar's narrowest width: a title's first words stay readable and the search box keeps
#: its placeholder. When the window narrows, the chat gives up the space, not the sidebar.
SIDEBAR_MIN_WIDTH = 220
ID_ROLE = Qt.ItemDataRole.UserRole
MESSAGE_ROLE = Qt.ItemDataRole.UserRole + 1
PINNED_ROLE = Qt.ItemDataRole.UserRole + 2
_PIN_ICON = Path(__file__).resolve().parent.parent / "resources" / "icons" / "pin.svg"


def hit_html(hit, title_colour: str = "") -> str:
    """A search hit as rich text: the conversation's title, then the snippet with matches in bold."""
    snippet = "".join(f"<b>{html.escape(t)}</b>" if bold else html.escape(t) for t, bold in hit.parts())
    who = {"user": "You", "assistant": "Assistant"}.get(hit.role or "", "")
    title = html.escape(hit.conversation_title)
    meta = f" · {who}" if who else (" · title" if hit.kind == "title" else "")
    return f"<div><span style='font-weight:600'>{title}</span><span>{meta}</span><br/>{snippet}</div>"


class Sidebar(QFrame):
    sig_conversation_selected = Signal(str)
    sig_new_chat_requested = Signal()
    sig_new_incognito_chat_requested = Signal()
    sig_hit_activated = Signal(str, str)  # conversation id, message id ("" for a title hit)
    sig_conversation_deleted = Signal(str)
    sig_conversations_loaded = Signal()
    sig_search_finished = Signal(int)  # number of hits

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("Sidebar")
        self.setAccessibleName("Conversations")
        self.setMinimumWidth(SIDEBAR_MIN_WIDTH)
        self.services: Services | None = None
        self.jobs: Jobs | None = None
        self.current_id: str | None = None
        self.hits: list = []
        self._filling = False
        self._search_seq = 0
        self._pin_icon = QIcon(str(_PIN_ICON))
        self._no_icon = QIcon()
        self._deleted: tuple[str, str] | None = None  # (id, title) that Undo restores
        self._build()

    def _build(self) -> None:
        layout = QVBoxLayout(self)
        layout.setContentsMargins(10, 10, 10, 10)
        layout.setSpacing(8)
        self.new_button = QPushButton("New chat")
        self.new_button.setObjectName("PrimaryButton")
        self.new_button.setAccessibleName("New chat")
        self.new_button.setToolTip("Start a new conversation (Ctrl+N)")
        self.new_button.clicked.connect(self.sig_new_chat_requested)
        self.incognito_button = QPushButton("Incognito")
        self.incognito_button.setAccessibleName("New incognito chat")
        self.incognito_button.setToolTip("Start an incognito chat: never saved, not in this list or in search, "
                                         "forgotten when you leave it (Ctrl+Shift+N)")
        self.incognito_button.clicked.connect(self.sig_new_incognito_chat_requested)
        new_row = QHBoxLayout()
        new_row.setSpacing(6)
        new_row.addWidget(self.new_button, 1)
        new_row.addWidget(self.incognito_button)
        layout.addLayout(new_row)

        self.search_box = QLineEdit(self)
        self.search_box.setAccessibleName("Search all conversations")
        self.search_box.setPlaceholderText("Search history (Ctrl+F)")
        self.search_box.setClearButtonEnabled(True)
        for button in self.search_box.findChildren(QToolButton):  # Qt's own clear button
            button.setAccessibleName("Clear the search")
        self.search_box.textChanged.connect(self._on_query_changed)
        self.search_box.returnPressed.connect(self._open_first_hit)
        layout.addWidget(self.search_box)
        self.search_status = QLabel("")
        self.search_status.setObjectName("MutedLabel")
        self.search_status.hide()
        layout.addWidget(self.search_status)

        self.list = QListWidget(self)
        self.list.setObjectName("ConversationList")
        self.list.setAccessibleName("Conversation list")
        self.list.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.list.setEditTriggers(QAbstractItemView.EditTrigger.EditKeyPressed)
        self.list.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.list.customContextMenuRequested.connect(self._context_menu)
        self.list.itemClicked.connect(self._on_item_activated)
        self.list.itemActivated.connect(self._on_item_activated)
        self.list.itemChanged.connect(self._on_item_renamed)
        self.list.setUniformItemSizes(True)
        # A long title is elided ("…"), never a horizontal scroll bar; the tooltip has it all.
        self.list.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.list.setTextElideMode(Qt.TextElideMode.ElideRight)
        layout.addWidget(self.list, 1)

        self.results = QListWidget(self)
        self.results.setObjectName("SearchResults")
        self.results.setAccessibleName("Search results")
        self.results.setWordWrap(True)
        self.results.itemActivated.connect(self._on_hit_activated)
        self.results.itemClicked.connect(self._on_hit_activated)
        self.results.hide()
        layout.addWidget(self.results, 1)

        self.undo_bar = QFrame(self)
        self.undo_bar.setObjectName("Banner")
        self.undo_bar.setProperty("kind", "info")
        self.undo_bar.setAccessibleName("Deleted conversation notice")
        undo_row = QHBoxLayout(self.undo_bar)
        undo_row.setContentsMargins(8, 4, 4, 4)
        self.undo_label = QLabel("")
        self.undo_label.setWordWrap(True)
        undo_row.addWidget(self.undo_label, 1)
        self.undo_button = QToolButton(self.undo_bar)
        self.undo_button.setText("Undo")
        self.undo_button.setAccessibleName("Undo delete")
        self.undo_button.clicked.connect(self.undo_delete)
        undo_row.addWidget(self.undo_button)
        self.undo_bar.hide()
        layout.addWidget(self.undo_bar)
        self._undo_timer = QTimer(self)
        self._undo_timer.setSingleShot(True)
        self._undo_timer.setInterval(UNDO_MS)
        self._undo_timer.timeout.connect(self._forget_undo)

        self._search_timer = QTimer(self)
        self._search_timer.setSingleShot(True)
        self._search_timer.setInterval(SEARCH_DELAY_MS)
        self._search_timer.timeout.connect(self.run_search)

        for keys, slot in ((QKeySequence.StandardKey.Delete, self.delete_current),
                           (QKeySequence(Qt.Key.Key_F2), self.rename_current)):
            shortcut = QShortcut(keys, self.list)
            shortcut.setContext(Qt.ShortcutContext.WidgetShortcut)
            shortcut.activated.connect(slot)

    def set_services(self, services: "Services", jobs: "Jobs") -> None:
        self.services = services
        self.jobs = jobs
        self.refresh()

    # ----- the list ------------------------------------------------------------------------
    def refresh(self) -> None:
        if self.services is None or self.jobs is None:
            return
        self.jobs.run(self.services.conversations.list, on_done=self._fill, on_error=self._error)

    def _fill(self, conversations: list) -> None:
        self._filling = True
        self.list.clear()
        selected = None
        for conversation in conversations:
            item = QListWidgetItem(conversation.title)
            # An icon, not an emoji: many desktops have no emoji font.
            item.setIcon(self._pin_icon if conversation.pinned else self._no_icon)
            item.setData(ID_ROLE, conversation.id)
            item.setData(PINNED_ROLE, conversation.pinned)
            item.setToolTip(conversation.title)
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsEditable)
            self.list.addItem(item)
            if conversation.id == self.current_id:
                selected = item
        if selected is not None:
            self.list.setCurrentItem(selected)
        else:
            self.list.clearSelection()
        self._filling = False
        self.sig_conversations_loaded.emit()

    def item_for(self, conversation_id: str) -> QListWidgetItem | None:
        for row in range(self.list.count()):
            item = self.list.item(row)
            if item.data(ID_ROLE) == conversation_id:
                return item
        return None

    def set_current(self, conversation_id: str) -> None:
        """The chat pane shows this conversation ("" for a new one): select it, refresh titles."""
        self.current_id = conversation_id or None
        item = self.item_for(conversation_id) if conversation_id else None
        self._filling = True
        if item is not None:
            self.list.setCurrentItem(item)
        else:
            self.list.clearSelection()
        self._filling = False
        if conversation_id and item is None:
            self.refresh()

    def _on_item_activated(self, item: QListWidgetItem) -> None:
        conversation_id = item.data(ID_ROLE)
        if conversation_id:
            self.current_id = conversation_id
            self.sig_conversation_selected.emit(conversation_id)

    def _context_menu(self, point: QPoint) -> None:
        item = self.list.itemAt(point)
        if item is None:
            return
        menu = QMenu(self)
        menu.setAccessibleName("Conversation actions")
        pinned = bool(item.data(PINNED_ROLE))
        menu.addAction("Rename", lambda: self.rename(item))
        menu.addAction("Unpin" if pinned else "Pin to top", lambda: self.pin(item.data(ID_ROLE), not pinned))
        menu.addSeparator()
        menu.addAction("Delete", lambda: self.delete(item.data(ID_ROLE)))
        menu.popup(self.list.viewport().mapToGlobal(point))

    def rename_current(self) -> None:
        item = self.list.currentItem()
        if item is not None:
            self.rename(item)

    def rename(self, item: QListWidgetItem) -> None:
        """Edit the title in place (Enter keeps it, Esc cancels); saved by a job."""
        self.list.editItem(item)

    def _on_item_renamed(self, item: QListWidgetItem) -> None:
        if self._filling or self.services is None or self.jobs is None:
            return
        title = item.text().strip()
        if not title or title == item.toolTip():
            self.refresh()
            return
        self.jobs.run(self.services.conversations.rename, item.data(ID_ROLE), title,
                      on_done=lambda _c: self.refresh(), on_error=self._error)

    def pin(self, conversation_id: str, pinned: bool) -> None:
        if self.services and self.jobs:
            self.jobs.run(self.services.conversations.pin, conversation_id, pinned,
                          on_done=lambda _c: self.refresh(), on_error=self._error)

    def delete_current(self) -> None:
        item = self.list.currentItem()
        if item is not None:
            self.delete(item.data(ID_ROLE))

    def delete(self, conversation_id: str) -> None:
        """Move to the trash at once and offer Undo (nothing is destroyed until the trash is emptied)."""
        if not conversation_id or self.services is None or self.jobs is None:
            return
        self.jobs.run(self.services.conversations.delete, conversation_id,
                      on_done=self._deleted_done, on_error=self._error)

    def _deleted_done(self, conversation) -> None:
        self._deleted = (conversation.id, conversation.title)
        self.undo_button.show()
        self.undo_label.setText(f"Deleted “{conversation.title}”.")
        self.undo_bar.show()
        self._undo_timer.start()
        self.sig_conversation_deleted.emit(conversation.id)
        self.refresh()

    def undo_delete(self) -> None:
        if self._deleted is None or self.services is None or self.jobs is None:
            return
        conversation_id, _title = self._deleted
        self._forget_undo()
        self.jobs.run(self.services.conversations.restore, conversation_id,
                      on_done=lambda c: (self.refresh(), self.sig_conversation_selected.emit(c.id)),
                      on_error=self._error)

    def _forget_undo(self) -> None:
        self._deleted = None
        self._undo_timer.stop()
        self.undo_bar.hide()
        self.undo_button.show()

    # ----- search -------------------------------------------------------------------------
    def focus_search(self) -> None:
        self.search_box.setFocus(Qt.FocusReason.ShortcutFocusReason)
        self.search_box.selectAll()

    def _on_query_changed(self, text: str) -> None:
        if text.strip():
            self._search_timer.start()
        else:
            self._search_timer.stop()
            self._search_seq += 1
            self.hits = []
            self.results.clear()
            self.results.hide()
            self.search_status.hide()
            self.list.show()

    def run_search(self) -> None:
        query = self.search_box.text().strip()
        if not query or self.services is None or self.jobs is None:
            return
        self._search_seq += 1
        seq = self._search_seq
        self.search_status.setText("Searching…")
        self.search_status.show()
        self.jobs.run(self.services.history.search, query,
                      on_done=lambda hits: self._show_hits(hits, seq),
                      on_error=lambda message, exc: self._search_failed(message, seq))

    def _show_hits(self, hits: list, seq: int) -> None:
        if seq != self._search_seq:
            return  # an older query answered late
        self.hits = list(hits)
        self.results.clear()
        for hit in self.hits:
            item = QListWidgetItem()
            item.setData(ID_ROLE, hit.conversation_id)
            item.setData(MESSAGE_ROLE, hit.message_id or "")
            item.setToolTip(hit.conversation_title)
            label = QLabel(hit_html(hit))
            label.setWordWrap(True)
            label.setTextFormat(Qt.TextFormat.RichText)
            label.setContentsMargins(6, 4, 6, 4)
            label.setAttribute(Qt.WidgetAttribute.WA_TransparentForMouseEvents)
            item.setSizeHint(QSize(100, label.sizeHint().height() + 10))
            self.results.addItem(item)
            self.results.setItemWidget(item, label)
        count = len(self.hits)
        self.search_status.setText(f"{count} match{'es' if count != 1 else ''}" if count else "No matches.")
        self.list.hide()
        self.results.show()
        self.sig_search_finished.emit(count)

    def _search_failed(self, message: str, seq: int) -> None:
        if seq != self._search_seq:
            return
        self.hits = []
        self.results.clear()
        self.search_status.setText(message)
        self.search_status.show()

    def _open_first_hit(self) -> None:
        if self.results.count():
            self._on_hit_activated(self.results.item(0))

    def _on_hit_activated(self, item: QListWidgetItem) -> None:
        conversation_id = item.data(ID_ROLE)
        if conversation_id:
            self.current_id = conversation_id
            self.sig_hit_activated.emit(conversation_id, item.data(MESSAGE_ROLE) or "")

    def open_hit(self, index: int) -> None:
        """Open the ``index``-th search result, as a click would."""
        self._on_hit_activated(self.results.item(index))

    def _error(self, message: str, _exc: Any = None) -> None:
        self.undo_label.setText(message)
        self.undo_button.hide()
        self.undo_bar.show()
        self._undo_timer.start()

    def sizeHint(self) -> QSize:  # noqa: N802
        return QSize(260, 600)
