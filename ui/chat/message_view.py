"""One message of the chat: its text rendered as Markdown while it streams, its sources,
its small print and its actions (copy, edit, regenerate). GUI thread only."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QLabel,
    QSizePolicy,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from assistant.wording import metrics_line
from ui.chat.reasoning_view import ReasoningSection
from ui.markdown import SafeTextBrowser, quote_html, render

#: Widest a message column gets: long lines are hard to read.
MAX_COLUMN_WIDTH = 860
#: Streaming text is re-rendered at most this often (Markdown layout costs more than a token).
RENDER_INTERVAL_MS = 50


class MessageText(SafeTextBrowser):
    """A message body: as tall as its text, so the column scrolls, not each message."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("MessageText")
        self.setAccessibleName("Message text")
        self.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAsNeeded)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.document().setDocumentMargin(2)
        self.document().documentLayout().documentSizeChanged.connect(self._fit)
        self.setFocusPolicy(Qt.FocusPolicy.ClickFocus)
        self._fit()

    def _fit(self, *_: Any) -> None:
        height = int(self.document().size().height()) + 2 * self.frameWidth() + 2
        bar = self.horizontalScrollBar()
        if bar.isVisible():
            height += bar.sizeHint().height()
        if height != self.height():
            self.setFixedHeight(max(height, 20))

    def resizeEvent(self, event) -> None:  # noqa: N802 (Qt's name)
        super().resizeEvent(event)
        self._fit()

    def wheelEvent(self, event) -> None:  # noqa: N802
        # The column scrolls; a message never does vertically.
        event.ignore()


