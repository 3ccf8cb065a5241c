"""The Translate pane: source box with inline suggestions, languages (and a swap), streaming
output with a copy button, and a whole text file translated as ``assistant translate FILE`` does.

GUI thread only. Translation runs on the window's :class:`ui.jobs.Jobs`: the core's generator
(``assistant.tasks.translation``) is iterated on a pool thread and each event comes back to
the GUI thread. Typing re-translates after a pause (debounced); a new translation stops the
one before (through the cancel event the generator checks), and Stop keeps what was finished.
While a new translation runs, the output of the one before is greyed and marked as out of date.
A file is translated by the same core call as the CLI's (:meth:`Translator.translate_file`), with
a progress bar that is full only once the translation is written, and its own Cancel.
Suggestions come from :class:`assistant.tasks.suggestions.Suggester`, whose result arrives on
a private thread and is handed to the GUI thread through ``sig_suggestion_received``.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QTimer, Signal
from PySide6.QtGui import QGuiApplication, QPalette
from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from assistant.tasks.suggestions import Suggester
from assistant.tasks.translation import (
    SUPPORTED,
    SegmentDone,
    SegmentText,
    TranslationFinished,
    TranslationStarted,
    Translator,
    translated_file_name,
)
from ui.file_dialogs import start_folder
from ui.suggesting_edit import SuggestingTextEdit, SuggestionController

if TYPE_CHECKING:
    from assistant.app import Services
    from ui.jobs import Job, Jobs

#: Pause in typing before the text is translated again.
TRANSLATE_DEBOUNCE_MS = 700


class TranslatePane(QWidget):
    """Give it the services and the window's jobs; call :meth:`shutdown` before it goes away."""

    sig_translation_finished = Signal(object)  # TranslationFinished
    sig_file_translated = Signal(object)  # the written translation's Path, or None when it failed

    def __init__(self, services: "Services", jobs: "Jobs", parent: QWidget | None = None):
        super().__init__(parent)
        self.services = services
        self.jobs = jobs
        self.translator = Translator.from_services(services)
        self.suggester = Suggester.from_services(services, task="translate")
        # The current translation's cancel event (it also tells its events from a superseded
        # one's), and every translation not yet ended, so that shutdown can wait for them.
        self._cancel: threading.Event | None = None
        self._running: dict[threading.Event, "Job"] = {}
        self._closed = False
        self._started: TranslationStarted | None = None
        self._segments: dict[int, str] = {}
        self.last_result: TranslationFinished | None = None
        # The file being translated: its cancel event and job (None when no file is), the
        # file last chosen (the dialogs start beside it) and the translation last written.
        self._file_cancel: threading.Event | None = None
        self._file_job: "Job | None" = None
        self._file_final: TranslationFinished | None = None
        self.input_file: Path | None = None
        self.written_file: Path | None = None

        self.source_combo = QComboBox()
        self.source_combo.addItem("Detect language", "auto")
        self.target_combo = QComboBox()
        for code, name in SUPPORTED.items():
            self.source_combo.addItem(name, code)
            self.target_combo.addItem(name, code)
        self.target_combo.setCurrentIndex(list(SUPPORTED).index("fr"))
        self.source_combo.setAccessibleName("Translate from")
        self.target_combo.setAccessibleName("Translate into")
        self.swap_button = QPushButton("⇄")
        self.swap_button.setAccessibleName("Swap languages")
        self.swap_button.setToolTip("Swap the languages and the two texts")
        self.swap_button.setMaximumWidth(self.swap_button.fontMetrics().horizontalAdvance("⇄") + 32)
        self.translate_button = QPushButton("Translate")
        self.stop_button = QPushButton("Stop")
        self.stop_button.setEnabled(False)
        self.translate_button.setAccessibleName("Translate now")
        self.stop_button.setAccessibleName("Stop translating")
        top = QHBoxLayout()
        top.addWidget(QLabel("From"))
        top.addWidget(self.source_combo)
        top.addWidget(self.swap_button)
        top.addWidget(QLabel("to"))
        top.addWidget(self.target_combo)
        top.addStretch(1)
        top.addWidget(self.translate_button)
        top.addWidget(self.stop_button)

        self.source_edit = SuggestingTextEdit()
        self.source_edit.setPlaceholderText("Type or paste text to translate")
        self.source_edit.setAccessibleName("Text to translate")
        # Tab moves on, as in the chat composer; with a suggestion shown it accepts it first.
        self.source_edit.setTabChangesFocus(True)
        self.source_edit.suggestions_enabled = bool(services.settings.suggestions_enabled)
        self.output = QPlainTextEdit()
        self.output.setReadOnly(True)
        self.output.setAccessibleName("Translation")
        self.outdated_label = QLabel("")
        self.outdated_label.setAccessibleName("Translation state")
        self.outdated_label.setWordWrap(True)
        self.outdated_label.hide()
        self.copy_button = QPushButton("Copy")
        self.copy_button.setAccessibleName("Copy the translation")
        self.copy_button.setEnabled(False)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        output_column = QVBoxLayout()
        output_column.addWidget(self.output, 1)
        under_output = QHBoxLayout()
        under_output.addWidget(self.outdated_label, 1)
        under_output.addWidget(self.copy_button)
        output_column.addLayout(under_output)
        boxes = QHBoxLayout()
        boxes.addWidget(self.source_edit)
        boxes.addLayout(output_column)

        self.file_button = QPushButton("Translate a file…")
        self.file_button.setAccessibleName("Translate a text file")
        self.file_button.setToolTip("Translate a whole text file into the language chosen above; "
                                    "the translation is saved as a new file")
        self.file_progress = QProgressBar()
        self.file_progress.setAccessibleName("File translation progress")
        self.file_progress.setRange(0, 1)
        self.file_progress.setValue(0)
        self.file_progress.hide()
        self.file_cancel_button = QPushButton("Cancel")
        self.file_cancel_button.setAccessibleName("Cancel the file translation")
        self.file_cancel_button.hide()
        self.file_status = QLabel("")
        self.file_status.setWordWrap(True)
        files = QHBoxLayout()
        files.addWidget(self.file_button)
        files.addWidget(self.file_progress, 1)
        files.addWidget(self.file_cancel_button)
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addLayout(boxes, 1)
        layout.addWidget(self.status)
        layout.addLayout(files)
        layout.addWidget(self.file_status)

        self._debounce = QTimer(self)
        self._debounce.setSingleShot(True)
        self._debounce.setInterval(TRANSLATE_DEBOUNCE_MS)
        self._debounce.timeout.connect(self.translate)
        self.source_edit.textChanged.connect(self._debounce.start)
        self.source_combo.currentIndexChanged.connect(lambda _i: self._debounce.start())
        self.target_combo.currentIndexChanged.connect(lambda _i: self._debounce.start())
        self.translate_button.clicked.connect(self.translate)
        self.stop_button.clicked.connect(self.stop)
        self.swap_button.clicked.connect(self.swap)
        self.copy_button.clicked.connect(self.copy_result)
        self.file_button.clicked.connect(self._choose_file)
        self.file_cancel_button.clicked.connect(self.cancel_file)
        self.output.textChanged.connect(lambda: self.copy_button.setEnabled(bool(self.output.toPlainText())))

        self.suggestions = SuggestionController(self.source_edit, self.suggester, self)

    # ----- translation ------------------------------------------------------------------
    @property
    def busy(self) -> bool:
        return self._cancel is not None

    def translate(self) -> None:
        self._debounce.stop()
        text = self.source_edit.toPlainText()
        self.stop()
        if not text.strip():
            self.output.setPlainText("")
            self.status.setText("")
            self._mark_outdated(None)
            return
        source = self.source_combo.currentData()
        target = self.target_combo.currentData()
        translator = self.translator
        cancel = threading.Event()
        job = self.jobs.stream(lambda: translator.translate_stream(text, target, source=source, cancel=cancel),
                               on_event=lambda event: self._on_event(cancel, event),
                               on_done=lambda _result: self._on_job_done(cancel),
                               on_error=lambda message, _exc: self._on_failed(cancel, message),
                               cancel=cancel.set)
        if job is None:
            return  # the window is closing
        self._running[cancel] = job
        self._cancel = cancel
        self._segments = {}
        self._started = None
        self.stop_button.setEnabled(True)
        self.status.setText("Translating…")
        if self.output.toPlainText():
            self._mark_outdated("Out of date: translating the new text…")

    def stop(self) -> None:
        if self._cancel is not None:
            self._cancel.set()
            self._cancel = None
            if self.output.toPlainText():  # what is shown is the stopped run's part, or the run before's
                self._mark_outdated("Stopped: this is not the whole translation of the text.")
        self.stop_button.setEnabled(False)

    @property
    def output_outdated(self) -> bool:
        """Whether the output is marked as not (or not yet) the translation of the text on the left."""
        return self.outdated_label.isVisibleTo(self)

    def _mark_outdated(self, note: str | None) -> None:
        """Grey the output and say why (``note``) while it is not the translation of the text on
        the left; None: it is, and the marker goes."""
        self.outdated_label.setText(note or "")
        self.outdated_label.setVisible(note is not None)
        if note is None:
            self.output.setStyleSheet("")
        else:
            # The theme's placeholder colour, with its transparency (name() would drop it).
            grey = self.palette().color(QPalette.ColorRole.PlaceholderText)
            self.output.setStyleSheet(f"QPlainTextEdit {{ color: rgba({grey.red()}, {grey.green()}, {grey.blue()}, "
                                      f"{grey.alpha()}); }}")

    def _render(self) -> None:
        started = self._started
        if started is None:
            return
        order = {piece: k for k, piece in enumerate(started.order)}
        parts = []
        for i, piece in enumerate(started.pieces):
            if not piece.translate:
                parts.append(piece.text)
            else:
                k = order[i]
                parts.append(self._segments.get(k, "").lstrip() if k in self._segments else "…")
        self.output.setPlainText("".join(parts))

    def _on_event(self, cancel: threading.Event, event: Any) -> None:
        if cancel is not self._cancel or self._closed:
            return  # a superseded translation: its events are stale
        if isinstance(event, TranslationStarted):
            self._started = event
            if event.detected:
                self.status.setText(f"Translating from {SUPPORTED[event.source]} (detected)…")
        elif isinstance(event, SegmentText):
            self._segments[event.index] = self._segments.get(event.index, "") + event.text
            self._render()
            self._mark_outdated("Translating… the text here is not finished yet.")
        elif isinstance(event, SegmentDone):
            self._segments[event.index] = event.text
            self._render()
            self._mark_outdated(f"Translating… {event.done} of {event.total} sentences done.")
        elif isinstance(event, TranslationFinished):
            self.last_result = event
            self.output.setPlainText(event.text)
            # Say that the source language was a guess, so a wrong guess is seen (and fixed in
            # "Translate from") rather than taken for a bad translation.
            detected = self._started is not None and self._started.detected
            note = f"{SUPPORTED[event.source]}{' (detected)' if detected else ''} → {SUPPORTED[event.target]}"
            if event.cancelled:
                note += f" · stopped after {event.segments_done} of {event.segments_total} sentences"
                self._mark_outdated("Stopped: this is not the whole translation of the text.")
            else:
                self._mark_outdated(None)
            self.status.setText(note)
            self.sig_translation_finished.emit(event)

    def _on_failed(self, cancel: threading.Event, message: str) -> None:
        if cancel is self._cancel and not self._closed:
            self.status.setText(message)
            if self.output.toPlainText():
                self._mark_outdated("Out of date: the new text could not be translated.")
        self._on_job_done(cancel)

    def _on_job_done(self, cancel: threading.Event) -> None:
        self._running.pop(cancel, None)
        if self._closed:
            return  # after shutdown: the widgets may be gone
        if cancel is self._cancel:
            self._cancel = None
            self.stop_button.setEnabled(False)

    # ----- swap and copy ----------------------------------------------------------------
    def swap(self) -> None:
        """Exchange the two languages and the two texts (the translation becomes the text to
        translate). "Detect language" swaps as the language it detected last."""
        source = self.source_combo.currentData()
        if source == "auto":
            source = self.last_result.source if self.last_result is not None else None
        if source is None:
            self.status.setText("Choose the language to translate from (or translate once to detect it), "
                                "then swap.")
            return
        target = self.target_combo.currentData()
        current = self._cancel is None and not self.output_outdated
        self.stop()
        original, translated = self.source_edit.toPlainText(), self.output.toPlainText()
        self.source_combo.setCurrentIndex(self.source_combo.findData(target))
        self.target_combo.setCurrentIndex(self.target_combo.findData(source))
        self.source_edit.setPlainText(translated)
        self._debounce.stop()  # the texts are each other's translation already
        if current:
            self.output.setPlainText(original)
            self._mark_outdated(None)
            self.status.setText(f"{SUPPORTED[target]} → {SUPPORTED[source]}")
        else:
            self.output.setPlainText("")
            self.translate()  # the translation shown was out of date or partial: make the real one

    def copy_result(self) -> None:
        text = self.output.toPlainText()
        if text:
            QGuiApplication.clipboard().setText(text)
            self.status.setText("The translation is copied." if not self.output_outdated
                                else "Copied (out of date: it is not the translation of the current text).")

    # ----- a whole file -----------------------------------------------------------------
    @property
    def file_busy(self) -> bool:
        return self._file_job is not None

    def _choose_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Translate a text file", start_folder(self.input_file),
                                              "Text (*.txt *.md *.rst *.text);;All files (*)")
        if not path:
            return
        proposed = translated_file_name(path, self.target_combo.currentData())
        out, _ = QFileDialog.getSaveFileName(self, "Save the translation as", str(proposed),
                                             "Text (*.txt *.md *.rst *.text);;All files (*)")
        if out:
            self.translate_file(path, out)

    def translate_file(self, path: str | Path, out: str | Path) -> None:
        """Translate the text file ``path`` into the chosen language and write ``out``, on the
        window's pool; progress, Cancel and the result show under the boxes."""
        if self.file_busy:
            return
        path, out = Path(path), Path(out)
        self.input_file = path
        if out.resolve() == path.resolve():
            self.file_status.setText("Choose another name for the translation: it would replace the file itself.")
            return
        source = self.source_combo.currentData()
        target = self.target_combo.currentData()
        translator = self.translator
        cancel = threading.Event()
        job = self.jobs.stream(lambda: translator.translate_file(path, target, out, source=source, cancel=cancel),
                               on_event=lambda event: self._on_file_event(cancel, event),
                               on_done=lambda written: self._on_file_done(cancel, written),
                               on_error=lambda message, _exc: self._on_file_failed(cancel, message),
                               cancel=cancel.set)
        if job is None:
            return  # the window is closing
        self._file_cancel, self._file_job = cancel, job
        self._file_final = None
        self.written_file = None
        self.file_progress.setRange(0, 0)  # busy until the file is read and cut into sentences
        self.file_progress.show()
        self.file_cancel_button.show()
        self.file_cancel_button.setEnabled(True)
        self.file_button.setEnabled(False)
        self.file_status.setText(f"Reading {path.name}…")

    def cancel_file(self) -> None:
        """Stop the file's translation: the sentences finished are written, the rest stay as they were."""
        if self._file_cancel is not None:
            self._file_cancel.set()
            self.file_cancel_button.setEnabled(False)
            self.file_status.setText("Stopping… the sentences already translated will be saved.")

    def _on_file_event(self, cancel: threading.Event, event: Any) -> None:
        if cancel is not self._file_cancel or self._closed:
            return
        if isinstance(event, TranslationStarted):
            # One step per sentence and a last one for writing the file: the bar is full only
            # once the translation is saved.
            self.file_progress.setRange(0, event.segments + 1)
            self.file_progress.setValue(0)
            language = f"{SUPPORTED[event.source]} (detected)" if event.detected else SUPPORTED[event.source]
            self.file_status.setText(f"Translating {self.input_file.name} from {language} into "
                                     f"{SUPPORTED[event.target]}: {event.segments} sentences…")
        elif isinstance(event, SegmentDone):
            self.file_progress.setValue(event.done)
            self.file_status.setText(f"Translating {self.input_file.name}: {event.done} of {event.total} sentences…")
        elif isinstance(event, TranslationFinished):
            self._file_final = event

    def _on_file_done(self, cancel: threading.Event, written: Path | None) -> None:
        if self._file_ended(cancel):
            return
        final = self._file_final
        self.written_file = written
        if final is not None and final.cancelled:
            self.file_status.setText(f"Cancelled after {final.segments_done} of {final.segments_total} sentences; "
                                     f"saved {written} with the rest left as it was.")
        else:
            self.file_progress.setValue(self.file_progress.maximum())
            self.file_status.setText(f"Translated {self.input_file.name}: saved as {written}.")
        self.sig_file_translated.emit(written)

    def _on_file_failed(self, cancel: threading.Event, message: str) -> None:
        if self._file_ended(cancel):
            return
        self.file_progress.hide()
        self.file_status.setText(message)
        self.sig_file_translated.emit(None)

    def _file_ended(self, cancel: threading.Event) -> bool:
        """Forget the file's job; True when nothing more should be shown (superseded or closed)."""
        if cancel is not self._file_cancel:
            return True
        self._file_cancel = self._file_job = None
        if self._closed:
            return True
        self.file_cancel_button.hide()
        self.file_button.setEnabled(True)
        if self.file_progress.maximum() == 0:
            self.file_progress.setRange(0, 1)  # never left spinning
        return False

    def shutdown(self, timeout_ms: int = 30000) -> bool:
        """GUI thread, when the pane or window closes: stop all work and wait for it."""
        self._closed = True
        self._debounce.stop()
        self.stop()
        running = list(self._running.values())
        if self._file_job is not None:
            running.append(self._file_job)
        for job in running:
            job.cancel()
        suggestions_done = self.suggestions.shutdown(timeout_ms)
        return all(job.done.wait(timeout_ms / 1000) for job in running) and suggestions_done
