"""The Sentiment pane: one text, or a CSV/TSV/TXT file with a column chooser, a progress
bar, a results table (label, confidence), a chart of the distribution, export to CSV.

GUI thread only. Reading files, scoring and exporting run on the pane's own
:class:`QThreadPool` as :class:`ui.translate_pane.GeneratorJob` (the core's generators in
``assistant.sentiment``), with events back through ``sig_event_received``. Stop keeps every
result finished so far; bad rows are listed with their reason and the rest is scored.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QRectF, Qt, Signal
from PySide6.QtGui import QColor, QPainter
from PySide6.QtWidgets import (
    QAbstractButton,
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from assistant.sentiment import (
    SentimentAnalyzer,
    SentimentFinished,
    SentimentProgress,
    SentimentResult,
    Table,
    export_csv,
    read_table,
)
from assistant.sentiment_student import (
    SentimentStudent,
    StudentAnalyzer,
    StudentError,
    TrainProgress,
    student_files,
    teach_student_stream,
)
from ui.translate_pane import GeneratorJob

if TYPE_CHECKING:
    from assistant.app import Services

COLOURS = {"positive": "#3a9d5d", "negative": "#c8553d", "neutral": "#8a8f98"}


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
    """Self-contained: give it the services; call :meth:`shutdown` before it goes away."""

    sig_batch_finished = Signal(object)  # SentimentFinished
    sig_text_analysed = Signal(object)  # SentimentResult

    def __init__(self, services: "Services", parent: QWidget | None = None):
        super().__init__(parent)
        self.services = services
        self.analyzer = SentimentAnalyzer.from_services(services)
        from PySide6.QtCore import QThreadPool

        self.pool = QThreadPool(self)
        self.pool.setMaxThreadCount(1)  # one job at a time: the engine does one request at a time anyway
        self._jobs: set[GeneratorJob] = set()
        self._job: GeneratorJob | None = None
        self._closed = False
        self.table_data: Table | None = None
        self.path: Path | None = None
        self.results: list[SentimentResult] = []
        self.bad_rows: list[SentimentResult] = []

        self.text_edit = QLineEdit()
        self.text_edit.setPlaceholderText("Type a sentence and press Enter")
        self.text_edit.setAccessibleName("Text to analyse")
        self.analyse_button = QPushButton("Analyse")
        self.single_result = QLabel("")
        # The language model (the teacher) or a fast student taught by it (issue 8).
        self.model_combo = QComboBox()
        self.model_combo.setAccessibleName("Sentiment model")
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
        self.results_table.horizontalHeader().setStretchLastSection(False)
        self.results_table.setColumnWidth(1, 420)
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
        # Both are cheap to build: a student opens its file and MiniLM on first use, in the job.
        self.analyzer = (StudentAnalyzer.from_services(self.services, path) if path
                         else SentimentAnalyzer.from_services(self.services))

    # ----- jobs -------------------------------------------------------------------------
    @property
    def busy(self) -> bool:
        return self._job is not None

    def _start(self, make, on_event, on_failed=None) -> GeneratorJob:
        job = GeneratorJob(make)
        job.signals.sig_event_received.connect(lambda event: None if self._closed else on_event(event))
        job.signals.sig_job_failed.connect(lambda message: None if self._closed else (on_failed or self._failed)(message))
        job.signals.sig_job_finished.connect(lambda job=job: self._done(job))
        self._jobs.add(job)
        self._job = job
        self.stop_button.setEnabled(True)
        self.pool.start(job)
        return job

    def _done(self, job: GeneratorJob) -> None:
        self._jobs.discard(job)
        if self._closed:
            return  # queued after shutdown: the widgets may be gone
        if job is self._job:
            self._job = None
            self.stop_button.setEnabled(False)

    def _failed(self, message: str) -> None:
        self.status.setText(message)

    def stop(self) -> None:
        if self._job is not None:
            self._job.stop()

    # ----- one text ---------------------------------------------------------------------
    def analyse_text(self) -> None:
        text = self.text_edit.text()
        if not text.strip():
            self.single_result.setText("Type some text first.")
            return
        analyzer = self.analyzer
        self.single_result.setText("…")

        def make(cancel):
            yield analyzer.classify_one(text)

        def on_event(result: SentimentResult) -> None:
            self.single_result.setText(f"{result.label} ({result.confidence:.0%})")
            self.sig_text_analysed.emit(result)

        self._start(make, on_event, lambda message: self.single_result.setText(message))

    # ----- files ------------------------------------------------------------------------
    def _choose_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Texts to analyse", "", "Texts (*.csv *.tsv *.txt);;All files (*)")
        if path:
            self.load_file(path)

    def load_file(self, path: str | Path) -> None:
        """Read the file on a pool thread, then fill the column chooser."""
        path = Path(path)
        self.file_label.setText(path.name)
        self.run_button.setEnabled(False)
        self.status.setText("Reading…")

        def make(cancel):
            yield read_table(path)

        def on_event(table: Table) -> None:
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

        self._start(make, on_event)

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
        self.results_table.setRowCount(0)
        self.progress.setRange(0, max(1, len(rows)))
        self.progress.setValue(0)
        self.export_button.setEnabled(False)
        analyzer = self.analyzer
        bad = list(table.bad_rows)
        self.status.setText("Analysing…")
        self._start(lambda cancel: analyzer.classify_stream(rows, bad, cancel=cancel), self._batch_event)

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
        self._start(lambda cancel: teach_student_stream(services, texts, name, cancel), self._teach_event,
                    self._teach_failed)

    def _teach_event(self, event: Any) -> None:
        if isinstance(event, TrainProgress):
            self.progress.setMaximum(max(1, event.total))
            self.progress.setValue(event.done)
            if event.stage == "teacher":
                self.status.setText(f"The language model is labelling the texts: {event.done:,} of {event.total:,}.")
            elif event.stage == "fine-tune":
                self.status.setText(f"The student is learning: step {event.done} of {event.total}.")
            else:
                self.status.setText("The student is learning…")
            return
        path = Path(event)
        self.teach_button.setEnabled(True)
        self.run_button.setEnabled(True)
        self.model_combo.addItem(f"Student: {path.stem} (fast)", str(path))
        self.model_combo.setCurrentIndex(self.model_combo.count() - 1)
        agreement = ""
        try:
            student = SentimentStudent.load(path)
            share = student.provenance.get("heldout_agreement_with_teacher")
            if share is not None:
                agreement = f" It agrees with the language model on {share:.0%} of the texts it did not learn from."
        except StudentError:
            pass
        self.status.setText(f"The student {path.stem} is ready and chosen above.{agreement}")

    def _teach_failed(self, message: str) -> None:
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
        path, _ = QFileDialog.getSaveFileName(self, "Export results", "sentiment.csv", "CSV (*.csv)")
        if path:
            self.export(path)

    def export(self, path: str | Path) -> None:
        results, bad = list(self.results), list(self.bad_rows)

        def make(cancel):
            export_csv(path, results, bad)
            yield Path(path)

        self._start(make, lambda written: self.status.setText(f"Exported {len(results)} results to {written}."))

    def shutdown(self, timeout_ms: int = 30000) -> bool:
        """GUI thread, when the pane or window closes: stop all work and wait for it."""
        self._closed = True
        for job in list(self._jobs):
            job.stop()
        return self.pool.waitForDone(timeout_ms)
