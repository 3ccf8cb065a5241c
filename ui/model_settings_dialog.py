"""The Models page's "Settings…" dialog: one model's own context length, sampling and system
prompt, over the app's settings and the model's defaults. Each field left at "Default" shows
what applies instead and where it comes from. Reading, saving and resetting run on the pool
(the store, free memory); a refusal (out of range, a context that does not fit, with the number
that does) is shown in the dialog, which stays open. GUI thread only; the rules are the core's
(:mod:`assistant.models.model_settings`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QAbstractSpinBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFormLayout,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from assistant.models import model_settings
from assistant.models.model_settings import MIN_CONTEXT, ModelSettings, SettingsView

if TYPE_CHECKING:
    from assistant.app import Services
    from ui.jobs import Jobs

#: (field, label, decimals or None for whole numbers, lowest real value, highest, step). The spin
#: box's minimum sits one step below the lowest real value and reads "Default (…)".
NUMBER_FIELDS: tuple = (
    ("n_ctx", "Context length (tokens)", None, MIN_CONTEXT, 1_048_576, 256),
    ("temperature", "Temperature", 2, 0.0, 5.0, 0.05),
    ("top_p", "Top-p", 2, 0.01, 1.0, 0.01),
    ("top_k", "Top-k (0: off)", None, 0, 1000, 1),
    ("min_p", "Min-p", 2, 0.0, 0.99, 0.01),
    ("repeat_penalty", "Repeat penalty", 2, 0.01, 5.0, 0.01),
    ("max_tokens", "Max tokens per reply", None, 1, 1_048_576, 64),
)


class ModelSettingsDialog(QDialog):
    """Opened by :meth:`ui.models_pane.ModelsPane.open_model_settings`; fills itself from a job."""

    sig_settings_saved = Signal(str)  # model id, after a save or a reset was kept

    def __init__(self, services: "Services", jobs: "Jobs", model, parent: QWidget | None = None):
        super().__init__(parent)
        self.services = services
        self.jobs = jobs
        self.model = model
        self.view: SettingsView | None = None
        self.busy = False
        self.setWindowTitle(f"Settings for {model.display_name}")
        self.setAccessibleName(f"Settings for {model.display_name}")
        layout = QVBoxLayout(self)
        intro = QLabel("These apply to every chat with this model. A field left at “Default” follows the app's "
                       "Settings, or the model's own default where the app's is unchanged.")
        intro.setWordWrap(True)
        intro.setObjectName("MutedLabel")
        layout.addWidget(intro)

        form = QFormLayout()
        self.spins: dict[str, QAbstractSpinBox] = {}
        for name, label, decimals, lowest, highest, step in NUMBER_FIELDS:
            if decimals is None:
                spin: QAbstractSpinBox = QSpinBox(self)
                spin.setRange(int(lowest) - 1, int(highest))
            else:
                spin = QDoubleSpinBox(self)
                spin.setDecimals(decimals)
                spin.setRange(round(lowest - step, decimals), highest)
            spin.setSingleStep(step)
            spin.setAccessibleName(label)
            spin.setSpecialValueText("Default")
            self.spins[name] = spin
            form.addRow(label, spin)
        self.context_hint = QLabel("")
        self.context_hint.setObjectName("MutedLabel")
        self.context_hint.setWordWrap(True)
        form.addRow("", self.context_hint)
        self.system_prompt = QPlainTextEdit(self)
        self.system_prompt.setAccessibleName("System prompt")
        self.system_prompt.setTabChangesFocus(True)
        self.system_prompt.setFixedHeight(80)
        form.addRow("System prompt", self.system_prompt)
        layout.addLayout(form)

        self.status = QLabel("Reading the settings…")
        self.status.setWordWrap(True)
        self.status.setAccessibleName("Settings status")
        layout.addWidget(self.status)

        self.buttons = QDialogButtonBox(self)
        self.save_button = self.buttons.addButton("Save", QDialogButtonBox.ButtonRole.AcceptRole)
        self.save_button.setObjectName("PrimaryButton")
        self.reset_button: QPushButton = self.buttons.addButton("Reset to defaults",
                                                                QDialogButtonBox.ButtonRole.ResetRole)
        self.reset_button.setAccessibleName("Forget this model's settings")
        self.cancel_button = self.buttons.addButton(QDialogButtonBox.StandardButton.Cancel)
        self.save_button.clicked.connect(self.save)
        self.reset_button.clicked.connect(self.reset)
        self.cancel_button.clicked.connect(self.reject)
        layout.addWidget(self.buttons)
        self._set_busy(True)

    # ----- reading -----------------------------------------------------------------------------
    def load(self) -> None:
        self._run(model_settings.settings_view, self.model.id, on_done=self._show)

    def _show(self, view: SettingsView) -> None:
        self.view = view
        self._set_busy(False)
        for name, _label, decimals, _lowest, _highest, _step in NUMBER_FIELDS:
            spin = self.spins[name]
            value, source = view.inherited[name]
            shown = f"{value:,}" if decimals is None else f"{value:g}"
            spin.setSpecialValueText(f"Default ({shown}, {source})")
            own = getattr(view.own, name)
            spin.setValue(spin.minimum() if own is None else own)
        if view.trained_context:
            self.spins["n_ctx"].setMaximum(view.trained_context)
        fits = (f"Up to {view.largest_context:,} tokens fit in the memory free now" if view.largest_context
                else "No context fits in the memory free now")
        trained = f"; the model was trained for {view.trained_context:,}" if view.trained_context else ""
        self.context_hint.setText(fits + trained + ".")
        prompt, source = view.inherited["system_prompt"]
        self.system_prompt.setPlaceholderText(f"Default ({source}): {prompt}" if prompt else
                                              "Default: no system prompt")
        self.system_prompt.setPlainText(view.own.system_prompt or "")
        self.status.setText("")

    # ----- what the user chose -------------------------------------------------------------------
    def chosen(self) -> ModelSettings:
        values: dict[str, Any] = {}
        for name, _label, decimals, _lowest, _highest, _step in NUMBER_FIELDS:
            spin = self.spins[name]
            if spin.value() == spin.minimum():
                values[name] = None  # "Default"
            else:
                values[name] = int(spin.value()) if decimals is None else round(float(spin.value()), decimals)
        prompt = self.system_prompt.toPlainText().strip()
        values["system_prompt"] = prompt or None
        return ModelSettings(**values)

    def save(self) -> None:
        if self.busy:
            return
        self.status.setText("Checking and saving…")
        self._run(model_settings.save_for, self.model.id, self.chosen(), on_done=self._saved)

    def _saved(self, _settings: ModelSettings) -> None:
        self._set_busy(False)
        self.sig_settings_saved.emit(self.model.id)
        self.accept()

    def reset(self) -> None:
        if self.busy:
            return
        self.status.setText("Going back to the defaults…")
        self._run(model_settings.reset_for, self.model.id, on_done=self._was_reset)

    def _was_reset(self, view: SettingsView) -> None:
        self._show(view)
        self.status.setText("Back to the app's settings and the model's defaults.")
        self.sig_settings_saved.emit(self.model.id)

    # ----- jobs ------------------------------------------------------------------------------------
    def _run(self, fn, *args: Any, on_done) -> None:
        self._set_busy(True)

        def failed(message: str, _exc: Any) -> None:
            self._set_busy(False)
            self.status.setText(message)  # the dialog stays open: nothing typed is lost

        self.jobs.run(fn, self.services, *args, on_done=on_done, on_error=failed)

    def _set_busy(self, busy: bool) -> None:
        self.busy = busy
        ready = not busy and self.view is not None
        self.save_button.setEnabled(ready)
        self.reset_button.setEnabled(ready)
