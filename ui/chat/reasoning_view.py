"""A reasoning model's thinking above its reply: one collapsed line ("Thinking…" while it
streams, "Thought for 12 s" after) that opens the thinking as plain text, and a note when the
reply stopped before its thinking ended. GUI thread only; the split itself is the core's
(:mod:`assistant.chat.reasoning`)."""

from __future__ import annotations

import time

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel, QSizePolicy, QToolButton, QVBoxLayout, QWidget

from assistant.chat.reasoning import METRIC_THINKING_S, METRIC_UNCLOSED, UNCLOSED_NOTE, thinking_line


class ReasoningSection(QWidget):
    """Collapsed by default: thinking is long and most readers want the answer."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("ReasoningSection")
        self.text = ""
        self._started: float | None = None  # when the first thought arrived (streaming)
        self._ended: float | None = None
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 4)
        layout.setSpacing(2)
        self.toggle = QToolButton(self)
        self.toggle.setObjectName("ReasoningToggle")
        self.toggle.setCheckable(True)
        self.toggle.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.toggle.setArrowType(Qt.ArrowType.RightArrow)
        self.toggle.setAutoRaise(True)
        self.toggle.setCursor(Qt.CursorShape.PointingHandCursor)
        self.toggle.setAccessibleName("Show the model's reasoning")
        self.toggle.toggled.connect(self._set_open)
        layout.addWidget(self.toggle, 0, Qt.AlignmentFlag.AlignLeft)
        # Plain text: the thinking is a draft, not formatted prose, and never rendered as HTML.
        self.body = QLabel(self)
        self.body.setObjectName("ReasoningText")
        self.body.setAccessibleName("The model's reasoning")
        self.body.setTextFormat(Qt.TextFormat.PlainText)
        self.body.setWordWrap(True)
        self.body.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse
                                          | Qt.TextInteractionFlag.TextSelectableByKeyboard)
        self.body.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
        self.body.hide()
        layout.addWidget(self.body)
        self.note = QLabel(UNCLOSED_NOTE, self)
        self.note.setObjectName("MutedLabel")
        self.note.setAccessibleName("Why there is no answer")
        self.note.setWordWrap(True)
        self.note.hide()
        layout.addWidget(self.note)
        self.hide()

    @property
    def expanded(self) -> bool:
        return self.toggle.isChecked()

    def _set_open(self, shown: bool) -> None:
        self.toggle.setArrowType(Qt.ArrowType.DownArrow if shown else Qt.ArrowType.RightArrow)
        self.toggle.setAccessibleName("Hide the model's reasoning" if shown else "Show the model's reasoning")
        if shown:
            self.body.setText(self.text.strip())  # kept current only while open: a long thought re-lays out
        self.body.setVisible(shown and bool(self.text))

    # ----- while the reply streams -------------------------------------------------------------
    def append(self, text: str) -> None:
        if self._started is None:
            self._started = time.monotonic()
        self.text += text
        if self.expanded:
            self.body.setText(self.text.strip())
        if self._ended is None:
            self.toggle.setText(thinking_line(None, streaming=True))
        self.show()

    def answer_started(self) -> None:
        """The first piece of the answer came: the thinking is over."""
        if self._started is not None and self._ended is None:
            self._ended = time.monotonic()
            self.toggle.setText(thinking_line(self._ended - self._started))

    # ----- a stored reply ----------------------------------------------------------------------
    def set_reasoning(self, reasoning: str, metrics: dict) -> None:
        self.text = reasoning or ""
        if not self.text:
            self.hide()
            return
        unclosed = bool(metrics.get(METRIC_UNCLOSED))
        seconds = metrics.get(METRIC_THINKING_S)
        self.toggle.setText(thinking_line(seconds if isinstance(seconds, (int, float)) else None, unclosed))
        self.body.setText(self.text)
        self.body.setVisible(self.expanded)
        self.note.setVisible(unclosed)
        self.show()
