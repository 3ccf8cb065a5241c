"""Widgets that never force the window wider than the screen, whatever text they are given.

A QLabel asks for the whole width of its text and a QComboBox for the width of its longest
item, so one 200-character conversation title or model name widens the whole window
(issue 19, point 2). These keep the full text for the tooltip and screen readers and show
what fits. GUI thread only.
"""

from __future__ import annotations

from PySide6.QtCore import QSize, Qt
from PySide6.QtGui import QPainter, QPaintEvent, QResizeEvent
from PySide6.QtWidgets import QComboBox, QLabel, QWidget

#: How many characters a compact combo box asks room for: enough to tell model names apart
#: ("SmolLM2-135M-Instruct-Q4"), short enough that three such boxes fit beside a title at 1024 px.
COMBO_MIN_CHARS = 22


def compact_combo(combo: QComboBox, min_chars: int = COMBO_MIN_CHARS) -> QComboBox:
    """Size ``combo`` by ``min_chars`` characters instead of its longest item (the open list
    still shows every item in full, and the tooltip the chosen one)."""
    combo.setMinimumContentsLength(min_chars)
    combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
    combo.currentTextChanged.connect(lambda text, c=combo: c.setToolTip(text) if len(text) > min_chars else None)
    return combo


class ElidedLabel(QLabel):
    """A one-line label that shows "…" where its text does not fit, and asks for no more than
    ``min_chars`` characters of width. ``text()`` is the whole text; so is the tooltip while
    the text is cut. Plain text only."""

    def __init__(self, text: str = "", parent: QWidget | None = None, *,
                 elide: Qt.TextElideMode = Qt.TextElideMode.ElideRight, min_chars: int = 8):
        super().__init__(parent)
        self._elide = elide
        self._min_chars = min_chars
        self._own_tooltip = ""
        self.setTextFormat(Qt.TextFormat.PlainText)
        self.setText(text)

    def setText(self, text: str) -> None:  # noqa: N802 (Qt's name)
        super().setText(text)
        self._update_tooltip()

    def setToolTip(self, text: str) -> None:  # noqa: N802 (Qt's name)
        self._own_tooltip = text
        super().setToolTip(text)

    def is_elided(self) -> bool:
        return self.fontMetrics().horizontalAdvance(self.text()) > self.contentsRect().width()

    def minimumSizeHint(self) -> QSize:  # noqa: N802 (Qt's name)
        hint = super().minimumSizeHint()
        width = self.fontMetrics().averageCharWidth() * self._min_chars
        margins = self.contentsMargins()
        return QSize(min(hint.width(), width + margins.left() + margins.right()), hint.height())

    def resizeEvent(self, event: QResizeEvent) -> None:  # noqa: N802 (Qt's name)
        super().resizeEvent(event)
        self._update_tooltip()

    def _update_tooltip(self) -> None:
        # The whole text on hover only when some of it is hidden (a caller's own tooltip wins).
        if not self._own_tooltip:
            QLabel.setToolTip(self, self.text() if self.is_elided() else "")

    def paintEvent(self, event: QPaintEvent) -> None:  # noqa: N802 (Qt's name)
        painter = QPainter(self)
        rect = self.contentsRect()
        shown = self.fontMetrics().elidedText(self.text(), self._elide, rect.width())
        self.style().drawItemText(painter, rect, int(self.alignment()), self.palette(), self.isEnabled(),
                                  shown, self.foregroundRole())
