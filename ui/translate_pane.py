"""The Translate pane: source box with inline suggestions, languages, streaming output.

GUI thread only. Translation runs as a :class:`GeneratorJob` on the pane's own
:class:`QThreadPool`: the core's generator (``assistant.translation``) is iterated on a
pool thread and each event comes back through ``sig_event_received`` (queued to the GUI
thread). Typing re-translates after a pause (debounced); a new translation stops the one
before, and Stop keeps what was finished. Suggestions come from
:class:`assistant.suggestions.Suggester`, whose result arrives on a private thread and is
handed to the GUI thread through ``sig_suggestion_received``.
"""

from __future__ import annotations

import sys
import threading
import traceback
from typing import TYPE_CHECKING, Any, Callable, Iterator

from PySide6.QtCore import QObject, QRunnable, QThreadPool, Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from assistant.suggestions import Suggester
from ui.jobs import _foreign_thread_bookkeeping  # reused: Python's bookkeeping for pool threads
from ui.suggesting_edit import SuggestingTextEdit, SuggestionController
from assistant.translation import (
    SUPPORTED,
    SegmentDone,
    SegmentText,
    TranslationFinished,
    TranslationStarted,
    Translator,
)

if TYPE_CHECKING:
    from assistant.app import Services

#: Pause in typing before the text is translated again.
TRANSLATE_DEBOUNCE_MS = 700


def _user_message(exc: BaseException) -> str:
    return str(exc) or f"Something went wrong ({type(exc).__name__})."


class GeneratorSignals(QObject):
    sig_event_received = Signal(object)  # one event the generator yielded
    sig_job_failed = Signal(str)  # a message for the user
    sig_job_finished = Signal()


class GeneratorJob(QRunnable):
    """Iterates ``make()`` (a generator of progress events) on a pool thread. :meth:`stop`
    (any thread) sets the cancel event the generator was given; it ends with what it has."""

    def __init__(self, make: Callable[[threading.Event], Iterator[Any]]):
        super().__init__()
        self.setAutoDelete(False)  # the pane keeps the reference while it runs
        self.signals = GeneratorSignals()
        self.cancel = threading.Event()
        self.done = threading.Event()
        self._make = make

    def stop(self) -> None:
        self.cancel.set()

    def run(self) -> None:
        """Runs on a pool thread."""
        with _foreign_thread_bookkeeping():
            try:
                for event in self._make(self.cancel):
                    self.signals.sig_event_received.emit(event)
            except Exception as exc:  # shown in the pane, never raised into Qt
                if not any(c.__name__ in ("LibraryError", "EngineRequestError") for c in type(exc).__mro__):
                    traceback.print_exc(file=sys.stderr)
                self.signals.sig_job_failed.emit(_user_message(exc))
            finally:
                self.done.set()
                self.signals.sig_job_finished.emit()


