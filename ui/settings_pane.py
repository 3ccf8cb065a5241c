"""Settings: engine threads and context, sampling defaults, theme, font size, the default
persona. Saved in the store (a job) a moment after each change; theme and font size apply
at once. GUI thread only.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QTimer, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QLabel,
    QPlainTextEdit,
    QScrollArea,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from ui import operations
from ui.theme import THEME_LABELS, THEMES

if TYPE_CHECKING:
    from assistant.app import Services
    from ui.jobs import Jobs

#: Changes are saved this long after the last one: one write per burst of spin-box clicks.
SAVE_DELAY_MS = 400


class SettingsPane(QWidget):
    sig_appearance_changed = Signal(str, int)  # theme setting, font size (0 = the desktop's)
    sig_settings_saved = Signal()

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("SettingsPane")
        self.setAccessibleName("Settings")
        self.services: Services | None = None
        self.jobs: Jobs | None = None
        self._loading = False
        self._save_timer = QTimer(self)
        self._save_timer.setSingleShot(True)
        self._save_timer.setInterval(SAVE_DELAY_MS)
        self._save_timer.timeout.connect(self.save)
        self._build()
        self.setEnabled(False)  # until the settings are loaded

    def _spin(self, name: str, low: int, high: int, step: int = 1, special: str = "") -> QSpinBox:
        box = QSpinBox(self)
        box.setRange(low, high)
        box.setSingleStep(step)
        box.setAccessibleName(name)
        if special:
            box.setSpecialValueText(special)
        box.valueChanged.connect(self._changed)
        box.setMinimumWidth(140)
        box.setMaximumWidth(220)
        return box

    def _dspin(self, name: str, low: float, high: float, step: float, decimals: int = 2) -> QDoubleSpinBox:
        box = QDoubleSpinBox(self)
        box.setRange(low, high)
        box.setSingleStep(step)
        box.setDecimals(decimals)
        box.setAccessibleName(name)
        box.valueChanged.connect(self._changed)
        box.setMinimumWidth(140)
        box.setMaximumWidth(220)
        return box

    def _build(self) -> None:
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        scroll = QScrollArea(self)
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QScrollArea.Shape.NoFrame)
        scroll.setAccessibleName("Settings")
        outer.addWidget(scroll)
        body = QWidget()
        scroll.setWidget(body)
        layout = QVBoxLayout(body)
        layout.setContentsMargins(20, 16, 20, 16)
        body.setMaximumWidth(760)  # a form is read top to bottom; very wide fields only spread it out
        layout.setSpacing(12)
        title = QLabel("Settings")
        title.setObjectName("PaneTitle")
        layout.addWidget(title)

        cores = os.cpu_count() or 1
        engine = QGroupBox("Engine", body)
        form = QFormLayout(engine)
        self.threads = self._spin("Threads", 1, max(64, cores * 2))
        self.threads.setToolTip("One per physical core is fastest; more slows replies down.")
        self.n_ctx = self._spin("Context length in tokens", 256, 131072, 256)
        self.n_ctx.setToolTip("How much of the conversation the model sees. Longer costs memory.")
        form.addRow("Threads", self.threads)
        form.addRow("Context length (tokens)", self.n_ctx)
        note = QLabel("Engine changes apply the next time the engine starts.")
        note.setObjectName("MutedLabel")
        form.addRow("", note)
        layout.addWidget(engine)

        sampling = QGroupBox("Sampling defaults", body)
        form = QFormLayout(sampling)
        self.temperature = self._dspin("Temperature", 0.0, 5.0, 0.05)
        self.temperature.setToolTip("0 always picks the likeliest word; higher is more varied.")
        self.top_p = self._dspin("Top-p", 0.01, 1.0, 0.01)
        self.top_k = self._spin("Top-k", 0, 1000, 1, "off")
        self.min_p = self._dspin("Min-p", 0.0, 0.99, 0.01)
        self.repeat_penalty = self._dspin("Repeat penalty", 0.01, 5.0, 0.05)
        self.max_tokens = self._spin("Maximum reply length in tokens", 1, 32768, 32)
        self.seed = self._spin("Seed", -1, 2**31 - 1, 1, "random")
        for label, box in (("Temperature", self.temperature), ("Top-p", self.top_p), ("Top-k", self.top_k),
                           ("Min-p", self.min_p), ("Repeat penalty", self.repeat_penalty),
                           ("Maximum reply length (tokens)", self.max_tokens), ("Seed", self.seed)):
            form.addRow(label, box)
        layout.addWidget(sampling)

        appearance = QGroupBox("Appearance", body)
        form = QFormLayout(appearance)
        self.theme = QComboBox(self)
        self.theme.setAccessibleName("Theme")
        self.theme.setMaximumWidth(220)
        for key in THEMES:
            self.theme.addItem(THEME_LABELS[key], key)
        self.theme.currentIndexChanged.connect(self._appearance_changed)
        self.font_size = self._spin("Font size in points", 0, 32, 1, "Desktop default")
        self.font_size.valueChanged.connect(self._appearance_changed)
        form.addRow("Theme", self.theme)
        form.addRow("Font size", self.font_size)
        layout.addWidget(appearance)

        chat = QGroupBox("Chat", body)
        form = QFormLayout(chat)
        self.system_prompt = QPlainTextEdit(self)
        self.system_prompt.setAccessibleName("Default system prompt")
        self.system_prompt.setPlaceholderText("Empty: each model's own default")
        self.system_prompt.setFixedHeight(80)
        self.system_prompt.setTabChangesFocus(True)
        self.system_prompt.textChanged.connect(self._changed)
        self.suggestions = QCheckBox("Show writing suggestions while I type", self)
        self.suggestions.setAccessibleName("Writing suggestions")
        self.suggestions.toggled.connect(self._changed)
        form.addRow("Default system prompt", self.system_prompt)
        form.addRow("", self.suggestions)
        layout.addWidget(chat)

        self.status = QLabel("")
        self.status.setObjectName("MutedLabel")
        self.status.setAccessibleName("Settings status")
        self.status.setWordWrap(True)
        layout.addWidget(self.status)
        layout.addStretch(1)

    # ----- data ----------------------------------------------------------------------------
    def set_services(self, services: "Services", jobs: "Jobs") -> None:
        self.services = services
        self.jobs = jobs
        self.load(services.settings)
        self.setEnabled(True)

    def load(self, settings) -> None:
        """Show ``settings`` (an AppSettings, already in memory) without saving anything."""
        self._loading = True
        try:
            self.threads.setValue(int(settings.engine.n_threads))
            self.n_ctx.setValue(int(settings.engine.n_ctx))
            s = settings.sampling
            self.temperature.setValue(float(s.temperature))
            self.top_p.setValue(float(s.top_p))
            self.top_k.setValue(int(s.top_k))
            self.min_p.setValue(float(s.min_p))
            self.repeat_penalty.setValue(float(s.repeat_penalty))
            self.max_tokens.setValue(int(s.max_tokens))
            self.seed.setValue(int(s.seed))
            index = self.theme.findData(settings.theme)
            self.theme.setCurrentIndex(index if index >= 0 else 0)
            self.font_size.setValue(int(settings.font_size))
            self.system_prompt.setPlainText(settings.default_system_prompt)
            self.suggestions.setChecked(bool(settings.suggestions_enabled))
        finally:
            self._loading = False

    def values(self) -> dict:
        return {
            "engine": {"n_threads": self.threads.value(), "n_threads_batch": self.threads.value(),
                       "n_ctx": self.n_ctx.value()},
            "sampling": {
                "temperature": round(self.temperature.value(), 3),
                "top_p": round(self.top_p.value(), 3),
                "top_k": self.top_k.value(),
                "min_p": round(self.min_p.value(), 3),
                "repeat_penalty": round(self.repeat_penalty.value(), 3),
                "max_tokens": self.max_tokens.value(),
                "seed": self.seed.value(),
            },
            "theme": self.theme.currentData(),
            "font_size": self.font_size.value(),
            "default_system_prompt": self.system_prompt.toPlainText().strip(),
            "suggestions_enabled": self.suggestions.isChecked(),
        }

    def _changed(self, *_: Any) -> None:
        if not self._loading:
            self.status.setText("")
            self._save_timer.start()

    def _appearance_changed(self, *_: Any) -> None:
        if not self._loading:
            self.sig_appearance_changed.emit(self.theme.currentData(), self.font_size.value())
            self._save_timer.start()

    def set_theme(self, theme: str) -> None:
        """Choose a theme as the user would (applies at once, saved shortly after)."""
        index = self.theme.findData(theme)
        if index >= 0:
            self.theme.setCurrentIndex(index)

    def save(self) -> None:
        self._save_timer.stop()
        if self.services is None or self.jobs is None:
            return
        self.jobs.run(operations.save_app_settings, self.services, self.values(),
                      on_done=self._saved, on_error=self._failed)

    def _saved(self, _result: Any) -> None:
        self.status.setText("Saved.")
        self.sig_settings_saved.emit()

    def _failed(self, message: str, _exc: Any) -> None:
        self.status.setText(message)

    def flush(self) -> None:
        """Save now if a change is waiting (the window is closing)."""
        if self._save_timer.isActive():
            self.save()