class MessageView(QFrame):
    """One message: who wrote it, its text, small print, and its actions."""

    sig_edit_requested = Signal(str)  # message id
    sig_regenerate_requested = Signal(str)  # message id
    sig_variant_requested = Signal(str)  # id of the variant of this reply to show instead
    sig_source_opened = Signal(int)  # chunk id of a cited passage

    def __init__(self, role: str, colors: dict, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("MessageCard")
        self.setProperty("role", role)
        self.role = role
        self.message_id: str | None = None
        self.text = ""
        self.status = "complete"
        self.colors = colors
        self.setMaximumWidth(MAX_COLUMN_WIDTH)
        self.setAccessibleName("Your message" if role == "user" else "Assistant's reply")

        layout = QVBoxLayout(self)
        layout.setContentsMargins(12, 6, 8, 8)
        layout.setSpacing(2)
        header = QHBoxLayout()
        self.role_label = QLabel("You" if role == "user" else "Assistant")
        self.role_label.setObjectName("MessageRole")
        self.interrupted_tag = QLabel("interrupted")
        self.interrupted_tag.setObjectName("InterruptedTag")
        self.interrupted_tag.setAccessibleName("Reply interrupted")
        self.interrupted_tag.hide()
        header.addWidget(self.role_label)
        header.addWidget(self.interrupted_tag)
        header.addStretch(1)
        header.setSpacing(6)
        self.copy_button = self._action("Copy", "Copy this message", self.copy)
        self.edit_button = self._action("Edit", "Edit and resend your last message",
                                        lambda: self.sig_edit_requested.emit(self.message_id or ""))
        self.regenerate_button = self._action("Regenerate", "Write this reply again",
                                              lambda: self.sig_regenerate_requested.emit(self.message_id or ""))
        for button in (self.copy_button, self.edit_button, self.regenerate_button):
            header.addWidget(button)
        self.edit_button.hide()
        self.regenerate_button.hide()
        layout.addLayout(header)

        # A reasoning model's thinking, collapsed above the answer (hidden for other replies).
        self.reasoning = ReasoningSection(self)
        layout.addWidget(self.reasoning)
        self._body_hidden_for_thinking = False  # the "…" placeholder gave way to "Thinking…"

        self.body = MessageText(self)
        layout.addWidget(self.body)

        # "2/3 ‹ ›" under a regenerated reply: the variants kept of it, the shown one chosen.
        self.variant_ids: list[str] = []
        self.variant_bar = QWidget(self)
        variant_row = QHBoxLayout(self.variant_bar)
        variant_row.setContentsMargins(0, 0, 0, 0)
        variant_row.setSpacing(2)
        self.variant_label = QLabel("")
        self.variant_label.setObjectName("Metrics")
        self.variant_label.setAccessibleName("Variant of this reply")
        self.previous_variant = self._action("‹", "Show the previous variant of this reply", lambda: self._step_variant(-1))
        self.next_variant = self._action("›", "Show the next variant of this reply", lambda: self._step_variant(1))
        variant_row.addWidget(self.variant_label)
        variant_row.addWidget(self.previous_variant)
        variant_row.addWidget(self.next_variant)
        variant_row.addStretch(1)
        self.variant_bar.hide()
        layout.addWidget(self.variant_bar)

        # Small print under a reply: model, speed, time to first token.
        self.metrics_label = QLabel("")
        self.metrics_label.setObjectName("Metrics")
        self.metrics_label.setAccessibleName("Reply metrics")
        self.metrics_label.hide()
        layout.addWidget(self.metrics_label)

        # The passages from the user's documents that the reply was given, each a link.
        self.sources: list[dict] = []
        self._attempt_open = False  # the user opened the model's attempt that does not agree
        self.sources_label = QLabel("")
        self.sources_label.setObjectName("Sources")
        self.sources_label.setAccessibleName("Sources of this reply")
        self.sources_label.setWordWrap(True)
        self.sources_label.setTextFormat(Qt.TextFormat.RichText)
        self.sources_label.setTextInteractionFlags(Qt.TextInteractionFlag.LinksAccessibleByMouse
                                                   | Qt.TextInteractionFlag.LinksAccessibleByKeyboard)
        self.sources_label.linkActivated.connect(self._source_link)
        self.sources_label.hide()
        layout.addWidget(self.sources_label)

        self._render_timer = QTimer(self)
        self._render_timer.setSingleShot(True)
        self._render_timer.setInterval(RENDER_INTERVAL_MS)
        self._render_timer.timeout.connect(self._render)

    def _action(self, text: str, accessible: str, slot) -> QToolButton:
        button = QToolButton(self)
        button.setObjectName("MessageAction")
        button.setText(text)
        button.setAccessibleName(accessible)
        button.setToolTip(accessible)
        button.setCursor(Qt.CursorShape.PointingHandCursor)
        button.clicked.connect(slot)
        return button

    # ----- content -------------------------------------------------------------------
    def set_text(self, text: str) -> None:
        self.text = text
        self._render()

    def append_text(self, text: str) -> None:
        self.text += text
        self.reasoning.answer_started()
        if self._body_hidden_for_thinking:
            self._body_hidden_for_thinking = False
            self.body.show()
        if not self._render_timer.isActive():
            self._render_timer.start()

    def append_reasoning(self, text: str) -> None:
        """The next piece of the model's thinking, streamed into the collapsed section."""
        self.reasoning.append(text)
        if not self.text and self.body.isVisibleTo(self):
            self._body_hidden_for_thinking = True
            self.body.hide()  # no "…" under the thinking: the section says "Thinking…"

    def set_placeholder(self, text: str) -> None:
        self.body.setPlainText(text)

    def _render(self) -> None:
        if self.role == "user":
            # What the user typed is shown as typed: no Markdown surprises in their own words.
            self.body.setPlainText(self.text)
        else:
            render(self.body.document(), self.text, self.colors, self.body.font())

    def set_colors(self, colors: dict) -> None:
        self.colors = colors
        self._render()

    def set_message(self, message) -> None:
        """Show a stored :class:`~assistant.history.conversations.Message`."""
        self.message_id = message.id
        self.status = message.status
        self._render_timer.stop()
        self.set_text(message.text)
        reasoning = getattr(message, "reasoning", "") or ""
        self.reasoning.set_reasoning(reasoning, message.metrics or {})
        if reasoning and not message.text:
            self.body.hide()  # cut inside its thinking: the section's note says so
        elif self._body_hidden_for_thinking:
            self.body.show()
        self._body_hidden_for_thinking = False
        self.interrupted_tag.setVisible(message.status == "interrupted")
        bits = []
        if self.role == "assistant" and message.model:
            bits.append(message.model)
        metrics = metrics_line(message.metrics or {})
        if metrics:
            bits.append(metrics)
        self.metrics_label.setText(" · ".join(bits))
        self.metrics_label.setVisible(bool(bits))
        if self.variant_ids:
            self.set_variants(self.variant_ids)  # the counter follows the variant shown

    def set_sources(self, sources: list[dict]) -> None:
        """Show the cited passages of a reply from documents, above its text: first the sentence
        that answers with its citation (or "I couldn't find this"), then "[1] file, page 3"
        links that open the passages. The reply's own text shows only once the core found that
        it agrees with that sentence; otherwise behind "Show the model's attempt"."""
        from html import escape

        from assistant.chat.sources import shown_answer

        self.sources = list(sources)
        if not self.sources:
            self.sources_label.hide()
            self.body.show()
            return
        links = [f'<a href="chunk:{int(s["chunk_id"])}">[{int(s["number"])}] {escape(s["file"])}, '
                 f'{escape(s["location"])}</a>' for s in self.sources]
        shown = shown_answer(self.sources)
        # The passage's own sentence: the app stands behind it (assistant/documents/answers.py).
        if shown["found"]:
            answer = quote_html(shown["number"], shown["chunk_id"], shown["text"]) + "<br>"
        else:
            answer = f"<b>{escape(shown['text'])}</b><br>"
        if not shown["checked"]:
            attempt = "<i>Checking the model's wording against your documents…</i><br>"
        elif shown["agrees"]:
            attempt = ""
        else:
            attempt = f'<a href="attempt:toggle">{"Hide" if self._attempt_open else "Show"} the model\'s attempt</a><br>'
        self.body.setVisible(shown["checked"] and (shown["agrees"] or self._attempt_open))
        self.sources_label.setText(answer + attempt + "Sources: " + " · ".join(links))
        # The answer goes above the reply's text.
        layout = self.layout()
        if layout.indexOf(self.sources_label) > layout.indexOf(self.body):
            layout.removeWidget(self.sources_label)
            layout.insertWidget(layout.indexOf(self.body), self.sources_label)
        self.sources_label.show()

    def _source_link(self, link: str) -> None:
        if link == "attempt:toggle":
            self._attempt_open = not self._attempt_open
            self.set_sources(self.sources)
            return
        if link.startswith("chunk:") and link[6:].isdigit():
            self.sig_source_opened.emit(int(link[6:]))

    def set_streaming(self, model_label: str) -> None:
        self.status = "streaming"
        self.metrics_label.setText(f"{model_label} · writing…" if model_label else "writing…")
        self.metrics_label.show()

    def set_actions(self, edit: bool, regenerate: bool, switch: bool = True) -> None:
        self.edit_button.setVisible(edit)
        self.regenerate_button.setVisible(regenerate)
        self.variant_bar.setEnabled(switch)

    def set_variants(self, variant_ids: list[str]) -> None:
        """The ids of this reply's variants, oldest first (this message's id among them); the
        switcher shows only when there are two or more."""
        self.variant_ids = list(variant_ids)
        shown = len(self.variant_ids) > 1 and self.message_id in self.variant_ids
        self.variant_bar.setVisible(shown)
        if shown:
            index = self.variant_ids.index(self.message_id)
            self.variant_label.setText(f"{index + 1}/{len(self.variant_ids)}")
            self.previous_variant.setEnabled(index > 0)
            self.next_variant.setEnabled(index < len(self.variant_ids) - 1)

    def _step_variant(self, step: int) -> None:
        if self.message_id not in self.variant_ids:
            return
        index = self.variant_ids.index(self.message_id) + step
        if 0 <= index < len(self.variant_ids):
            self.sig_variant_requested.emit(self.variant_ids[index])

    def set_found(self, found: bool) -> None:
        self.setProperty("found", "true" if found else "false")
        self.style().unpolish(self)
        self.style().polish(self)

    def copy(self) -> None:
        QGuiApplication.clipboard().setText(self.text)