class TranslatePane(QWidget):
    """Self-contained: give it the services; call :meth:`shutdown` before it goes away."""

    sig_translation_finished = Signal(object)  # TranslationFinished

    def __init__(self, services: "Services", parent: QWidget | None = None):
        super().__init__(parent)
        self.services = services
        self.translator = Translator.from_services(services)
        self.suggester = Suggester.from_services(services, task="translate")
        self.pool = QThreadPool(self)
        self.pool.setMaxThreadCount(2)
        self._job: GeneratorJob | None = None
        self._jobs: set[GeneratorJob] = set()
        self._closed = False
        self._started: TranslationStarted | None = None
        self._segments: dict[int, str] = {}
        self.last_result: TranslationFinished | None = None

        self.source_combo = QComboBox()
        self.source_combo.addItem("Detect language", "auto")
        self.target_combo = QComboBox()
        for code, name in SUPPORTED.items():
            self.source_combo.addItem(name, code)
            self.target_combo.addItem(name, code)
        self.target_combo.setCurrentIndex(list(SUPPORTED).index("fr"))
        self.source_combo.setAccessibleName("Translate from")
        self.target_combo.setAccessibleName("Translate into")
        self.translate_button = QPushButton("Translate")
        self.stop_button = QPushButton("Stop")
        self.stop_button.setEnabled(False)
        self.translate_button.setAccessibleName("Translate now")
        self.stop_button.setAccessibleName("Stop translating")
        top = QHBoxLayout()
        top.addWidget(QLabel("From"))
        top.addWidget(self.source_combo)
        top.addWidget(QLabel("to"))
        top.addWidget(self.target_combo)
        top.addStretch(1)
        top.addWidget(self.translate_button)
        top.addWidget(self.stop_button)

        self.source_edit = SuggestingTextEdit()
        self.source_edit.setPlaceholderText("Type or paste text to translate")
        self.source_edit.setAccessibleName("Text to translate")
        self.source_edit.suggestions_enabled = bool(services.settings.suggestions_enabled)
        self.output = QPlainTextEdit()
        self.output.setReadOnly(True)
        self.output.setAccessibleName("Translation")
        self.status = QLabel("")
        self.status.setWordWrap(True)
        boxes = QHBoxLayout()
        boxes.addWidget(self.source_edit)
        boxes.addWidget(self.output)
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addLayout(boxes, 1)
        layout.addWidget(self.status)

        self._debounce = QTimer(self)
        self._debounce.setSingleShot(True)
        self._debounce.setInterval(TRANSLATE_DEBOUNCE_MS)
        self._debounce.timeout.connect(self.translate)
        self.source_edit.textChanged.connect(self._debounce.start)
        self.source_combo.currentIndexChanged.connect(lambda _i: self._debounce.start())
        self.target_combo.currentIndexChanged.connect(lambda _i: self._debounce.start())
        self.translate_button.clicked.connect(self.translate)
        self.stop_button.clicked.connect(self.stop)

        self.suggestions = SuggestionController(self.source_edit, self.suggester, self)

    # ----- translation ------------------------------------------------------------------
    @property
    def busy(self) -> bool:
        return self._job is not None

    def translate(self) -> None:
        self._debounce.stop()
        text = self.source_edit.toPlainText()
        self.stop()
        if not text.strip():
            self.output.setPlainText("")
            self.status.setText("")
            return
        source = self.source_combo.currentData()
        target = self.target_combo.currentData()
        translator = self.translator
        job = GeneratorJob(lambda cancel: translator.translate_stream(text, target, source=source, cancel=cancel))
        job.signals.sig_event_received.connect(lambda event, job=job: self._on_event(job, event))
        job.signals.sig_job_failed.connect(lambda message, job=job: self._on_failed(job, message))
        job.signals.sig_job_finished.connect(lambda job=job: self._on_job_done(job))
        self._job = job
        self._jobs.add(job)
        self._segments = {}
        self._started = None
        self.stop_button.setEnabled(True)
        self.status.setText("Translating…")
        self.pool.start(job)

    def stop(self) -> None:
        if self._job is not None:
            self._job.stop()
            self._job = None
        self.stop_button.setEnabled(False)

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

    def _on_event(self, job: GeneratorJob, event: Any) -> None:
        if job is not self._job or self._closed:
            return  # a superseded translation: its events are stale
        if isinstance(event, TranslationStarted):
            self._started = event
            if event.detected:
                self.status.setText(f"Translating from {SUPPORTED[event.source]} (detected)…")
        elif isinstance(event, SegmentText):
            self._segments[event.index] = self._segments.get(event.index, "") + event.text
            self._render()
        elif isinstance(event, SegmentDone):
            self._segments[event.index] = event.text
            self._render()
        elif isinstance(event, TranslationFinished):
            self.last_result = event
            self.output.setPlainText(event.text)
            note = f"{SUPPORTED[event.source]} → {SUPPORTED[event.target]}"
            if event.cancelled:
                note += f" · stopped after {event.segments_done} of {event.segments_total} sentences"
            self.status.setText(note)
            self.sig_translation_finished.emit(event)

    def _on_failed(self, job: GeneratorJob, message: str) -> None:
        if job is self._job and not self._closed:
            self.status.setText(message)

    def _on_job_done(self, job: GeneratorJob) -> None:
        self._jobs.discard(job)
        if self._closed:
            return  # queued after shutdown: the widgets may be gone
        if job is self._job:
            self._job = None
            self.stop_button.setEnabled(False)

    def shutdown(self, timeout_ms: int = 30000) -> bool:
        """GUI thread, when the pane or window closes: stop all work and wait for it."""
        self._closed = True
        self._debounce.stop()
        self.stop()
        for job in list(self._jobs):
            job.stop()
        self.suggestions.shutdown(timeout_ms)
        return self.pool.waitForDone(timeout_ms)
