"""The Documents pane: add files and folders, see progress and per-file errors, remove,
re-index, and ask questions answered from the documents with clickable sources.

GUI thread only. Every piece of work (parsing, embedding, the store, the engine) runs on
the window's :class:`ui.jobs.Jobs` pool; progress comes back through
``sig_progress_changed`` (emitted on a pool thread, delivered queued on the GUI thread).
Watched folders are polled by a timer that runs :meth:`Documents.sync` as a job.
"""

from __future__ import annotations

import os
import threading
from html import escape
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QObject, QTimer, QUrl, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QProgressBar,
    QPushButton,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)

from ui import operations
from ui.jobs import Jobs
from ui.markdown import quote_html

if TYPE_CHECKING:
    from assistant.app import Services

#: How often watched folders are checked for changed files.
SYNC_INTERVAL_MS = 30_000


class _ProgressSignals(QObject):
    sig_progress_changed = Signal(object)  # assistant.documents.Progress


class DocumentsPane(QWidget):
    sig_documents_changed = Signal()  # the list was refreshed after a job
    sig_answer_shown = Signal(object)  # assistant.grounded.GroundedAnswer
    sig_passage_opened = Signal(object)  # the chunk dict shown

    def __init__(self, services: "Services", jobs: Jobs | None = None, parent: QWidget | None = None,
                 sync_interval_ms: int = SYNC_INTERVAL_MS):
        super().__init__(parent)
        self.services = services
        self._own_jobs = jobs is None
        self.jobs = jobs or Jobs(self)
        self._cancel = threading.Event()
        self._busy = False
        self._documents = None
        self._retriever = None
        self._embed = None
        self._sources: dict[int, Any] = {}
        self.progress_events: list = []  # the current job's events, for the message list and tests
        self._signals = _ProgressSignals()  # created here: emissions from the pool are queued
        self._signals.sig_progress_changed.connect(self._on_progress)

        self.collection = QLineEdit("default")
        self.collection.setPlaceholderText("collection")
        add_files = QPushButton("Add files…")
        add_folder = QPushButton("Add folder…")
        self.remove_button = QPushButton("Remove")
        self.reindex_button = QPushButton("Re-index")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        add_files.clicked.connect(self._choose_files)
        add_folder.clicked.connect(self._choose_folder)
        self.remove_button.clicked.connect(self.remove_selected)
        self.reindex_button.clicked.connect(self.reindex)
        self.cancel_button.clicked.connect(self._cancel.set)
        self.progress = QProgressBar()
        self.progress_label = QLabel("")
        self.files = QListWidget()
        self.question = QLineEdit()
        self.question.setPlaceholderText("Ask your documents…")
        self.question.returnPressed.connect(lambda: self.ask(self.question.text()))
        self.only_documents = QCheckBox("Answer only from my documents")
        self.budget_label = QLabel("")
        self.answer = QTextBrowser()
        self.answer.setOpenLinks(False)
        self.answer.anchorClicked.connect(self._open_link)
        self.passage = QTextBrowser()
        for widget, name in ((self.collection, "Collection"), (add_files, "Add files"), (add_folder, "Add folder"),
                             (self.remove_button, "Remove selected documents"), (self.reindex_button, "Re-index"),
                             (self.cancel_button, "Cancel indexing"), (self.progress, "Indexing progress"),
                             (self.progress_label, "Indexing status"), (self.files, "Indexed documents"),
                             (self.question, "Question about your documents"),
                             (self.only_documents, "Answer only from my documents"),
                             (self.budget_label, "Context budget"), (self.answer, "Answer with sources"),
                             (self.passage, "Source passage")):
            widget.setAccessibleName(name)

        buttons = QHBoxLayout()
        for widget in (self.collection, add_files, add_folder, self.remove_button, self.reindex_button, self.cancel_button):
            buttons.addWidget(widget)
        layout = QVBoxLayout(self)
        layout.addLayout(buttons)
        layout.addWidget(self.progress)
        layout.addWidget(self.progress_label)
        layout.addWidget(self.files, 2)
        layout.addWidget(self.question)
        layout.addWidget(self.only_documents)
        layout.addWidget(self.budget_label)
        layout.addWidget(self.answer, 2)
        layout.addWidget(self.passage, 1)

        self.timer = QTimer(self)
        self.timer.setInterval(sync_interval_ms)
        self.timer.timeout.connect(self.sync)
        if sync_interval_ms > 0:
            self.timer.start()
        self.refresh()

    # ----- core objects (built lazily on a pool thread: the embedder converts once) ------------
    def _core(self):
        """Pool thread: the app's one Documents and Retriever (shared with the chat)."""
        if self._documents is None:
            with self.jobs.engine_lock:
                self._documents, self._retriever = self.services.documents_core()
        return self._documents, self._retriever

    # ----- jobs ---------------------------------------------------------------------------------
    def _start(self, make_events) -> None:
        if self._busy:
            return
        self._busy = True
        self.progress_events = []
        self._cancel.clear()
        self.cancel_button.setEnabled(True)
        signals = self._signals

        def work():  # pool thread
            documents, _ = self._core()
            for event in make_events(documents):
                signals.sig_progress_changed.emit(event)
            return None

        self.jobs.run(work, on_done=lambda _r: self._finished(), on_error=lambda message, _e: self._finished(message))

    def add_paths(self, paths: list[str]) -> None:
        collection = self.collection.text().strip() or "default"
        self._start(lambda documents: documents.add_paths(paths, collection, self._cancel))

    def reindex(self) -> None:
        self._start(lambda documents: documents.reindex(None, self._cancel))

    def sync(self) -> None:
        if not self._busy:
            self._start(lambda documents: documents.sync(self._cancel))

    def remove_selected(self) -> None:
        item = self.files.currentItem()
        if item is None or self._busy:
            return
        path = item.data(256)

        def work():
            from assistant.documents import Documents, default_counter

            return Documents(self.services.store, embed=None, counter=default_counter(self.services)).remove(path)  # type: ignore[arg-type]

        self.jobs.run(work, on_done=lambda _n: self.refresh(), on_error=lambda m, _e: self.progress_label.setText(m))

    def _finished(self, message: str | None = None) -> None:
        self._busy = False
        self.cancel_button.setEnabled(False)
        if message:
            self.progress_label.setText(message)
        self.refresh()

    def _on_progress(self, event) -> None:
        """GUI thread: one Progress event from a running job."""
        self.progress_events.append(event)
        self.progress.setMaximum(max(1, event.total))
        self.progress.setValue(event.index)
        totals = event.totals or {}
        text = (f"{event.index}/{event.total} files · {operations.counted(totals.get('chunks', 0), 'passage')} · "
                f"{totals.get('errors', 0)} failed")
        if event.kind == "file":
            text += f" · {os.path.basename(event.path)}"
        elif event.kind == "error":
            text += f" · {event.message}"
        elif event.kind == "cancelled":
            text += " · cancelled"
        self.progress_label.setText(text)

    def refresh(self) -> None:
        def work():
            from assistant.documents import Documents, default_counter

            return Documents(self.services.store, embed=None, counter=default_counter(self.services)).list()  # type: ignore[arg-type]

        self.jobs.run(work, on_done=self._show_files)

    def _show_files(self, items: list[dict]) -> None:
        self.files.clear()
        for item in items:
            mark = "✓" if item["status"] == "indexed" else ("✗" if item["status"] == "error" else "…")
            text = f"{mark} {item['title'] or os.path.basename(item['path'])} ({item['collection']}, {operations.counted(item['chunks'], 'passage')})"
            if item["error"]:
                text += f"\n    {item['error']}"
            widget_item = QListWidgetItem(text)
            widget_item.setData(256, item["path"])
            widget_item.setToolTip(item["path"])
            self.files.addItem(widget_item)
        self.sig_documents_changed.emit()

    # ----- asking ---------------------------------------------------------------------------------
    def ask(self, question: str) -> None:
        question = question.strip()
        if not question:
            return
        only = self.only_documents.isChecked()
        self.answer.setPlainText("…")

        def work():  # pool thread
            from assistant.grounded import GroundedChat

            _documents, retriever = self._core()
            with self.jobs.engine_lock:
                engine = self.services.engine
            model = self.services.library.for_task("chat")
            chat = GroundedChat(retriever, engine, model.path, context_tokens=int(self.services.settings.engine.n_ctx))
            return chat.ask(question, only_documents=only)

        self.jobs.run(work, on_done=self._show_answer, on_error=lambda m, _e: self.answer.setPlainText(m))

    def _show_answer(self, answer) -> None:
        self._sources = {s.chunk_id: s for s in answer.sources}
        parts = []
        if answer.quote is not None:
            # The sentence of the user's own text comes first: it is right more often than
            # a small model's reply (see assistant/grounded.py).
            quote = answer.quote
            parts.append(f"<p>{quote_html(quote.number, quote.chunk_id, quote.text)}</p>")
            parts.append(f"<p><b>The model's answer:</b> {escape(answer.text)}</p>")
        else:
            parts.append(f"<p>{escape(answer.text)}</p>")
        if answer.sources:
            parts.append("<p><b>Sources</b></p><ol>")
            for source in answer.sources:
                snippet = escape(" ".join(source.passage.split())[:160])
                parts.append(f'<li><a href="chunk:{source.chunk_id}">{escape(os.path.basename(source.path))}, '
                             f"{escape(source.location)}</a><br><small>{snippet}</small></li>")
            parts.append("</ol>")
        self.answer.setHtml("".join(parts))
        self.budget_label.setText(f"Passages: {answer.budget['used']} of {answer.budget['total']} prompt tokens")
        self.sig_answer_shown.emit(answer)

    def _open_link(self, url: QUrl) -> None:
        text = url.toString()
        if text.startswith("chunk:"):
            self.open_passage(int(text.split(":", 1)[1]))

    def open_passage(self, chunk_id: int) -> None:
        def work():
            documents, _ = self._core()
            return documents.chunk(chunk_id)

        def show(chunk) -> None:
            if chunk is None:
                self.passage.setPlainText("This passage is no longer indexed.")
                return
            where = f"page {chunk['page']}" if chunk["page"] else (chunk["heading"] or "")
            self.passage.setHtml(f"<p><b>{escape(chunk['path'])}</b> — {escape(where)}</p>"
                                 f"<pre style='white-space: pre-wrap'>{escape(chunk['text'])}</pre>")
            self.sig_passage_opened.emit(chunk)

        self.jobs.run(work, on_done=show)

    # ----- dialogs --------------------------------------------------------------------------------
    def _choose_files(self) -> None:
        dialog = QFileDialog(self, "Add documents")
        dialog.setFileMode(QFileDialog.FileMode.ExistingFiles)
        dialog.setNameFilter("Documents (*.txt *.md *.rst *.html *.htm *.pdf *.docx)")
        dialog.filesSelected.connect(self.add_paths)
        dialog.open()

    def _choose_folder(self) -> None:
        dialog = QFileDialog(self, "Add a folder (it will be watched)")
        dialog.setFileMode(QFileDialog.FileMode.Directory)
        dialog.fileSelected.connect(lambda path: self.add_paths([path]))
        dialog.open()

    def shutdown(self) -> None:
        """GUI thread: stop the timer and any job; waits for the pool if the pane owns it."""
        self.timer.stop()
        self._cancel.set()
        if self._own_jobs:
            self.jobs.shutdown()
