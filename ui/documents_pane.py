"""The Documents pane: add files and folders, see progress and per-file errors, remove,
re-index, and ask questions answered from the documents with clickable sources.

GUI thread only. Every piece of work (parsing, embedding, the store, the engine) runs on
the window's :class:`ui.jobs.Jobs` pool; progress comes back through
``sig_progress_changed`` (emitted on a pool thread, delivered queued on the GUI thread).
Watched folders are polled by a timer that runs :meth:`Documents.sync` as a job.

A question is a turn of a :class:`assistant.chat.session.ChatSession` that writes nothing
(``persist=False``) with the documents attached, as the chat and ``assistant ask`` answer:
its events are streamed through :meth:`ui.jobs.Jobs.stream`, the reply shows as it arrives,
the sentence of the passages that answers first (or "I couldn't find this in your documents"),
with its citation, then the model's wording only once the core found that it agrees with that
sentence (``assistant.chat.sources.shown_answer``), else a "Show the model's attempt" link,
and the sources.
"""

from __future__ import annotations

import os
import textwrap
import threading
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, Qt, QTimer, QUrl, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QFileDialog,
    QHBoxLayout,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QProgressBar,
    QPushButton,
    QStackedWidget,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)

from assistant.chat.events import ModelLoading, ReplyDone, ReplyFailed, Token, TurnPrepared
from assistant.wording import counted, passages_line
from ui.compact_widgets import ElidedLabel
from ui.empty_state import EmptyState
from ui.markdown import markdown_html, quote_html, show_passage

if TYPE_CHECKING:
    from assistant.app import Services
    from assistant.chat.session import ChatSession
    from ui.jobs import Job, Jobs

#: How often watched folders are checked for changed files.
SYNC_INTERVAL_MS = 30_000
#: The page before any document is indexed: one sentence and one action (issue 19, point 5).
EMPTY_STATE_TEXT = "Add a folder or files to ask questions about them."


def _file_line(status: str, name: str, collection: str, chunks: int, error: str = "") -> str:
    """One line of the file list: "✓ notes.md (default, 3 passages)", "… notes.md (indexing…)",
    "✗ notes.md (…)" with the reason on a second line."""
    if status == "indexing":
        return f"… {name} (indexing…)"
    mark = "✓" if status == "indexed" else ("✗" if status == "error" else "…")
    where = f"{collection}, " if collection else ""
    text = f"{mark} {name} ({where}{counted(chunks, 'passage')})"
    return text + (f"\n    {error}" if error else "")


class _ProgressSignals(QObject):
    sig_progress_changed = Signal(object)  # assistant.documents.collections.Progress


