"""The chat's smaller widgets: the composer that grows with its text, the banner for errors
and notices, the incognito chat's banner, the dialog that shows a cited passage. GUI thread only."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QEvent, Qt, Signal
from PySide6.QtGui import QKeyEvent
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFrame,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSizePolicy,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from ui.markdown import SafeTextBrowser, show_passage
from ui.suggesting_edit import SuggestingTextEdit

#: Composer height limits, in lines of text.
COMPOSER_MIN_LINES = 1
COMPOSER_MAX_LINES = 8


class Composer(SuggestingTextEdit):
    """The message box: Enter sends, Shift+Enter adds a line, it grows with its text; grey
    writing suggestions as the user types (Tab accepts)."""

    sig_send_requested = Signal()

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("Composer")
        self.setAccessibleName("Message")
        self.setAccessibleDescription("Type a message. Enter sends it, Shift+Enter adds a line.")
        self.setPlaceholderText("Message the assistant (Enter sends, Shift+Enter adds a line)")
        self.setTabChangesFocus(True)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.document().documentLayout().documentSizeChanged.connect(self._grow)
        self._grow()

    def handle_key(self, event: QKeyEvent) -> None:
        if event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter):
            if event.modifiers() & Qt.KeyboardModifier.ShiftModifier:
                self.textCursor().insertText("\n")
                return
            if not event.modifiers() & ~Qt.KeyboardModifier.KeypadModifier:
                self.sig_send_requested.emit()
                return
        super().handle_key(event)

    def lines_shown(self) -> int:
        # QPlainTextEdit's layout measures its document in lines (wrapped ones included).
        lines = int(self.document().documentLayout().documentSize().height())
        return max(COMPOSER_MIN_LINES, min(COMPOSER_MAX_LINES, lines))

    def _grow(self, *_: Any) -> None:
        line = self.fontMetrics().lineSpacing()
        margins = self.contentsMargins()
        height = self.lines_shown() * line + int(2 * self.document().documentMargin()) + margins.top() + margins.bottom() + 6
        if height != self.height():
            self.setFixedHeight(height)

    def changeEvent(self, event: QEvent) -> None:  # noqa: N802
        super().changeEvent(event)
        if event.type() in (QEvent.Type.FontChange, QEvent.Type.StyleChange):
            self._grow()


class Banner(QFrame):
    """A one-line notice at the top of a pane (engine trouble, edit mode) with a close button,
    and at most one action button (:meth:`set_action`: "Restore the newest backup")."""

    sig_banner_closed = Signal()
    sig_action_clicked = Signal()

    def __init__(self, name: str, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("Banner")
        self.setProperty("kind", "info")
        self.setAccessibleName(name)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(10, 6, 6, 6)
        self.label = QLabel("")
        self.label.setWordWrap(True)
        self.label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout.addWidget(self.label, 1)
        self.action_button = QPushButton(self)
        self.action_button.setAccessibleName(f"{name} action")
        self.action_button.clicked.connect(self.sig_action_clicked)
        self.action_button.hide()
        layout.addWidget(self.action_button)
        self.close_button = QToolButton(self)
        self.close_button.setText("✕")
        self.close_button.setAutoRaise(True)
        self.close_button.setAccessibleName(f"Close {name.lower()}")
        self.close_button.clicked.connect(self.dismiss)
        layout.addWidget(self.close_button)
        self.hide()

    def set_action(self, text: str = "") -> None:
        """Show an action button with ``text`` (its click is :attr:`sig_action_clicked`); "" hides it."""
        self.action_button.setText(text)
        if text:
            self.action_button.setAccessibleName(text)
        self.action_button.setEnabled(True)
        self.action_button.setVisible(bool(text))

    def show_message(self, text: str, kind: str = "info") -> None:
        self.label.setText(text)
        self.setProperty("kind", kind)
        self.style().unpolish(self)
        self.style().polish(self)
        self.show()

    def dismiss(self) -> None:
        self.hide()
        self.sig_banner_closed.emit()


class IncognitoBanner(QFrame):
    """The strip that marks an incognito chat: always shown while it lasts, never dismissed."""

    TEXT = "Incognito — this chat is not saved and disappears when you close it."

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("IncognitoBanner")
        self.setAccessibleName("Incognito notice")
        layout = QHBoxLayout(self)
        layout.setContentsMargins(14, 6, 10, 6)
        self.label = QLabel(self.TEXT)
        self.label.setWordWrap(True)
        self.label.setAccessibleName(self.TEXT)
        self.setToolTip("Not in the conversation list, not in history search, never written to disk. "
                        "Switching to another conversation, starting a new chat or closing the window forgets it.")
        layout.addWidget(self.label, 1)
        self.hide()


class SourceDialog(QDialog):
    """A cited passage: its file, its page or section, and the text. GUI thread."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("Source")
        self.setAccessibleName("Source passage")
        self.resize(620, 420)
        layout = QVBoxLayout(self)
        self.where = QLabel("")
        self.where.setAccessibleName("Where the passage is")
        self.where.setWordWrap(True)
        self.where.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout.addWidget(self.where)
        self.passage = SafeTextBrowser(self)
        self.passage.setAccessibleName("Passage")
        layout.addWidget(self.passage, 1)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close, self)
        buttons.rejected.connect(self.reject)
        for button in buttons.buttons():
            button.setAccessibleName("Close the source")
        layout.addWidget(buttons)
        self.source: dict = {}

    def show_source(self, source: dict) -> None:
        self.source = dict(source)
        self.where.setText(f"{source['path']} · {source['location']}")
        show_passage(self.passage, source["passage"])
        self.open()
