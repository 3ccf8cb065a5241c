"""The model library: metadata and licence, import (file dialog, drag and drop), remove,
and which model serves which task.

GUI thread only. Importing hashes and checks the whole file, so it runs as a job; a file
that is not GGUF, is malformed or would not fit in memory gives one clear dialog and leaves
the library unchanged (the core guarantees the latter). Dialogs are opened with ``open()``,
never ``exec()``: the window keeps running behind them, and tests can answer them.

Each model's fit on this machine ("runs well", "tight", "too large", with its expected speed)
is worked out by a job while the page is shown (the first one measures the memory bandwidth);
choosing a model that does not fit for a task asks first, with the numbers.

Why one module of ~630 lines: the list, the details, the task routes and the import, locate and
remove flows all act on the selected model and refresh the same view; the dialogs live apart
(ui/model_discovery_dialog.py, ui/model_settings_dialog.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QAction, QDragEnterEvent, QDragLeaveEvent, QDropEvent, QGuiApplication
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QFrame,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QMessageBox,
    QPushButton,
    QSizePolicy,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from assistant.chat.reasoning import META_REASONS
from assistant.models import views as library_views
from assistant.wording import counted, human_count, human_size
from ui.compact_widgets import ElidedLabel, compact_combo
from ui.markdown import SafeTextBrowser

if TYPE_CHECKING:
    from assistant.app import Services
    from ui.jobs import Jobs

TASK_LABELS = {
    "chat": "Chat",
    "translate": "Translate",
    "classify": "Sentiment",
    "complete": "Writing suggestions",
    "embed": "Embeddings",
}


def _local_paths(mime) -> list[str]:
    return [url.toLocalFile() for url in mime.urls() if url.isLocalFile()] if mime.hasUrls() else []


class ModelsPane(QWidget):
    sig_library_changed = Signal()  # a model was added or removed, or a route changed
    sig_import_finished = Signal(int, int)  # added, refused

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("ModelsPane")
        self.setAccessibleName("Models")
        self.setAcceptDrops(True)
        self.services: Services | None = None
        self.jobs: Jobs | None = None
        self.view: library_views.LibraryView | None = None
        self.file_dialog: QFileDialog | None = None
        self.active_dialog: QMessageBox | None = None  # the question or error showing now
        self.discovery_dialog = None  # the "Find models on this computer" dialog while it is open
        self.fits: dict = {}  # model id -> fit.Fit, from the last fit job
        self._fits_stale = True  # the library changed since the fits were worked out
        self.importing = False
        self._filling = False
        self._build()

    def _build(self) -> None:
        outer = QVBoxLayout(self)
        outer.setContentsMargins(20, 16, 20, 16)
        outer.setSpacing(10)
        top = QHBoxLayout()
        title = QLabel("Models")
        title.setObjectName("PaneTitle")
        top.addWidget(title)
        top.addStretch(1)
        self.import_button = QPushButton("Import GGUF…")
        self.import_button.setObjectName("PrimaryButton")
        self.import_button.setAccessibleName("Import a model file")
        self.import_button.clicked.connect(self.open_import_dialog)
        self.discover_button = QPushButton("Find models on this computer…")
        self.discover_button.setAccessibleName("Find models other tools keep on this computer")
        self.discover_button.clicked.connect(self.open_discovery)
        self.remove_button = QPushButton("Remove…")
        self.remove_button.setAccessibleName("Remove the selected model")
        self.remove_button.clicked.connect(self.ask_remove)
        self.settings_button = QPushButton("Settings…")
        self.settings_button.setAccessibleName("Settings of the selected model")
        self.settings_button.setToolTip("This model's own context length, sampling and system prompt")
        self.settings_button.clicked.connect(self.open_model_settings)
        self.settings_dialog = None
        top.addWidget(self.import_button)
        top.addWidget(self.discover_button)
        top.addWidget(self.settings_button)
        top.addWidget(self.remove_button)
        outer.addLayout(top)

        self.drop_zone = QFrame(self)
        self.drop_zone.setObjectName("DropZone")
        self.drop_zone.setAccessibleName("Drop model files here")
        drop_row = QHBoxLayout(self.drop_zone)
        self.drop_label = QLabel("Drop .gguf files here to import them. Files are checked before any model opens them.")
        self.drop_label.setObjectName("MutedLabel")
        self.drop_label.setWordWrap(True)
        drop_row.addWidget(self.drop_label)
        outer.addWidget(self.drop_zone)

        # Left: the models and which serves which task. Right: the selected model's details.
        splitter = QSplitter(Qt.Orientation.Horizontal, self)
        splitter.setChildrenCollapsible(False)
        left = QWidget(splitter)
        left_layout = QVBoxLayout(left)
        left_layout.setContentsMargins(0, 0, 8, 0)
        self.list = QListWidget(left)
        self.list.setObjectName("ModelList")
        self.list.setAccessibleName("Installed models")
        self.list.currentItemChanged.connect(lambda *_: self._show_details())
        self.list.setMinimumWidth(300)
        left_layout.addWidget(self.list, 1)
        self.routes_box = QGroupBox("Which model serves which task", left)
        self.routes_form = QFormLayout(self.routes_box)
        self.routes_form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        self.route_combos: dict[str, QComboBox] = {}
        left_layout.addWidget(self.routes_box)

        details = QWidget(splitter)
        details_layout = QVBoxLayout(details)
        details_layout.setContentsMargins(8, 0, 0, 0)
        self.form = QFormLayout()
        self.form.setLabelAlignment(Qt.AlignmentFlag.AlignRight)
        self.form.setVerticalSpacing(4)
        self.fields: dict[str, QLabel] = {}
        for key, label in (("display_name", "Name"), ("id", "Id"), ("source", "Source"),
                           ("architecture", "Architecture"), ("parameters", "Parameters"),
                           ("quantization", "Quantization"), ("context_length", "Context length"),
                           ("size", "Size on disk"), ("fit", "On this machine"), ("tasks", "Tasks"),
                           ("path", "File"), ("sha256", "SHA-256")):
            if key in ("path", "sha256"):
                # A path or a hash has no spaces to wrap at; cut in the middle, the two ends
                # are what tell files and hashes apart. The whole text is in the tooltip and Copy.
                value = ElidedLabel("", elide=Qt.TextElideMode.ElideMiddle, min_chars=12)
                copy = QAction("Copy", value)
                copy.triggered.connect(lambda _c=False, v=value: QGuiApplication.clipboard().setText(v.text()))
                value.addAction(copy)
                value.setContextMenuPolicy(Qt.ContextMenuPolicy.ActionsContextMenu)
            else:
                value = QLabel("")
                value.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
                value.setWordWrap(True)
            value.setAccessibleName(label)
            value.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
            self.fields[key] = value
            self.form.addRow(label, value)
        # A model whose file is gone (another tool deleted it): what happened and the two ways out.
        self.missing_box = QFrame(details)
        self.missing_box.setObjectName("MissingModel")
        missing_layout = QVBoxLayout(self.missing_box)
        missing_layout.setContentsMargins(0, 4, 0, 4)
        self.missing_label = QLabel("")
        self.missing_label.setWordWrap(True)
        self.missing_label.setAccessibleName("Missing model file")
        missing_layout.addWidget(self.missing_label)
        missing_buttons = QHBoxLayout()
        self.locate_button = QPushButton("Locate…")
        self.locate_button.setAccessibleName("Choose the model's file again")
        self.locate_button.clicked.connect(self.open_locate_dialog)
        self.forget_button = QPushButton("Remove from the list")
        self.forget_button.setAccessibleName("Remove the missing model from the list")
        self.forget_button.clicked.connect(lambda: self.selected_model() and self._remove(self.selected_model().id, False))
        missing_buttons.addWidget(self.locate_button)
        missing_buttons.addWidget(self.forget_button)
        missing_buttons.addStretch(1)
        missing_layout.addLayout(missing_buttons)
        self.missing_box.setVisible(False)
        details_layout.addWidget(self.missing_box)
        details_layout.addLayout(self.form)
        licence_caption = QLabel("Licence")
        licence_caption.setObjectName("MessageRole")
        details_layout.addWidget(licence_caption)
        self.licence = SafeTextBrowser(details)
        self.licence.setAccessibleName("Licence text")
        # Plain text with no links to walk: Tab moves on (the ring is the text views' own, base.qss).
        self.licence.setTabChangesFocus(True)
        self.licence.setMinimumHeight(120)
        licence_caption.setBuddy(self.licence)
        details_layout.addWidget(self.licence, 1)
        splitter.setStretchFactor(0, 2)
        splitter.setStretchFactor(1, 3)
        outer.addWidget(splitter, 1)

        self.status = QLabel("")
        self.status.setObjectName("MutedLabel")
        self.status.setAccessibleName("Library status")
        outer.addWidget(self.status)
        self._update_buttons()

    # ----- data ----------------------------------------------------------------------------
    def set_services(self, services: "Services", jobs: "Jobs") -> None:
        self.services = services
        self.jobs = jobs
        self.refresh()

    def refresh(self, select: str | None = None) -> None:
        if self.services is None or self.jobs is None:
            return
        self.jobs.run(library_views.library_view, self.services,
                      on_done=lambda view: self._fill(view, select), on_error=self._error)

    def _fill(self, view: library_views.LibraryView, select: str | None = None) -> None:
        self.view = view
        current = select or (self.list.currentItem().data(Qt.ItemDataRole.UserRole) if self.list.currentItem() else None)
        self.list.clear()
        for model in view.models:
            item = QListWidgetItem(self._row_text(model))
            item.setData(Qt.ItemDataRole.UserRole, model.id)
            self.list.addItem(item)
            if model.id == current:
                self.list.setCurrentItem(item)
        if self.list.currentItem() is None and self.list.count():
            self.list.setCurrentRow(0)
        self._fill_routes(view)
        self._show_details()
        self.status.setText(f"{counted(len(view.models), 'model')} in the library.")
        self._fits_stale = True
        self._refresh_fits()

    def _row_text(self, model) -> str:
        quant = model.metadata.get("quantization") or ""
        fit = self.fits.get(model.id)
        return (f"{model.display_name}\n{human_size(model.size_bytes)}"
                + (f" · {quant}" if quant else "") + (" · default pack" if model.source == "pack" else "")
                + (f" · {model.linked_from_label}" if model.linked_from else "")
                + (" · missing" if model.missing else "")
                + (f" · {fit.short_text}" if fit is not None and not model.missing else ""))

    # ----- fit on this machine --------------------------------------------------------------------
    def _refresh_fits(self) -> None:
        """Work the fits out again, now if the page is shown, else when it next is (the first
        measure of the memory bandwidth is not spent on a page nobody looks at)."""
        if not self._fits_stale or self.services is None or self.jobs is None or not self.isVisible():
            return
        self._fits_stale = False
        self.jobs.run(library_views.model_fits, self.services, on_done=self._show_fits,
                      on_error=lambda message, _exc: self.fields["fit"].setText(message))

    def _show_fits(self, fits: dict) -> None:
        self.fits = dict(fits)
        if self.view is None:
            return
        by_id = {m.id: m for m in self.view.models}
        for row in range(self.list.count()):
            item = self.list.item(row)
            model = by_id.get(item.data(Qt.ItemDataRole.UserRole))
            if model is not None:
                item.setText(self._row_text(model))
        self._show_details()

    def showEvent(self, event) -> None:  # noqa: N802
        super().showEvent(event)
        self._refresh_fits()

    def _fill_routes(self, view: library_views.LibraryView) -> None:
        self._filling = True
        for task in view.tasks:
            combo = self.route_combos.get(task)
            if combo is None:
                # Sized by a few characters, not by the longest model name (issue 19, point 2).
                combo = compact_combo(QComboBox(self.routes_box))
                combo.setAccessibleName(f"Model for {TASK_LABELS.get(task, task)}")
                combo.currentIndexChanged.connect(lambda _i, t=task: self._route_chosen(t))
                self.route_combos[task] = combo
                self.routes_form.addRow(TASK_LABELS.get(task, task), combo)
            combo.clear()
            effective = view.effective.get(task)
            auto = f"Automatic ({effective})" if effective else "Automatic (no model can do this yet)"
            combo.addItem(auto, None)
            for model in view.models:
                if task in model.tasks and (model.is_gguf or task == "embed"):
                    combo.addItem(model.display_name, model.id)
            chosen = view.routes.get(task)
            index = combo.findData(chosen) if chosen else 0
            combo.setCurrentIndex(max(0, index))
        self._filling = False

    def _route_chosen(self, task: str) -> None:
        if self._filling or self.services is None or self.jobs is None:
            return
        model_id = self.route_combos[task].currentData()
        if model_id is None:
            self._set_route(task, None)
            return
        # The chosen model loads at the task's next request: say first if it does not fit.
        self.jobs.run(library_views.model_fit, self.services, model_id,
                      on_done=lambda found: self._confirm_route(task, *found), on_error=self._error)

    def _confirm_route(self, task: str, record, fit) -> QMessageBox | None:
        from assistant.models.fit import TOO_LARGE  # here, not at import: it pulls gguf and numpy

        if fit is None or fit.label != TOO_LARGE:
            self._set_route(task, record.id)
            return None
        if self.active_dialog is not None:
            self.active_dialog.close()
        box = QMessageBox(QMessageBox.Icon.Warning, "Model too large for this machine",
                          f"{record.display_name} may not fit in memory here.", parent=self)
        box.setInformativeText(fit.warning(record.display_name))
        box.setAccessibleName("Model too large for this machine")
        go_on = box.addButton("Use it anyway", QMessageBox.ButtonRole.AcceptRole)
        go_on.setAccessibleName(f"Use {record.display_name} for {TASK_LABELS.get(task, task)} anyway")
        box.addButton(QMessageBox.StandardButton.Cancel)
        box.setDefaultButton(QMessageBox.StandardButton.Cancel)

        def answered(_result: int) -> None:
            self.active_dialog = None
            if box.clickedButton() is go_on:
                self._set_route(task, record.id)
            elif self.view is not None:
                self._fill_routes(self.view)  # back to the choice before

        box.finished.connect(answered)
        box.finished.connect(lambda _r: box.deleteLater())
        self.active_dialog = box
        box.open()
        return box

    def _set_route(self, task: str, model_id: str | None) -> None:
        self.jobs.run(library_views.set_route, self.services, task, model_id,
                      on_done=lambda view: (self._fill(view), self.sig_library_changed.emit()),
                      on_error=self._error)

    def selected_model(self):
        item = self.list.currentItem()
        if item is None or self.view is None:
            return None
        model_id = item.data(Qt.ItemDataRole.UserRole)
        return next((m for m in self.view.models if m.id == model_id), None)

    def _show_details(self) -> None:
        model = self.selected_model()
        self._update_buttons()
        if model is None:
            for value in self.fields.values():
                value.setText("")
            self.licence.clear()
            return
        meta = model.metadata or {}
        self.missing_box.setVisible(model.missing)
        self.missing_label.setText(model.missing_message() if model.missing else "")
        source = {"pack": "Default model pack", "user": "Imported", "trained": "Trained here"}.get(model.source, model.source)
        if model.linked_from:
            source = f"Linked from {model.linked_from_label} ({model.link_name}), used where it is"
        values = {
            "display_name": model.display_name,
            "id": model.id,
            "source": source,
            "architecture": meta.get("architecture") or "unknown",
            "parameters": human_count(meta.get("parameter_count")),
            "quantization": meta.get("quantization") or "unknown",
            "context_length": f"{meta['context_length']:,} tokens" if meta.get("context_length") else "unknown",
            "size": human_size(model.size_bytes),
            "fit": self._fit_text(model),
            "tasks": (", ".join(TASK_LABELS.get(t, t) for t in model.tasks) or "none")
            + ("; thinks before it answers (its thinking is shown folded above each reply)"
               if meta.get(META_REASONS) else ""),
            "path": model.path,
            "sha256": model.sha256 or "not computed",
        }
        for key, text in values.items():
            self.fields[key].setText(str(text))
            self.fields[key].setToolTip(str(text))
        # Plain text: the library keeps a licence's own words (a saved web page is cut to them
        # when the pack is registered, engine.model_pack.licence_text).
        self.licence.setPlainText(model.licence_text or meta.get("licence") or "No licence is stated in this file.")

    def _fit_text(self, model) -> str:
        if model.missing or not model.is_gguf:
            return "—"
        fit = self.fits.get(model.id)
        return fit.details() if fit is not None else "Working it out…"

    def _update_buttons(self) -> None:
        model = self.selected_model()
        ready = self.services is not None and not self.importing
        self.import_button.setEnabled(ready)
        self.discover_button.setEnabled(ready)
        self.settings_button.setEnabled(ready and model is not None and model.is_gguf and not model.missing)
        removable = ready and model is not None and model.source != "pack"
        self.remove_button.setEnabled(removable)
        self.remove_button.setToolTip("Models of the default pack cannot be removed." if model is not None
                                      and model.source == "pack" else "Take the model out of the library")

    # ----- import ------------------------------------------------------------------------------
    def open_import_dialog(self) -> QFileDialog:
        """The file dialog, opened without blocking; choosing files imports them."""
        dialog = QFileDialog(self, "Import a GGUF model")
        dialog.setAccessibleName("Choose model files")
        dialog.setFileMode(QFileDialog.FileMode.ExistingFiles)
        dialog.setNameFilters(["GGUF models (*.gguf)", "All files (*)"])
        dialog.setDirectory(str(Path.home()))
        dialog.filesSelected.connect(self.import_paths)
        dialog.finished.connect(lambda _r: dialog.deleteLater())
        self.file_dialog = dialog
        dialog.open()
        return dialog

    def import_paths(self, paths: list[str]) -> None:
        paths = [p for p in paths if p]
        if not paths or self.services is None or self.jobs is None or self.importing:
            return
        self.importing = True
        self._update_buttons()
        names = ", ".join(Path(p).name for p in paths)
        self.status.setText(f"Checking {names}…")
        self.jobs.run(library_views.import_models, self.services, paths, on_done=self._imported, on_error=self._import_failed)

    def _imported(self, outcome: library_views.ImportOutcome) -> None:
        self.importing = False
        self._update_buttons()
        if outcome.added:
            self.refresh(select=outcome.added[-1].id)
            self.sig_library_changed.emit()
            self.status.setText("Added " + ", ".join(m.display_name for m in outcome.added) + ".")
        if outcome.errors:
            self.status.setText("Nothing was added." if not outcome.added else self.status.text())
            self.show_error("The model could not be imported", "\n\n".join(outcome.errors))
        self.sig_import_finished.emit(len(outcome.added), len(outcome.errors))

    def _import_failed(self, message: str, _exc: Any) -> None:
        self.importing = False
        self._update_buttons()
        self.show_error("The model could not be imported", message)
        self.sig_import_finished.emit(0, 1)

    # ----- models on this computer, and missing ones ---------------------------------------------
    def open_discovery(self):
        """The list of models other tools keep; it starts looking at once (on a pool thread)."""
        from ui.model_discovery_dialog import ModelDiscoveryDialog

        if self.services is None or self.jobs is None:
            return None
        dialog = ModelDiscoveryDialog(self.services, self.jobs, self)
        dialog.sig_link_finished.connect(lambda added, _refused: added and (self.refresh(), self.sig_library_changed.emit()))
        dialog.finished.connect(lambda _r: setattr(self, "discovery_dialog", None))
        dialog.finished.connect(lambda _r: dialog.deleteLater())
        self.discovery_dialog = dialog
        dialog.open()
        dialog.search()
        return dialog

    def open_model_settings(self):
        """The selected model's own settings (context length, sampling, system prompt); the
        dialog reads them on a pool thread."""
        from ui.model_settings_dialog import ModelSettingsDialog

        model = self.selected_model()
        if self.services is None or self.jobs is None or model is None:
            return None
        dialog = ModelSettingsDialog(self.services, self.jobs, model, self)
        dialog.sig_settings_saved.connect(self._model_settings_saved)
        dialog.finished.connect(lambda _r: setattr(self, "settings_dialog", None))
        dialog.finished.connect(lambda _r: dialog.deleteLater())
        self.settings_dialog = dialog
        dialog.open()
        dialog.load()
        return dialog

    def _model_settings_saved(self, _model_id: str) -> None:
        # A model's fit label is at the context it loads with, which may have changed.
        self._fits_stale = True
        self._refresh_fits()

    def open_locate_dialog(self) -> QFileDialog | None:
        model = self.selected_model()
        if model is None:
            return None
        dialog = QFileDialog(self, f"Locate {model.display_name}")
        dialog.setFileMode(QFileDialog.FileMode.ExistingFile)
        dialog.setNameFilters(["GGUF models (*.gguf)", "All files (*)"])
        folder = Path(model.path).parent
        dialog.setDirectory(str(folder if folder.is_dir() else Path.home()))
        dialog.fileSelected.connect(lambda path: path and self.locate(model.id, path))
        dialog.finished.connect(lambda _r: dialog.deleteLater())
        self.file_dialog = dialog
        dialog.open()
        return dialog

    def locate(self, model_id: str, path: str) -> None:
        if self.services is None or self.jobs is None:
            return
        self.status.setText(f"Checking {Path(path).name}…")
        self.jobs.run(library_views.locate_model, self.services, model_id, path,
                      on_done=lambda record: (self.status.setText(f"{record.display_name} now uses {record.path}."),
                                              self.refresh(select=record.id), self.sig_library_changed.emit()),
                      on_error=lambda message, _exc: self.show_error("The model could not be located", message))

    # drag and drop (GUI thread: only paths travel, the job reads the files)
    def dragEnterEvent(self, event: QDragEnterEvent) -> None:  # noqa: N802
        if _local_paths(event.mimeData()) and self.services is not None:
            event.acceptProposedAction()
            self._set_drop_active(True)
        else:
            event.ignore()

    def dragMoveEvent(self, event) -> None:  # noqa: N802
        if _local_paths(event.mimeData()):
            event.acceptProposedAction()

    def dragLeaveEvent(self, event: QDragLeaveEvent) -> None:  # noqa: N802
        self._set_drop_active(False)

    def dropEvent(self, event: QDropEvent) -> None:  # noqa: N802
        self._set_drop_active(False)
        paths = _local_paths(event.mimeData())
        if not paths:
            event.ignore()
            return
        event.acceptProposedAction()
        self.import_paths(paths)

    def _set_drop_active(self, active: bool) -> None:
        self.drop_zone.setProperty("active", "true" if active else "false")
        self.drop_zone.style().unpolish(self.drop_zone)
        self.drop_zone.style().polish(self.drop_zone)

    # ----- remove ---------------------------------------------------------------------------------
    def ask_remove(self) -> QMessageBox | None:
        """First question: take it out of the library, and optionally delete the file."""
        model = self.selected_model()
        if model is None or model.source == "pack":
            return None
        box = QMessageBox(QMessageBox.Icon.Question, "Remove model",
                          f"Remove “{model.display_name}” from the library?", parent=self)
        if model.linked_from:  # another tool's file: this app never deletes it
            box.setInformativeText(f"The file stays where it is; it belongs to {model.linked_from_label}:\n{model.path}")
        else:
            box.setInformativeText(f"The file stays on disk unless you tick the box:\n{model.path}")
            # Parented to the box: a parentless check box would be freed by Python under Qt's feet.
            check = QCheckBox("Also delete the file from disk", box)
            check.setAccessibleName("Also delete the model file from disk")
            box.setCheckBox(check)
        remove = box.addButton("Remove", QMessageBox.ButtonRole.DestructiveRole)
        remove.setAccessibleName("Remove the model")
        box.addButton(QMessageBox.StandardButton.Cancel)
        box.setDefaultButton(QMessageBox.StandardButton.Cancel)

        def answered(_result: int) -> None:
            self.active_dialog = None
            if box.clickedButton() is not remove:
                return
            if box.checkBox() is not None and box.checkBox().isChecked():
                self._ask_delete_file(model)
            else:
                self._remove(model.id, delete_file=False)

        box.finished.connect(answered)
        box.finished.connect(lambda _r: box.deleteLater())
        self.active_dialog = box
        box.open()
        return box

    def _ask_delete_file(self, model) -> QMessageBox:
        """The second confirmation: a file is never deleted on one click."""
        box = QMessageBox(QMessageBox.Icon.Warning, "Delete model file",
                          f"Delete {Path(model.path).name} from disk for good?", parent=self)
        box.setInformativeText(f"{model.path}\n\nThis cannot be undone.")
        delete = box.addButton("Delete file", QMessageBox.ButtonRole.DestructiveRole)
        delete.setAccessibleName("Delete the model file")
        keep = box.addButton("Keep the file", QMessageBox.ButtonRole.RejectRole)
        keep.setAccessibleName("Remove from the library but keep the file")
        box.addButton(QMessageBox.StandardButton.Cancel)
        box.setDefaultButton(keep)

        def answered(_result: int) -> None:
            self.active_dialog = None
            clicked = box.clickedButton()
            if clicked is delete:
                self._remove(model.id, delete_file=True, confirmed=True)
            elif clicked is keep:
                self._remove(model.id, delete_file=False)

        box.finished.connect(answered)
        box.finished.connect(lambda _r: box.deleteLater())
        self.active_dialog = box
        box.open()
        return box

    def _remove(self, model_id: str, delete_file: bool, confirmed: bool = False) -> None:
        if self.services is None or self.jobs is None:
            return
        self.jobs.run(library_views.remove_model, self.services, model_id, delete_file, confirmed,
                      on_done=self._removed, on_error=self._error)

    def _removed(self, record) -> None:
        self.status.setText(f"Removed {record.display_name}.")
        self.refresh()
        self.sig_library_changed.emit()

    # ----- messages ------------------------------------------------------------------------------
    def show_error(self, title: str, text: str) -> QMessageBox:
        """One clear dialog, window-modal and non-blocking."""
        if self.active_dialog is not None:
            self.active_dialog.close()
        box = QMessageBox(QMessageBox.Icon.Warning, title, text, QMessageBox.StandardButton.Ok, self)
        box.setAccessibleName(title)
        box.finished.connect(lambda _r: setattr(self, "active_dialog", None))
        box.finished.connect(lambda _r: box.deleteLater())
        self.active_dialog = box
        box.open()
        return box

    def _error(self, message: str, _exc: Any = None) -> None:
        self.show_error("The model library", message)
