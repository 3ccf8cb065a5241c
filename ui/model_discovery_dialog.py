""""Find models on this computer": the GGUF models other tools keep, each with a Link button.

GUI thread only. Looking (:func:`assistant.models.views.discover_models`) and linking
(:func:`assistant.models.views.link_models`, which checks and hashes the file) run as jobs;
the dialog only shows what they return, each model with how it fits this machine. Opened with
``open()``, never ``exec()``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QDialog,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from assistant.models import views as library_views
from assistant.wording import counted, human_size

if TYPE_CHECKING:
    from assistant.app import Services
    from ui.jobs import Jobs


class ModelDiscoveryDialog(QDialog):
    FIT_COLUMN = 3  # "runs well · ~40 tokens/s"; the numbers behind it in the tooltip
    LINK_COLUMN = 4

    sig_search_finished = Signal(int)  # models found
    sig_link_finished = Signal(int, int)  # linked, refused

    def __init__(self, services: "Services", jobs: "Jobs", parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("Find models on this computer")
        self.setAccessibleName("Find models on this computer")
        self.services, self.jobs = services, jobs
        self.view: library_views.DiscoveryView | None = None
        self.busy = False
        self.resize(760, 420)
        layout = QVBoxLayout(self)
        intro = QLabel("GGUF models kept by Ollama, LM Studio, GPT4All, Jan, the Hugging Face and llama.cpp caches "
                       "and your own folders. Linking checks a model and uses it where it is: nothing is copied, "
                       "moved or changed.")
        intro.setWordWrap(True)
        layout.addWidget(intro)
        self.table = QTreeWidget(self)
        self.table.setObjectName("DiscoveredModels")
        self.table.setAccessibleName("Models found on this computer")
        self.table.setRootIsDecorated(False)
        self.table.setHeaderLabels(["Source", "Name", "Size", "On this machine", ""])
        header = self.table.header()
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        header.setStretchLastSection(False)
        layout.addWidget(self.table, 1)
        self.status = QLabel("")
        self.status.setObjectName("MutedLabel")
        self.status.setWordWrap(True)
        self.status.setAccessibleName("Search status")
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout.addWidget(self.status)
        buttons = QHBoxLayout()
        self.add_folder_button = QPushButton("Add a folder…")
        self.add_folder_button.setAccessibleName("Also search a folder of your own")
        self.add_folder_button.clicked.connect(self.choose_folder)
        self.search_button = QPushButton("Search again")
        self.search_button.clicked.connect(self.search)
        self.link_all_button = QPushButton("Link all")
        self.link_all_button.setAccessibleName("Link every model found")
        self.link_all_button.clicked.connect(lambda: self.link([f for f in self._found() if not self._linked(f)]))
        close = QPushButton("Close")
        close.clicked.connect(self.accept)
        buttons.addWidget(self.add_folder_button)
        buttons.addWidget(self.search_button)
        buttons.addStretch(1)
        buttons.addWidget(self.link_all_button)
        buttons.addWidget(close)
        layout.addLayout(buttons)
        self.link_buttons: dict[str, QPushButton] = {}

    # ----- searching -----------------------------------------------------------------------
    def search(self) -> None:
        self._run(library_views.discover_models, self.services, status="Looking in the other tools' folders…",
                  on_done=self._show)

    def choose_folder(self) -> QFileDialog:
        dialog = QFileDialog(self, "Also search this folder")
        dialog.setFileMode(QFileDialog.FileMode.Directory)
        dialog.setOption(QFileDialog.Option.ShowDirsOnly, True)
        dialog.fileSelected.connect(lambda folder: folder and self._run(
            library_views.add_model_folder, self.services, folder, status=f"Looking in {folder}…", on_done=self._show))
        dialog.finished.connect(lambda _r: dialog.deleteLater())
        dialog.open()
        return dialog

    def _show(self, view: library_views.DiscoveryView) -> None:
        self.view = view
        self.table.clear()
        self.link_buttons.clear()
        for found in view.found:
            size = human_size(found.size_bytes) + (f" ({found.parts} parts)" if found.parts > 1 else "")
            fit = view.fits.get(found.path)
            item = QTreeWidgetItem([found.source_label, found.name, size, fit.short_text if fit else "unknown", ""])
            tip = found.path + "".join(f"\nAlso {other}" for other in found.also_in)
            for column in range(self.FIT_COLUMN):
                item.setToolTip(column, tip)
            item.setToolTip(self.FIT_COLUMN, fit.details() if fit else "The file's header could not be read again.")
            self.table.addTopLevelItem(item)
            button = QPushButton("Linked" if self._linked(found) else "Link")
            button.setAccessibleName(f"Link {found.name}")
            button.setEnabled(not self._linked(found))
            button.clicked.connect(lambda _c=False, f=found: self.link([f]))
            self.table.setItemWidget(item, self.LINK_COLUMN, button)
            self.link_buttons[found.path] = button
        for column in (0, 2, self.FIT_COLUMN, self.LINK_COLUMN):
            self.table.resizeColumnToContents(column)
        text = (f"Found {counted(len(view.found), 'model')}." if view.found else
                "No GGUF models were found in the usual places. Add a folder to search your own.")
        if view.skipped:
            text += f" {counted(len(view.skipped), 'file')} passed over (hover for why)."
            self.status.setToolTip("\n".join(view.skipped[:50]))
        self.status.setText(text)
        self._update_buttons()
        self.sig_search_finished.emit(len(view.found))

    # ----- linking -------------------------------------------------------------------------
    def link(self, found: list) -> None:
        if not found:
            return
        names = ", ".join(f.name for f in found)
        self._run(library_views.link_models, self.services, found, status=f"Checking {names}…",
                  on_done=lambda outcome: self._linked_done(found, outcome))

    def _linked_done(self, found: list, outcome: library_views.ImportOutcome) -> None:
        # A file already in the library (the same bytes elsewhere) comes back as that record.
        by_path = {r.path: r.id for r in outcome.added}
        for item in found:
            model_id = by_path.get(item.path) or (outcome.added[0].id if len(found) == 1 and outcome.added else None)
            if model_id is None and not outcome.errors:
                model_id = "linked"
            if model_id is not None and self.view is not None:
                self.view.linked[item.path] = model_id
                button = self.link_buttons.get(item.path)
                if button is not None:
                    button.setText("Linked")
                    button.setEnabled(False)
        parts = []
        if outcome.added:
            parts.append("Linked " + ", ".join(r.display_name for r in outcome.added) + ".")
        parts += outcome.errors
        self.status.setText(" ".join(parts))
        self._update_buttons()
        self.sig_link_finished.emit(len(outcome.added), len(outcome.errors))

    # ----- helpers -------------------------------------------------------------------------
    def _found(self) -> list:
        return list(self.view.found) if self.view is not None else []

    def _linked(self, found) -> bool:
        return self.view is not None and found.path in self.view.linked

    def _run(self, fn, *args: Any, status: str, on_done) -> None:
        if self.busy:
            return
        self.busy = True
        self.status.setText(status)
        self._update_buttons()

        def done(result: Any) -> None:
            self.busy = False
            on_done(result)

        def failed(message: str, _exc: Any) -> None:
            self.busy = False
            self.status.setText(message)
            self._update_buttons()

        self.jobs.run(fn, *args, on_done=done, on_error=failed)

    def _update_buttons(self) -> None:
        self.search_button.setEnabled(not self.busy)
        self.add_folder_button.setEnabled(not self.busy)
        self.link_all_button.setEnabled(not self.busy and any(not self._linked(f) for f in self._found()))
        for button in self.link_buttons.values():
            if button.text() == "Link":
                button.setEnabled(not self.busy)
