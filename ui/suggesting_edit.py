"""Grey inline writing suggestions for a text box (the chat composer, the translate box).

GUI thread for the widgets. :class:`SuggestingTextEdit` paints a suggestion after the
cursor: Tab accepts it, any other key dismisses it and is typed as usual, so typing is
never blocked. :class:`SuggestionController` asks :class:`assistant.tasks.suggestions.Suggester`
after a pause in typing; the request is sent from a pool thread (the engine starts lazily
and may take a moment), the result arrives on the suggester's private thread and is handed
to the GUI thread through a queued signal. A suggestion for text that has changed since it
was asked for is never shown.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtCore import QEvent, QObject, QThreadPool, Qt, QTimer, Signal
from PySide6.QtGui import QColor, QKeyEvent, QPainter
from PySide6.QtWidgets import QPlainTextEdit, QWidget

from ui.jobs import _foreign_thread_bookkeeping  # Python's bookkeeping for pool threads

if TYPE_CHECKING:
    from assistant.tasks.suggestions import Suggester

#: Pause in typing before a suggestion is asked for: long enough not to ask at every key
#: of a fast typist, short enough that the suggestion is there when they look up.
SUGGEST_DEBOUNCE_MS = 250


class SuggestingTextEdit(QPlainTextEdit):
    """A text box that shows a grey suggestion after the cursor. GUI thread only."""

    sig_suggestion_wanted = Signal(str)  # the whole text, after a pause with the cursor at the end
    sig_suggestion_dismissed = Signal()

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.suggestion = ""
        self.suggestions_enabled = True
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(SUGGEST_DEBOUNCE_MS)
        self._timer.timeout.connect(self._ask)

    def _ask(self) -> None:
        cursor = self.textCursor()
        if self.suggestions_enabled and cursor.atEnd() and not cursor.hasSelection() and self.toPlainText().strip():
            self.sig_suggestion_wanted.emit(self.toPlainText())

    def show_suggestion(self, text: str, for_text: str) -> None:
        """Shown only if the text has not changed since it was asked for."""
        if self.suggestions_enabled and for_text == self.toPlainText() and text and self.textCursor().atEnd():
            self.suggestion = text
            self.viewport().update()

    def dismiss(self) -> None:
        self._timer.stop()
        if self.suggestion:
            self.suggestion = ""
            self.viewport().update()
        self.sig_suggestion_dismissed.emit()

    def accept_suggestion(self) -> bool:
        if not self.suggestion:
            return False
        text, self.suggestion = self.suggestion, ""
        self.moveCursor(self.textCursor().MoveOperation.End)
        self.insertPlainText(text)
        self.viewport().update()
        return True

    def event(self, event: QEvent) -> bool:  # noqa: N802
        # Tab must reach us even where Tab moves the focus (the composer): with a suggestion
        # shown it accepts it; without one it keeps its usual meaning.
        if event.type() == QEvent.Type.KeyPress and isinstance(event, QKeyEvent) \
                and event.key() == Qt.Key.Key_Tab and not event.modifiers() and self.suggestion:
            self.accept_suggestion()
            return True
        return super().event(event)

    def keyPressEvent(self, event: QKeyEvent) -> None:  # noqa: N802
        if event.key() == Qt.Key.Key_Tab and not event.modifiers() and self.accept_suggestion():
            return
        if self.suggestion or self._timer.isActive():
            self.dismiss()
        self.handle_key(event)
        if event.text() and event.text().isprintable() and self.suggestions_enabled:
            self._timer.start()

    def handle_key(self, event: QKeyEvent) -> None:
        """The key itself, once the suggestion is dealt with; subclasses add their keys."""
        super().keyPressEvent(event)

    def focusOutEvent(self, event) -> None:  # noqa: N802
        if self.suggestion:
            self.dismiss()
        super().focusOutEvent(event)

    def paintEvent(self, event) -> None:  # noqa: N802
        super().paintEvent(event)
        if not self.suggestion:
            return
        rect = self.cursorRect()
        painter = QPainter(self.viewport())
        color = QColor(self.palette().text().color())
        color.setAlpha(110)
        painter.setPen(color)
        painter.setFont(self.font())
        baseline = rect.top() + self.fontMetrics().ascent()
        painter.drawText(rect.right() + 1, baseline, self.suggestion)
        painter.end()


class _SuggestionBridge(QObject):
    sig_suggestion_received = Signal(str, str)  # suggestion, the text it continues


class SuggestionController(QObject):
    """Connects one :class:`SuggestingTextEdit` to a :class:`Suggester`. GUI thread; call
    :meth:`shutdown` before the box goes away."""

    def __init__(self, edit: SuggestingTextEdit, suggester: "Suggester", parent: QObject | None = None):
        super().__init__(parent or edit)
        self.edit = edit
        self.suggester = suggester
        self.pool = QThreadPool(self)
        # One request at a time is all a text box needs; the newer one supersedes.
        self.pool.setMaxThreadCount(1)
        self._closed = False
        self._bridge = _SuggestionBridge(self)
        self._bridge.sig_suggestion_received.connect(edit.show_suggestion)
        edit.sig_suggestion_wanted.connect(self._want)
        edit.sig_suggestion_dismissed.connect(suggester.cancel)

    def set_enabled(self, enabled: bool) -> None:
        self.edit.suggestions_enabled = bool(enabled)
        if not enabled:
            self.edit.dismiss()

    def _want(self, text: str) -> None:
        bridge = self._bridge

        def deliver(suggestion) -> None:  # the suggester's private thread
            if not self._closed:
                bridge.sig_suggestion_received.emit(suggestion.text, text)

        def ask() -> None:  # a pool thread
            with _foreign_thread_bookkeeping():
                if not self._closed:
                    try:
                        self.suggester.request(text, deliver)
                    except Exception:  # no suggestion is the right outcome of any failure here
                        pass

        self.pool.start(ask)

    def shutdown(self, timeout_ms: int = 30000) -> bool:
        """GUI thread: no more suggestions; wait for the request being sent."""
        self._closed = True
        self.suggester.cancel()
        return self.pool.waitForDone(timeout_ms)
