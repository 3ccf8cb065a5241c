"""The Sentiment pane: one text, or a CSV/TSV/TXT file with a column chooser, a progress
bar, a results table (label, confidence), a chart of the distribution, export to CSV.

Why one module of ~520 lines: the one-text, file and student flows share the page's state
(the chosen model, the running job, the table) and its status line; apart, each would reach
into the others' widgets.

GUI thread only. Reading files, scoring and exporting run on the window's :class:`ui.jobs.Jobs`
(the core's functions and generators in ``assistant.tasks.sentiment``), with events back on the
GUI thread. Stop keeps every result finished so far (through the cancel event the generator
checks); bad rows are listed with their reason and the rest is scored.

Teaching a student (``assistant.tasks.sentiment_student``) runs in three parts: the language
model labels the texts on the pool (:func:`prepare_lesson`), the sentence encoder is fine-tuned
in a training process followed by :class:`ui.train_process.JobProcess` (QProcess: no thread
waits on it), and the student is saved on the pool (:meth:`Lesson.finish`). Where this
installation cannot train, the first part fits and saves the student itself.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QObject, QRectF, Qt, Signal
from PySide6.QtGui import QColor, QPainter
from PySide6.QtWidgets import (
    QAbstractButton,
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from assistant.tasks.sentiment import (
    SentimentAnalyzer,
    SentimentFinished,
    SentimentProgress,
    SentimentResult,
    Table,
    export_csv,
    read_table,
)
from assistant.tasks.sentiment_default import RoutedAnalyzer, default_analyzer
from assistant.tasks.sentiment_student import (
    Lesson,
    SentimentStudent,
    StudentAnalyzer,
    StudentError,
    TrainProgress,
    fine_tune_outcome,
    prepare_lesson,
    student_files,
)
from assistant.train.process import StepEvent
from ui.file_dialogs import beside, start_folder
from ui.train_process import JobProcess

if TYPE_CHECKING:
    from assistant.app import Services
    from ui.jobs import Job, Jobs

#: The model chooser's data for the automatic (routed) path.
AUTOMATIC = "automatic"
COLOURS = {"positive": "#3a9d5d", "negative": "#c8553d", "neutral": "#8a8f98"}


# ----- Qt-free parts of teaching a student (pool threads) ------------------------------------
def _agreement(path: Path) -> float | None:
    """The student's held-out agreement with the language model, as its file records it."""
    try:
        return SentimentStudent.load(path).provenance.get("heldout_agreement_with_teacher")
    except StudentError:
        return None


def _prepare_lesson(services, texts: list[str], name: str, cancel: threading.Event,
                    on_progress) -> tuple[Lesson, float | None]:
    lesson = prepare_lesson(services, texts, name, cancel, on_progress)
    if cancel.is_set() and lesson.job_file is not None:
        lesson.discard()  # stopped (or the window closed) as the labelling ended: nothing is left behind
        raise StudentError("Training was cancelled.")
    return lesson, (_agreement(lesson.path) if lesson.path is not None else None)


def _finish_lesson(lesson: Lesson, result: dict) -> tuple[Lesson, float | None]:
    lesson.finish(result)
    return lesson, _agreement(lesson.path)


class _ProgressSignals(QObject):
    sig_progress_changed = Signal(object)  # TrainProgress, emitted on a pool thread


