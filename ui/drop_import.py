"""Model files dropped anywhere on the window, or handed over by "Open with", are imported.

GUI thread only. :class:`ModelDropImporter` is an event filter on the application that
claims drag-and-drop events whose files all end in ``.gguf`` and that land on any widget of
its window: the chat box, the history, an empty page. (Text boxes accept drops themselves
and would paste the path; a filter on the window alone would never see those.) Only paths
travel on the GUI thread: the import itself (hash, bounded header check, memory check) runs
as a job through the Models page, :meth:`ui.models_pane.ModelsPane.import_paths`, so the
validation and the one clear dialog for a bad file are the library's usual ones.

Files that arrive before the library is open (a launch with a file argument) or while an
import runs are queued and imported next, in order; nothing is dropped silently.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QEvent, QObject, Signal
from PySide6.QtWidgets import QApplication, QWidget

if TYPE_CHECKING:
    from ui.main_window import MainWindow

MODEL_SUFFIX = ".gguf"
_DRAG_TYPES = (QEvent.Type.DragEnter, QEvent.Type.DragMove, QEvent.Type.Drop)


def model_paths(mime) -> list[str]:
    """The local files of a drag if every one of them is a .gguf, else [] (not ours to take).

    Decided on the names alone: a drag-over must not read the disk on the GUI thread.
    """
    if mime is None or not mime.hasUrls():
        return []
    urls = mime.urls()
    paths = [url.toLocalFile() for url in urls if url.isLocalFile()]
    if not paths or len(paths) != len(urls):
        return []
    if not all(p.lower().endswith(MODEL_SUFFIX) for p in paths):
        return []
    return paths


class ModelDropImporter(QObject):
    sig_files_queued = Signal(list)  # paths accepted from a drop or another launch, before importing

    def __init__(self, window: "MainWindow"):
        super().__init__(window)
        self.window = window
        self.pending: list[str] = []
        window.setAcceptDrops(True)  # so that drops on widgets that take none reach us
        app = QApplication.instance()
        assert app is not None
        # Parented to the window: Qt drops the filter when the window is deleted.
        app.installEventFilter(self)
        window.sig_services_ready.connect(self._import_next)
        self.watch(window.models)

    def watch(self, models) -> None:
        """Import the next queued files when ``models`` (the Models page, built again after each
        lock or restore) finishes an import."""
        models.sig_import_finished.connect(lambda _added, _refused: self._import_next())

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:  # noqa: N802
        if event.type() not in _DRAG_TYPES or not isinstance(obj, QWidget) or obj.window() is not self.window:
            return False
        paths = model_paths(event.mimeData())
        if not paths:
            return False  # a document or some text: the pane under the cursor decides
        event.acceptProposedAction()
        if event.type() == QEvent.Type.Drop:
            self.import_files(paths)
        return True

    def import_files(self, paths: list[str]) -> None:
        """Queue files (absolute or relative paths) for import and show the Models page."""
        paths = [str(Path(p).expanduser().absolute()) for p in paths if p]
        if not paths:
            return
        self.pending.extend(paths)
        self.sig_files_queued.emit(paths)
        self.window.show_page("models")
        self._import_next()

    def _import_next(self) -> None:
        models = self.window.models
        if not self.pending or self.window.services is None or models.importing:
            return
        batch, self.pending = self.pending, []
        models.import_paths(batch)


def install(window: "MainWindow") -> ModelDropImporter:
    """Hook drops of .gguf files on ``window`` into the model library; returns the importer."""
    return ModelDropImporter(window)
