"""The Translate pane: source box with inline suggestions, languages, streaming output.

GUI thread only. Translation runs on the window's :class:`ui.jobs.Jobs`: the core's generator
(``assistant.tasks.translation``) is iterated on a pool thread and each event comes back to
the GUI thread. Typing re-translates after a pause (debounced); a new translation stops the
one before (through the cancel event the generator checks), and Stop keeps what was finished.
Suggestions come from :class:`assistant.tasks.suggestions.Suggester`, whose result arrives on
a private thread and is handed to the GUI thread through ``sig_suggestion_received``.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QTimer, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
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
)
from ui.suggesting_edit import SuggestingTextEdit, SuggestionController

if TYPE_CHECKING:
    from assistant.app import Services
    from ui.jobs import Job, Jobs

#: Pause in typing before the text is translated again.
TRANSLATE_DEBOUNCE_MS = 700


class TranslatePane(QWidget):
    """Give it the services and the window's jobs; call :meth:`shutdown` before it goes away."""

    sig_translation_finished = Signal(object)  # TranslationFinished

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
        return self._cancel is not None

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

    def stop(self) -> None:
        if self._cancel is not None:
            self._cancel.set()
            self._cancel = None
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

    def _on_failed(self, cancel: threading.Event, message: str) -> None:
        if cancel is self._cancel and not self._closed:
            self.status.setText(message)
        self._on_job_done(cancel)

    def _on_job_done(self, cancel: threading.Event) -> None:
        self._running.pop(cancel, None)
        if self._closed:
            return  # after shutdown: the widgets may be gone
        if cancel is self._cancel:
            self._cancel = None
            self.stop_button.setEnabled(False)

    def shutdown(self, timeout_ms: int = 30000) -> bool:
        """GUI thread, when the pane or window closes: stop all work and wait for it."""
        self._closed = True
        self._debounce.stop()
        self.stop()
        running = list(self._running.values())
        for job in running:
            job.cancel()
        suggestions_done = self.suggestions.shutdown(timeout_ms)
        return all(job.done.wait(timeout_ms / 1000) for job in running) and suggestions_done