class DistributionChart(QWidget):
    """Three bars: how many texts are positive, negative, neutral. Paints only."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.counts = {"positive": 0, "negative": 0, "neutral": 0}
        self.setMinimumHeight(90)
        self.setAccessibleName("Distribution of labels")

    def set_counts(self, counts: dict[str, int]) -> None:
        self.counts = {k: int(counts.get(k, 0)) for k in ("positive", "negative", "neutral")}
        self.setToolTip(", ".join(f"{k}: {v}" for k, v in self.counts.items()))
        self.update()

    def paintEvent(self, event) -> None:
        painter = QPainter(self)
        total = max(1, sum(self.counts.values()))
        row_h = self.height() / 3
        label_w = 80
        for i, (label, n) in enumerate(self.counts.items()):
            top = i * row_h + 4
            painter.setPen(self.palette().text().color())
            painter.drawText(QRectF(0, top, label_w, row_h - 8), Qt.AlignmentFlag.AlignVCenter, label)
            width = (self.width() - label_w - 60) * n / total
            painter.fillRect(QRectF(label_w, top, width, row_h - 8), QColor(COLOURS[label]))
            painter.drawText(QRectF(label_w + width + 6, top, 60, row_h - 8), Qt.AlignmentFlag.AlignVCenter,
                             f"{n} ({100 * n / total:.0f}%)")
        painter.end()


class SentimentPane(QWidget):
    """Give it the services and the window's jobs; call :meth:`shutdown` before it goes away."""

    sig_batch_finished = Signal(object)  # SentimentFinished
    sig_text_analysed = Signal(object)  # SentimentResult

    def __init__(self, services: "Services", jobs: "Jobs", parent: QWidget | None = None):
        super().__init__(parent)
        self.services = services
        self.jobs = jobs
        # The default path: the routed default student where set-up built it, else the language model.
        self.analyzer = default_analyzer(services)
        # The latest job (Stop stops it) and every job not yet ended (shutdown waits for them).
        self._job: "Job | None" = None
        self._live: set["Job"] = set()
        self._closed = False
        # A student being taught: the cancel event of its labelling, its lesson, and the
        # fine-tuning process while it runs.
        self._teach_cancel: threading.Event | None = None
        self._lesson: Lesson | None = None
        self._lesson_process: JobProcess | None = None
        self._progress = _ProgressSignals()  # created here: emissions from the pool are queued
        self._progress.sig_progress_changed.connect(self._teach_progress)
        self.table_data: Table | None = None
        self.path: Path | None = None
        self.results: list[SentimentResult] = []
        self.bad_rows: list[SentimentResult] = []
        self.analysed_table: Table | None = None  # the file the results belong to (an export keeps its columns)

        self.text_edit = QLineEdit()
        self.text_edit.setPlaceholderText("Type a sentence and press Enter")
        self.text_edit.setAccessibleName("Text to analyse")
        self.analyse_button = QPushButton("Analyse")
        self.single_result = QLabel("")
        # Automatic (the default student, the language model for what it is unsure of), the
        # language model alone (the teacher), or a fast student the user taught.
        self.model_combo = QComboBox()
        self.model_combo.setAccessibleName("Sentiment model")
        if isinstance(self.analyzer, RoutedAnalyzer):
            self.model_combo.addItem("Automatic: fast, the language model when unsure", AUTOMATIC)
            self.model_combo.setItemData(0, "The default student answers the texts it is sure of; the language "
                                            "model answers the others.", Qt.ItemDataRole.ToolTipRole)
        self.model_combo.addItem("Language model (most accurate)", "")
        for student_path in student_files(services.paths.models_dir):
            self.model_combo.addItem(f"Student: {student_path.stem} (fast)", str(student_path))
        self.model_combo.currentIndexChanged.connect(self._choose_model)
        single = QHBoxLayout()
        single.addWidget(self.model_combo)
        single.addWidget(self.text_edit, 1)
        single.addWidget(self.analyse_button)
        single.addWidget(self.single_result)

        self.open_button = QPushButton("Open file…")
        self.file_label = QLabel("No file")
        self.column_combo = QComboBox()
        self.column_combo.setAccessibleName("Text column")
        self.run_button = QPushButton("Analyse file")
        self.run_button.setEnabled(False)
        self.stop_button = QPushButton("Stop")
        self.stop_button.setEnabled(False)
        self.export_button = QPushButton("Export CSV…")
        self.export_button.setEnabled(False)
        # The file's texts, unlabelled, teach a student: the language model labels them and a
        # small encoder learns its judgement (minutes), then analyses many times faster.
        self.teach_button = QPushButton("Teach a fast student")
        self.teach_button.setEnabled(False)
        self.teach_button.setToolTip("The language model labels this file's texts and a small, fast model learns "
                                     "from its answers; the student then appears in the model list.")
        batch = QHBoxLayout()
        for w in (self.open_button, self.file_label, QLabel("Column"), self.column_combo, self.run_button,
                  self.stop_button, self.export_button, self.teach_button):
            batch.addWidget(w)
        batch.addStretch(1)

        self.progress = QProgressBar()
        self.progress.setAccessibleName("Progress")
        self.results_table = QTableWidget(0, 4)
        self.results_table.setHorizontalHeaderLabels(["Line", "Text", "Label", "Confidence"])
        # Rows are numbered once, by their line in the file (Qt's own row numbers would be a
        # second, different count); the text takes the width the other columns leave.
        self.results_table.verticalHeader().setVisible(False)
        header = self.results_table.horizontalHeader()
        header.setStretchLastSection(False)
        for column in (0, 2, 3):
            header.setSectionResizeMode(column, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        self.results_table.setAccessibleName("Results")
        self.results_table.setCornerButtonEnabled(False)  # select-all by a nameless corner is no help
        for corner in self.results_table.findChildren(QAbstractButton):
            corner.setAccessibleName("Select all results")
        for button, name in ((self.analyse_button, "Analyse text"), (self.open_button, "Open a file"),
                             (self.run_button, "Analyse file"), (self.stop_button, "Stop analysis"),
                             (self.export_button, "Export results as CSV"),
                             (self.teach_button, "Teach a fast student from this file")):
            button.setAccessibleName(name)
        self.chart = DistributionChart()
        self.status = QLabel("")
        self.status.setWordWrap(True)

        layout = QVBoxLayout(self)
        layout.addLayout(single)
        layout.addLayout(batch)
        layout.addWidget(self.progress)
        layout.addWidget(self.results_table, 1)
        layout.addWidget(self.chart)
        layout.addWidget(self.status)

        self.text_edit.returnPressed.connect(self.analyse_text)
        self.analyse_button.clicked.connect(self.analyse_text)
        self.open_button.clicked.connect(self._choose_file)
        self.run_button.clicked.connect(self.run_batch)
        self.stop_button.clicked.connect(self.stop)
        self.export_button.clicked.connect(self._choose_export)
        self.teach_button.clicked.connect(self.teach_student)

    def _choose_model(self, index: int) -> None:
        path = self.model_combo.itemData(index)
        # All are cheap to build: a student opens its file and its encoder on first use, in the job.
        if path == AUTOMATIC:
            self.analyzer = default_analyzer(self.services)
        elif path:
            self.analyzer = StudentAnalyzer.from_services(self.services, path)
        else:
            self.analyzer = SentimentAnalyzer.from_services(self.services)

    # ----- jobs -------------------------------------------------------------------------
    @property
    def busy(self) -> bool:
        return self._job is not None or self._lesson_process is not None

    def _start(self, fn, *args, on_done=None, on_event=None, on_failed=None,
               cancel: threading.Event | None = None) -> None:
        """Run ``fn(*args)`` on the window's pool (iterate it, when ``on_event`` is given);
        ``cancel`` is the event the generator checks, set by Stop."""
        failed = on_failed or self._failed

        def done(result: Any) -> None:
            self._done(job)
            if not self._closed and on_done is not None:
                on_done(result)

        def error(message: str, _exc: BaseException) -> None:
            self._done(job)
            if not self._closed:
                failed(message)

        def event(value: Any) -> None:
            if not self._closed:
                on_event(value)

        if on_event is not None:
            job = self.jobs.stream(fn, *args, on_event=event, on_done=done, on_error=error,
                                   cancel=cancel.set if cancel is not None else None)
        else:
            job = self.jobs.run(fn, *args, on_done=done, on_error=error)
        if job is None:
            return  # the window is closing
        self._job = job
        self._live.add(job)
        self.stop_button.setEnabled(True)

    def _done(self, job: "Job") -> None:
        self._live.discard(job)
        if job is not self._job:
            return
        self._job = None
        if not self._closed:  # after shutdown the widgets may be gone
            self.stop_button.setEnabled(False)

    def _failed(self, message: str) -> None:
        self.status.setText(message)

    def stop(self) -> None:
        if self._job is not None:
            self._job.cancel()
        if self._teach_cancel is not None:
            self._teach_cancel.set()
        if self._lesson_process is not None:
            self._lesson_process.cancel()  # the job stops at its next step

    # ----- one text ---------------------------------------------------------------------
    def analyse_text(self) -> None:
        text = self.text_edit.text()
        if not text.strip():
            self.single_result.setText("Type some text first.")
            return
        self.single_result.setText("…")

        def show(result: SentimentResult) -> None:
            self.single_result.setText(f"{result.label} ({result.confidence:.0%})")
            self.sig_text_analysed.emit(result)

        self._start(self.analyzer.classify_one, text, on_done=show,
                    on_failed=lambda message: self.single_result.setText(message))

    # ----- files ------------------------------------------------------------------------
    def _choose_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Texts to analyse", start_folder(self.path),
                                              "Texts (*.csv *.tsv *.txt);;All files (*)")
        if path:
            self.load_file(path)

    def load_file(self, path: str | Path) -> None:
        """Read the file on a pool thread, then fill the column chooser."""
        path = Path(path)
        self.file_label.setText(path.name)
        self.run_button.setEnabled(False)
        self.status.setText("Reading…")

        def show(table: Table) -> None:
            self.table_data, self.path = table, path
            self.column_combo.clear()
            self.column_combo.addItems(table.columns or ["(one text per line)"])
            if table.columns:
                guess = next((c for c in table.columns if c.strip().lower() in ("text", "review", "sentence",
                                                                                 "comment")), table.columns[0])
                self.column_combo.setCurrentText(guess)
            self.run_button.setEnabled(True)
            self.teach_button.setEnabled(True)
            bad = f"; {len(table.bad_rows)} unreadable rows will be skipped" if table.bad_rows else ""
            self.status.setText(f"{len(table.rows)} rows{bad}.")

        self._start(read_table, path, on_done=show)

    def _chosen_rows(self) -> list[tuple[int, str]] | None:
        """(line, text) of the open file's chosen column; None (and why, in the status) if none."""
        table = self.table_data
        if table is None or self.busy:
            return None
        try:
            return table.texts(self.column_combo.currentText() if table.columns else None)
        except ValueError as exc:
            self.status.setText(str(exc))
            return None

    def run_batch(self) -> None:
        table = self.table_data
        rows = self._chosen_rows()
        if rows is None:
            return
        self.results, self.bad_rows = [], []
        self.analysed_table = table
        self.results_table.setRowCount(0)
        self.progress.setRange(0, max(1, len(rows)))
        self.progress.setValue(0)
        self.export_button.setEnabled(False)
        analyzer = self.analyzer
        bad = list(table.bad_rows)
        self.status.setText("Analysing…")
        cancel = threading.Event()
        self._start(lambda: analyzer.classify_stream(rows, bad, cancel=cancel), on_event=self._batch_event,
                    cancel=cancel)

    # ----- teaching a student -------------------------------------------------------------
    def teach_student(self) -> None:
        """Teach a student on the loaded file's texts (their labels, if any, are not read)."""
        rows = self._chosen_rows() if self.path is not None else None
        if rows is None:
            return
        texts = [text for _, text in rows if text and str(text).strip()]
        services, name = self.services, self.path.stem
        self.progress.setRange(0, max(1, len(texts)))
        self.progress.setValue(0)
        self.teach_button.setEnabled(False)
        self.run_button.setEnabled(False)
        self.status.setText(f"The language model is labelling {len(texts):,} texts for the student…")
        self._teach_cancel = cancel = threading.Event()
        self._start(_prepare_lesson, services, texts, name, cancel, self._progress.sig_progress_changed.emit,
                    on_done=self._lesson_prepared, on_failed=self._teach_failed)

    def _teach_progress(self, event: TrainProgress) -> None:
        if self._closed:
            return
        self.progress.setMaximum(max(1, event.total))
        self.progress.setValue(event.done)
        if event.stage == "teacher":
            self.status.setText(f"The language model is labelling the texts: {event.done:,} of {event.total:,}.")
        elif event.stage == "fine-tune":
            self.status.setText(f"The student is learning: step {event.done} of {event.total}.")
        else:
            self.status.setText("The student is learning…")

    def _lesson_prepared(self, prepared: tuple[Lesson, float | None]) -> None:
        lesson, agreement = prepared
        if lesson.job_file is None:  # this installation fitted a head: the student is saved
            self._student_ready((lesson, agreement))
            return
        self._lesson = lesson
        if self._teach_cancel is not None and self._teach_cancel.is_set():
            self._lesson_failed("Training was cancelled.")
            return
        process = JobProcess(lesson.job_file, parent=self)
        process.sig_event_received.connect(self._fine_tune_event)
        process.sig_job_finished.connect(self._fine_tuned)
        self._lesson_process = process
        self.stop_button.setEnabled(True)
        self.status.setText("The student is learning…")
        process.start()

    def _fine_tune_event(self, event: Any) -> None:
        if isinstance(event, StepEvent):
            self._teach_progress(TrainProgress("fine-tune", event.step, event.total_steps))

    def _fine_tuned(self, result: dict | None) -> None:
        process, self._lesson_process = self._lesson_process, None
        self.stop_button.setEnabled(self.busy)
        try:
            result = fine_tune_outcome(process.reader.final, result)
        except StudentError as exc:
            self._lesson_failed(str(exc))
            return
        finally:
            process.deleteLater()
        self._start(_finish_lesson, self._lesson, result, on_done=self._student_ready, on_failed=self._teach_failed)

    def _lesson_failed(self, message: str) -> None:
        lesson, self._lesson = self._lesson, None
        if lesson is not None:
            self.jobs.run(lesson.discard)  # the scratch folder (the job's files) goes
        self._teach_failed(message)

    def _student_ready(self, finished: tuple[Lesson, float | None]) -> None:
        lesson, share = finished
        self._lesson = self._teach_cancel = None
        path = lesson.path
        self.teach_button.setEnabled(True)
        self.run_button.setEnabled(True)
        self.model_combo.addItem(f"Student: {path.stem} (fast)", str(path))
        self.model_combo.setCurrentIndex(self.model_combo.count() - 1)
        agreement = ""
        if share is not None:
            agreement = f" It agrees with the language model on {share:.0%} of the texts it did not learn from."
        self.status.setText(f"The student {path.stem} is ready and chosen above.{agreement}")

    def _teach_failed(self, message: str) -> None:
        self._teach_cancel = self._lesson = None  # its scratch folder was removed where it failed
        self.teach_button.setEnabled(self.table_data is not None)
        self.run_button.setEnabled(self.table_data is not None)
        self.status.setText(message)

    def _batch_event(self, event: Any) -> None:
        if isinstance(event, SentimentProgress):
            self.progress.setMaximum(max(1, event.total))
            self.progress.setValue(event.done)
            self._append(event.results)
        elif isinstance(event, SentimentFinished):
            self.results, self.bad_rows = list(event.results), list(event.bad_rows)
            if self._shown_rows() != [r.row for r in self.results]:
                # The automatic path answers the student's sure texts first: show them in file order.
                self.results_table.setRowCount(0)
                self._append(self.results)
            self.chart.set_counts(event.counts())
            self.export_button.setEnabled(bool(self.results))
            note = f"{len(event.results)} texts analysed"
            if event.cancelled:
                note += " (stopped; the results so far are kept)"
            if event.bad_rows:
                lines = ", ".join(str(r.row) for r in event.bad_rows[:10])
                more = "…" if len(event.bad_rows) > 10 else ""
                note += f"; {len(event.bad_rows)} rows skipped (lines {lines}{more}: {event.bad_rows[0].error})"
            self.status.setText(note + ".")
            self.sig_batch_finished.emit(event)

    def _shown_rows(self) -> list[int]:
        return [int(self.results_table.item(row, 0).text()) for row in range(self.results_table.rowCount())]

    def _append(self, results: list[SentimentResult]) -> None:
        table = self.results_table
        counts = {"positive": 0, "negative": 0, "neutral": 0}
        for r in results:
            row = table.rowCount()
            table.insertRow(row)
            for col, value in enumerate((str(r.row), r.text, r.label, f"{r.confidence:.2f}")):
                item = QTableWidgetItem(value)
                item.setFlags(item.flags() & ~Qt.ItemFlag.ItemIsEditable)
                if col == 2:
                    item.setForeground(QColor(COLOURS.get(r.label, "#000000")))
                table.setItem(row, col, item)
        for row in range(table.rowCount()):
            label = table.item(row, 2).text()
            counts[label] = counts.get(label, 0) + 1
        self.chart.set_counts(counts)

    def _choose_export(self) -> None:
        # Beside the file that was analysed (its name and "-sentiment"), else in the home folder.
        name = f"{self.path.stem}-sentiment.csv" if self.path is not None else "sentiment.csv"
        path, _ = QFileDialog.getSaveFileName(self, "Export results", beside(self.path, name), "CSV (*.csv)")
        if path:
            self.export(path)

    def export(self, path: str | Path) -> None:
        """Write the file analysed with all its columns and the results after them (on the pool)."""
        results, bad = list(self.results), list(self.bad_rows)
        self._start(export_csv, path, results, bad, self.analysed_table,
                    on_done=lambda _r: self.status.setText(
                        f"Exported {len(results)} results to {path} (not encrypted: anyone who can open "
                        "the file can read these texts)."))

    def shutdown(self, timeout_ms: int = 30000) -> bool:
        """GUI thread, when the pane or window closes: stop the job in progress and wait for it."""
        self._closed = True
        self.stop()
        live = list(self._live)
        done = all(job.done.wait(timeout_ms / 1000) for job in live)
        if self._lesson_process is not None:
            done = self._lesson_process.shutdown() and done
        if self._lesson is not None:
            self._lesson.discard()  # a student half taught: nothing of it is kept
        return done
