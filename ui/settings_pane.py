"""Settings: engine threads and context, sampling defaults, theme, font size, the default
persona, security (:mod:`ui.security_section`: protection, passphrase, key rotation, auto-lock,
Lock now), backups (:mod:`ui.backups_section`), the local API server switch (with its address
and token). Saved in the store (a job) a moment after each change; theme and font size apply
at once; threads and context apply when the engine restarts, which "Restart engine" (shown
once they differ from the running engine's) does on a pool thread. GUI thread only.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QTimer, Qt, Signal
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QPlainTextEdit,
    QScrollArea,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from assistant.settings import apply_settings, apply_settings_and_restart_engine
from ui.backups_section import BackupsSection
from ui.security_section import SecuritySection
from ui.theme import THEME_LABELS, THEMES

if TYPE_CHECKING:
    from assistant.app import Services
    from ui.jobs import Jobs

#: Changes are saved this long after the last one: one write per burst of spin-box clicks.
SAVE_DELAY_MS = 400


class SettingsPane(QWidget):
    sig_appearance_changed = Signal(str, int)  # theme setting, font size (0 = the desktop's)
    sig_settings_saved = Signal()
    sig_engine_restarted = Signal(bool)  # True: a running engine restarted with the new settings
    sig_lock_requested = Signal()  # "Lock now" in the Security section
    sig_restore_requested = Signal(object, str)  # a backup's Path and when it was made, confirmed

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("SettingsPane")
        self.setAccessibleName("Settings")
        self.services: Services | None = None
        self.jobs: Jobs | None = None
        self.api_switch = None  # assistant.api.server.ServerSwitch, once services arrive
        self._loading = False
        # The threads and context the running engine was started with (the loaded settings
        # until a restart): the Restart button shows while the page's differ from them.
        self._engine_values: dict | None = None
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
        # Tab goes from setting to setting and the area scrolls to each; the area itself would
        # be one more Tab stop that does nothing.
        scroll.setFocusPolicy(Qt.FocusPolicy.NoFocus)
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
        self.engine_note = QLabel("Threads and context apply when the engine restarts.")
        self.engine_note.setObjectName("MutedLabel")
        self.engine_note.setWordWrap(True)
        self.restart_button = QPushButton("Restart engine")
        self.restart_button.setAccessibleName("Restart the engine with these settings")
        self.restart_button.setToolTip("A reply being written stops; models load again on their next use.")
        self.restart_button.clicked.connect(self.restart_engine)
        self.restart_button.hide()
        engine_row = QHBoxLayout()
        engine_row.addWidget(self.engine_note, 1)
        engine_row.addWidget(self.restart_button)
        form.addRow("", engine_row)
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

        self.security = SecuritySection(body)
        self.security.auto_lock.valueChanged.connect(self._changed)
        self.security.sig_lock_requested.connect(self.sig_lock_requested)
        layout.addWidget(self.security)
        self.backups = BackupsSection(body)
        self.backups.sig_restore_requested.connect(self.sig_restore_requested)
        layout.addWidget(self.backups)

        layout.addWidget(self._build_api(body))

        self.status = QLabel("")
        self.status.setObjectName("MutedLabel")
        self.status.setAccessibleName("Settings status")
        self.status.setWordWrap(True)
        layout.addWidget(self.status)
        layout.addStretch(1)

    def _build_api(self, body: QWidget) -> QGroupBox:
        box = QGroupBox("Local API server", body)
        form = QFormLayout(box)
        self.api_enabled = QCheckBox("Serve an OpenAI-compatible API to other programs on this computer", self)
        self.api_enabled.setAccessibleName("Local API server")
        self.api_enabled.setToolTip("Editors and scripts can use your models at the address below, with the "
                                    "token. Only this computer can connect (127.0.0.1).")
        self.api_enabled.toggled.connect(self._api_toggled)
        self.api_port = QSpinBox(self)
        self.api_port.setRange(1024, 65535)
        self.api_port.setAccessibleName("API server port")
        self.api_port.setMaximumWidth(220)
        self.api_port.editingFinished.connect(self._api_port_changed)
        self.api_url = QLineEdit(self)
        self.api_url.setReadOnly(True)
        self.api_url.setAccessibleName("API address")
        self.api_token = QLineEdit(self)
        self.api_token.setReadOnly(True)
        self.api_token.setEchoMode(QLineEdit.EchoMode.Password)  # shown on request: screens get shared
        self.api_token.setAccessibleName("API token")
        self.api_show_token = QPushButton("Show", self)
        self.api_show_token.setCheckable(True)
        self.api_show_token.setAccessibleName("Show API token")
        self.api_show_token.toggled.connect(self._api_show_toggled)
        self.api_copy_url = QPushButton("Copy", self)
        self.api_copy_url.setAccessibleName("Copy API address")
        self.api_copy_url.clicked.connect(lambda: QGuiApplication.clipboard().setText(self.api_url.text()))
        self.api_copy_token = QPushButton("Copy", self)
        self.api_copy_token.setAccessibleName("Copy API token")
        self.api_copy_token.clicked.connect(lambda: QGuiApplication.clipboard().setText(self.api_token.text()))
        url_row = QHBoxLayout()
        url_row.addWidget(self.api_url, 1)
        url_row.addWidget(self.api_copy_url)
        token_row = QHBoxLayout()
        token_row.addWidget(self.api_token, 1)
        token_row.addWidget(self.api_show_token)
        token_row.addWidget(self.api_copy_token)
        self.api_status = QLabel("Off.")
        self.api_status.setObjectName("MutedLabel")
        self.api_status.setAccessibleName("API server status")
        self.api_status.setWordWrap(True)
        form.addRow("", self.api_enabled)
        form.addRow("Port", self.api_port)
        form.addRow("Address", url_row)
        form.addRow("Token", token_row)
        form.addRow("", self.api_status)
        return box

    # ----- local API server ------------------------------------------------------------------
    def _api_show_toggled(self, shown: bool) -> None:
        self.api_token.setEchoMode(QLineEdit.EchoMode.Normal if shown else QLineEdit.EchoMode.Password)
        self.api_show_token.setText("Hide" if shown else "Show")

    def _api_url_for(self, port: int) -> str:
        return f"http://127.0.0.1:{port}/v1"

    def _api_toggled(self, enabled: bool) -> None:
        if self._loading or self.services is None or self.jobs is None:
            return
        self.services.settings.api_server_enabled = enabled
        self._api_apply()

    def _api_port_changed(self) -> None:
        if self.services is None or self.api_port.value() == self.services.settings.api_server_port:
            return
        self.services.settings.api_server_port = self.api_port.value()
        self.api_url.setText(self._api_url_for(self.api_port.value()))
        self._api_apply()

    def _api_apply(self) -> None:
        """Start or stop the server as the switch says, and save the choice (a job)."""
        services, switch = self.services, self.api_switch
        settings = services.settings
        self.api_status.setText("Starting…" if settings.api_server_enabled else "Stopping…")

        def apply() -> dict | None:
            services.save_settings()
            # Reads the switch when it runs: of several quick flips, the last one wins.
            return switch.apply(lambda: (bool(settings.api_server_enabled), int(settings.api_server_port)))

        self.jobs.run(apply, on_done=lambda _info: self._api_show(), on_error=self._api_failed)

    def _api_show(self) -> None:
        info = self.api_switch.info() if self.api_switch is not None else None
        if info is None:
            self.api_status.setText("Off.")
            return
        self.api_url.setText(info["url"])
        self.api_token.setText(info["token"])
        self.api_status.setText("On: other programs on this computer can use your models at this address "
                                "with this token (OpenAI-compatible).")

    def _api_failed(self, message: str, _exc: Any) -> None:
        self.api_status.setText(message)
        self._loading = True  # show the switch off without starting another round
        try:
            self.api_enabled.setChecked(bool(self.api_switch and self.api_switch.running))
        finally:
            self._loading = False
        if self.services is not None:
            self.services.settings.api_server_enabled = self.api_enabled.isChecked()

    def shutdown_api(self) -> None:
        """Stop the API server for good (GUI thread, the window is closing): joins its threads."""
        if self.api_switch is not None:
            self.api_switch.close()

    # ----- data ----------------------------------------------------------------------------
    def set_services(self, services: "Services", jobs: "Jobs", api_switch: Any = None) -> None:
        """``api_switch``: the window's :class:`~assistant.api.server.ServerSwitch`, which outlives
        this pane across a lock (the server answers 423 while locked); one is made when none is given."""
        from assistant.api.server import ServerSwitch

        self.services = services
        self.jobs = jobs
        self.api_switch = api_switch if api_switch is not None else ServerSwitch(services)
        self.load(services.settings)
        self.setEnabled(True)
        self.security.set_services(services, jobs)
        self.backups.set_services(services, jobs)
        # The token is shown while the server is off too, so it can be set up in a tool first.
        switch = self.api_switch
        jobs.run(switch.token, on_done=self.api_token.setText, on_error=self._api_failed)
        if services.settings.api_server_enabled:
            self._api_apply()

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
            self.api_enabled.setChecked(bool(getattr(settings, "api_server_enabled", False)))
            port = int(getattr(settings, "api_server_port", 8642))
            self.api_port.setValue(port)
            self.api_url.setText(self._api_url_for(port))
            self.security.auto_lock.setValue(int(getattr(settings, "auto_lock_minutes", 0)))
            self._engine_values = self.values()["engine"]
        finally:
            self._loading = False
        self._show_restart()

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
            "auto_lock_minutes": self.security.auto_lock.value(),
        }

    def _changed(self, *_: Any) -> None:
        if not self._loading:
            self.status.setText("")
            self._save_timer.start()
            self._show_restart()

    def _show_restart(self) -> None:
        changed = self._engine_values is not None and self.values()["engine"] != self._engine_values
        self.restart_button.setVisible(changed)
        self.restart_button.setEnabled(True)
        self.engine_note.setText("Threads and context changed: restart the engine to use them." if changed
                                 else "Threads and context apply when the engine restarts.")

    def restart_engine(self) -> None:
        """Save the page's values and restart the engine worker with them, on a pool thread."""
        if self.services is None or self.jobs is None:
            return
        self._save_timer.stop()  # saved by the restart's own job, in order
        values = self.values()
        self.restart_button.setEnabled(False)
        self.status.setText("Restarting the engine…")
        self.jobs.run(apply_settings_and_restart_engine, self.services, values,
                      on_done=lambda restarted: self._engine_restarted(values["engine"], restarted),
                      on_error=self._restart_failed)

    def _engine_restarted(self, engine_values: dict, restarted: bool) -> None:
        self._engine_values = engine_values
        self._show_restart()
        threads, context = engine_values["n_threads"], engine_values["n_ctx"]
        self.status.setText(f"The engine restarted with {threads} threads and {context:,} tokens of context."
                            if restarted else "Saved: the engine will start with these settings.")
        self.sig_settings_saved.emit()
        self.sig_engine_restarted.emit(bool(restarted))

    def _restart_failed(self, message: str, _exc: Any) -> None:
        self.restart_button.setEnabled(True)
        self.status.setText(message)

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
        self.jobs.run(apply_settings, self.services, self.values(),
                      on_done=self._saved, on_error=self._failed)

    def _saved(self, _result: Any) -> None:
        self.status.setText("Saved.")
        self.sig_settings_saved.emit()

    def _failed(self, message: str, _exc: Any) -> None:
        self.status.setText(message)

    def save_pending(self) -> None:
        """Save now if a change is waiting (a job; the window's lock waits for it)."""
        if self._save_timer.isActive():
            self.save()

    def flush(self) -> None:
        """Save now if a change is waiting, and stop the API server (the window is closing)."""
        self.save_pending()
        self.shutdown_api()