class DocumentsPane(QWidget):
    sig_documents_changed = Signal()  # the list was refreshed after a job
    sig_answer_shown = Signal(object)  # the answer's assistant.chat.ReplyDone (message, sources)
    sig_passage_opened = Signal(object)  # the chunk dict shown

    def __init__(self, services: "Services", jobs: "Jobs", parent: QWidget | None = None,
                 sync_interval_ms: int = SYNC_INTERVAL_MS):
        super().__init__(parent)
        self.services = services
        self.jobs = jobs
        self._cancel = threading.Event()
        self._busy = False
        # The question being answered: its job and session (a new question stops the old one),
        # and what has arrived of the answer.
        self._asking: "Job | None" = None
        self._session: "ChatSession | None" = None
        self._sources: tuple = ()
        self._reply = ""
        self._show_attempt = False  # the user opened the model's attempt that does not agree
        self._closed = False
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
        # The file being indexed is named in the middle of a line: elided, so that a long file
        # name never widens the window; the list shows long names cut in the middle (the
        # extension stays) with the whole path in the tooltip.
        self.progress_label = ElidedLabel("", elide=Qt.TextElideMode.ElideMiddle)
        self.files = QListWidget()
        self.files.setTextElideMode(Qt.TextElideMode.ElideMiddle)
        self.files.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.file_dialog: QFileDialog | None = None  # the add dialog open now
        self._listed = False  # the list has been read once (until then, no empty state: no flash)
        self._job_collection = ""  # the collection files are being added to, for the list's lines
        # Where the list goes while nothing is indexed: what the page is for, and how to start.
        self.empty_state = EmptyState(
            EMPTY_STATE_TEXT, "Add a folder…", self._choose_folder, name="No documents yet",
            action_name="Add a folder of documents",
            action_tip="The folder is watched: files you add to it later are indexed too. Single files: Add files… above.")
        self.empty_label, self.empty_add_button = self.empty_state.label, self.empty_state.button
        self.files_stack = QStackedWidget()
        self.files_stack.addWidget(self.files)
        self.files_stack.addWidget(self.empty_state)
        self.question = QLineEdit()
        self.question.setPlaceholderText("Ask your documents…")
        self.question.returnPressed.connect(lambda: self.ask(self.question.text()))
        self.only_documents = QCheckBox("Answer only from my documents")
        self.budget_label = ElidedLabel("")
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
        layout.addWidget(self.files_stack, 2)
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
        return self.services.documents_core()

    # ----- jobs ---------------------------------------------------------------------------------
    def _start(self, make_events) -> None:
        if self._busy:
            return
        self._busy = True
        self._show_empty_state()
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
        self._job_collection = collection
        self._start(lambda documents: documents.add_paths(paths, collection, self._cancel))

    def reindex(self) -> None:
        self._job_collection = ""
        self._start(lambda documents: documents.reindex(None, self._cancel))

    def sync(self) -> None:
        if not self._busy:
            self._job_collection = ""
            self._start(lambda documents: documents.sync(self._cancel))

    def remove_selected(self) -> None:
        item = self.files.currentItem()
        if item is None or self._busy:
            return
        path = item.data(256)

        def work():
            from assistant.documents.collections import Documents, default_counter

            return Documents(self.services.store, embed=None, counter=default_counter(self.services)).remove(path)  # type: ignore[arg-type]

        self.jobs.run(work, on_done=lambda _n: self.refresh(), on_error=lambda m, _e: self.progress_label.setText(m))

    def _finished(self, message: str | None = None) -> None:
        self._busy = False
        self.cancel_button.setEnabled(False)
        if message:
            self.progress_label.setText(message)
        self.refresh()

    def _on_progress(self, event) -> None:
        """GUI thread: one Progress event from a running job. The bar counts files finished (a
        file being indexed is not), and each file is listed as soon as it is done."""
        self.progress_events.append(event)
        self.progress.setMaximum(max(1, event.total))
        self.progress.setValue(event.files_finished)
        totals = event.totals or {}
        counts = f"{counted(totals.get('chunks', 0), 'passage')} · {totals.get('errors', 0)} failed"
        if event.kind == "file":
            text = f"Indexing file {event.index} of {event.total}: {os.path.basename(event.path)} · {counts}"
        elif event.kind == "done":
            text = f"Done: {counted(event.total, 'file')} · {counts}"
        elif event.kind == "cancelled":
            text = f"Cancelled after {event.files_finished} of {counted(event.total, 'file')} · {counts}"
        elif event.kind == "error":
            text = f"{event.files_finished} of {counted(event.total, 'file')} done · {counts} · {event.message}"
        else:
            text = f"{event.files_finished} of {counted(event.total, 'file')} done · {counts}"
        self.progress_label.setText(text)
        self._list_progress(event)

    def _list_progress(self, event) -> None:
        """Show the file an event is about in the list at once (the job's end re-reads the whole
        list from the store)."""
        if not event.path or event.kind not in ("file", "indexed", "unchanged", "error", "removed"):
            return
        found = next((self.files.item(i) for i in range(self.files.count())
                      if self.files.item(i).data(256) == event.path), None)
        if event.kind == "removed":
            if found is not None:
                self.files.takeItem(self.files.row(found))
            return
        status = {"file": "indexing", "error": "error"}.get(event.kind, "indexed")
        text = _file_line(status, os.path.basename(event.path), self._job_collection, event.chunks, event.message)
        if found is None:
            found = QListWidgetItem()
            found.setData(256, event.path)
            found.setToolTip(event.path)
            self.files.addItem(found)
        found.setText(text)
        self._show_empty_state()

    def _show_empty_state(self) -> None:
        empty = self._listed and not self._busy and self.files.count() == 0
        self.files_stack.setCurrentWidget(self.empty_state if empty else self.files)

    def refresh(self) -> None:
        def work():
            from assistant.documents.collections import Documents, default_counter

            return Documents(self.services.store, embed=None, counter=default_counter(self.services)).list()  # type: ignore[arg-type]

        self.jobs.run(work, on_done=self._show_files)

    def _show_files(self, items: list[dict]) -> None:
        self.files.clear()
        for item in items:
            text = _file_line(item["status"], item["title"] or os.path.basename(item["path"]), item["collection"],
                              item["chunks"], item["error"])
            widget_item = QListWidgetItem(text)
            widget_item.setData(256, item["path"])
            widget_item.setToolTip(item["path"])
            self.files.addItem(widget_item)
        self._listed = True
        self._show_empty_state()
        self.sig_documents_changed.emit()

    # ----- asking ---------------------------------------------------------------------------------
    def ask(self, question: str) -> None:
        """Answer ``question`` from all the collections, streamed into the answer box."""
        question = question.strip()
        if not question or self._closed:
            return
        from assistant.chat.session import ChatSession  # the store and the engine client: not before the first paint

        self.stop_asking()
        only = self.only_documents.isChecked()
        session = ChatSession(self.services, persist=False, documents={"collections": None, "only": only})
        self._sources, self._reply, self._show_attempt = (), "", False
        # The previous question's passages must not read as this one's while it runs.
        self.budget_label.setText("Looking for passages in your documents…")
        self.answer.setPlainText("…")
        job = self.jobs.stream(session.turn, question, on_event=lambda event: self._on_answer_event(session, event),
                               on_done=lambda _r: self._asked(session),
                               on_error=lambda message, _e: self._ask_failed(session, message),
                               cancel=session.cancel)
        if job is not None:
            self._asking, self._session = job, session

    def stop_asking(self) -> None:
        """Stop the answer in progress; what arrived stays on screen."""
        if self._asking is not None:
            self._asking.cancel()
        self._asking, self._session = None, None

    def _on_answer_event(self, session: "ChatSession", event) -> None:
        if session is not self._session or self._closed:
            return  # a question asked before the current one
        if isinstance(event, TurnPrepared):
            self._sources = tuple(event.sources)
            if event.budget:
                self.budget_label.setText(passages_line(len(self._sources), int(event.budget.get("used") or 0),
                                                        int(event.budget.get("total") or 0)))
            else:
                self.budget_label.setText("")
            if self._sources:
                self._show_answer("")  # the extractive answer is there before the model writes
        elif isinstance(event, ModelLoading) and not self._reply:
            self.answer.setPlainText("Loading the model…")
        elif isinstance(event, Token):
            self._reply += event.text
            self._show_answer(self._reply)
        elif isinstance(event, ReplyDone):
            self._sources, self._reply = tuple(event.sources), event.message.text
            self._show_answer(event.message.text, final=True)
            self.sig_answer_shown.emit(event)
        elif isinstance(event, ReplyFailed):
            self._reply = event.message.text if event.message is not None else self._reply
            self._show_answer(self._reply, note=event.text, final=True)

    def _asked(self, session: "ChatSession") -> None:
        if session is self._session:
            self._asking, self._session = None, None

    def _ask_failed(self, session: "ChatSession", message: str) -> None:
        if session is self._session and not self._closed:
            self.answer.setPlainText(message)
        self._asked(session)

    def _show_answer(self, text: str, note: str = "", final: bool = False) -> None:
        """The answer as it stands: the sentence that answers with its citation (or "I couldn't
        find this"), the model's wording when the core found that it agrees (else a link that
        shows it), the sources. ``final``: the reply has ended (a reply that ended unchecked,
        stopped or failed, is not vouched for either)."""
        from assistant.chat.sources import shown_answer

        parts = []
        shown = shown_answer(self._sources)
        if shown is None:
            parts.append(self._markdown(text))  # no sources: "only from my documents" said no
        else:
            # The sentence of the user's own text comes first: the app stands behind it, not
            # behind a small model's wording (see assistant/documents/answers.py).
            if shown["found"]:
                parts.append(f"<p>{quote_html(shown['number'], shown['chunk_id'], shown['text'])}<br>"
                             f"<small>{escape(shown['file'])}, {escape(shown['location'])}</small></p>")
            else:
                parts.append(f"<p><b>{escape(shown['text'])}</b></p>")
            if not shown["checked"] and not final:
                parts.append("<p><i>The model is writing; its wording is shown if it agrees with your documents…</i></p>")
            elif shown["agrees"] and text.strip():
                # The model's wording is Markdown, shown as the chat shows replies.
                parts.append(f"<p><b>The model's answer:</b></p>{self._markdown(text)}")
            elif text.strip() and self._show_attempt:
                parts.append(f"<p><a href=\"attempt:hide\">Hide the model's attempt</a><br><i>The model's attempt "
                             f"(it does not agree with your documents):</i></p>{self._markdown(text)}")
            elif text.strip():
                parts.append('<p><a href="attempt:show">Show the model\'s attempt</a></p>')
        if note:
            parts.append(f"<p><i>{escape(note)}</i></p>")
        if self._sources:
            parts.append("<p><b>Sources</b></p><ol>")
            for source in self._sources:
                # Cut at a word, with an ellipsis: a snippet ending mid-word reads as a fault.
                snippet = escape(textwrap.shorten(" ".join(source["passage"].split()), width=160, placeholder=" …"))
                parts.append(f'<li><a href="chunk:{int(source["chunk_id"])}">{escape(source["file"])}, '
                             f"{escape(source['location'])}</a><br><small>{snippet}</small></li>")
            parts.append("</ol>")
        self.answer.setHtml("".join(parts))

    def _markdown(self, text: str) -> str:
        from ui.theme import COLORS

        dark = self.answer.palette().base().color().lightness() < 128
        return markdown_html(text, COLORS["dark" if dark else "light"], self.answer.font())

    def _open_link(self, url: QUrl) -> None:
        text = url.toString()
        if text in ("attempt:show", "attempt:hide"):
            self._show_attempt = text == "attempt:show"
            self._show_answer(self._reply, final=True)
        elif text.startswith("chunk:"):
            self.open_passage(int(text.split(":", 1)[1]))

    def open_passage(self, chunk_id: int) -> None:
        from assistant.chat.sources import source_dict

        def work():
            documents, _ = self._core()
            chunk = documents.chunk(chunk_id)
            # The passage as the chat and the CLI show it: reST/Markdown markup cleaned.
            return chunk, source_dict(0, chunk) if chunk is not None else None

        def show(found) -> None:
            chunk, source = found
            if chunk is None:
                self.passage.setPlainText("This passage is no longer indexed.")
                return
            show_passage(self.passage, source["passage"], f"{source['path']} — {source['location']}")
            self.sig_passage_opened.emit(chunk)

        self.jobs.run(work, on_done=show)

    # ----- dialogs --------------------------------------------------------------------------------
    def _choose_files(self) -> None:
        dialog = QFileDialog(self, "Add documents")
        dialog.setFileMode(QFileDialog.FileMode.ExistingFiles)
        dialog.setNameFilter("Documents (*.txt *.md *.rst *.html *.htm *.pdf *.docx)")
        dialog.setDirectory(str(Path.home()))  # where the user's files are, not the app's working folder
        dialog.filesSelected.connect(self.add_paths)
        self.file_dialog = dialog
        dialog.open()

    def _choose_folder(self) -> None:
        dialog = QFileDialog(self, "Add a folder (it will be watched)")
        dialog.setFileMode(QFileDialog.FileMode.Directory)
        dialog.setDirectory(str(Path.home()))
        dialog.fileSelected.connect(lambda path: self.add_paths([path]))
        self.file_dialog = dialog
        dialog.open()

    def shutdown(self) -> None:
        """GUI thread: stop the timer, the indexing and the answer in progress (the window's
        :meth:`ui.jobs.Jobs.shutdown` waits for them)."""
        self._closed = True
        self.timer.stop()
        self._cancel.set()
        self.stop_asking()
