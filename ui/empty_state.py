"""What a page shows before it has anything to show: one sentence and one action.

GUI thread only.
"""

from __future__ import annotations

from typing import Callable

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel, QPushButton, QVBoxLayout, QWidget


class EmptyState(QWidget):
    """A centred sentence saying what the page is for, and the button that starts it."""

    def __init__(self, text: str, action: str, on_action: Callable[[], None], *, name: str, action_name: str,
                 action_tip: str = "", parent: QWidget | None = None):
        super().__init__(parent)
        self.setAccessibleName(name)
        layout = QVBoxLayout(self)
        layout.addStretch(1)
        self.label = QLabel(text)
        self.label.setWordWrap(True)
        self.label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.button = QPushButton(action)
        self.button.setObjectName("PrimaryButton")
        self.button.setAccessibleName(action_name)
        if action_tip:
            self.button.setToolTip(action_tip)
        self.button.clicked.connect(lambda _checked=False: on_action())
        layout.addWidget(self.label)
        layout.addWidget(self.button, 0, Qt.AlignmentFlag.AlignHCenter)
        layout.addStretch(1)
