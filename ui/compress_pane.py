"""The Compress pane: pick a model, a goal and held-out text; run the quantization lab; see
the table and a chart; put a result in the library.

GUI thread only for the widgets. The lab runs as its own process (``python -m
training.run`` with kind "quantize_lab", spawned by :class:`assistant.training_jobs.
TrainingProcess`), read on the pane's pool thread by a :class:`ui.translate_pane.
GeneratorJob`; Stop sends SIGTERM and the job keeps every finished file for a later run.
Adding a result to the library also runs on the pool thread (it hashes the file).

The module-level functions are Qt-free operations (like :mod:`ui.train_operations`).
"""

from __future__ import annotations

import json
import sys
import time
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
    QProgressBar,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from ui import operations
from ui.translate_pane import GeneratorJob

if TYPE_CHECKING:
    from assistant.app import Services

#: Goals the user can pick, and the most perplexity they accept relative to F16 for each.
GOALS = {
    "Smaller": ("file_bytes", 1.05),  # smallest file within 5% of F16's perplexity
    "Faster": ("tokens_per_s", 1.05),  # fastest within 5%
    "Same quality": ("file_bytes", 1.01),  # smallest within 1%
}
COLUMNS = ("Type", "Size (MB)", "Tokens/s", "Perplexity", "vs F16", "Agreement")


# ----- Qt-free operations (pool thread) ---------------------------------------------------
def prepare_lab_job(services: "Services", model_path: str, text_files: list[str], settings: dict | None = None) -> Path:
    """Write a quantize_lab job file in a new run folder and return its path; ``settings``
    are training.quantize.lab.LabConfig fields (the defaults measure thoroughly)."""
    if not text_files:
        raise ValueError("Choose some held-out text first: the lab measures perplexity on it.")
    folder = services.paths.data_dir / "training" / "runs" / time.strftime("compress-%Y%m%d-%H%M%S")
    folder.mkdir(parents=True, exist_ok=False)
    job = {"kind": "quantize_lab", "model_gguf": str(model_path), "output_dir": str(folder / "lab"),
           "dataset": {"type": "text_files", "paths": [str(p) for p in text_files]}, "settings": dict(settings or {}),
           "created_at": time.time()}
    path = folder / "job-in.json"
    path.write_text(json.dumps(job, indent=2), encoding="utf-8")
    return path


def run_lab_events(job_file: Path, cancel) -> Any:
    """Spawn the job and yield its events (TrainingEvent); a cancel stops the process."""
    from assistant.training_jobs import TrainingProcess

    process = TrainingProcess.spawn(sys.executable, job_file)
    try:
        for event in process.events():
            if cancel.is_set():
                process.cancel()
            yield event
    finally:
        # Left early (the pane closed): ask the job to stop, and make sure it does.
        if process.process.poll() is None:
            process.cancel()
            try:
                process.wait(timeout=30)
            except Exception:
                process.kill()
                process.wait()


def recommend(rows: list[dict], goal: str) -> str | None:
    """The label of the row that best meets ``goal`` (see :data:`GOALS`)."""
    key, limit = GOALS[goal]
    fits = [r for r in rows if r.get("perplexity_ratio") is not None and r["perplexity_ratio"] <= limit
            and not r["label"].startswith("source")]
    if not fits:
        return None
    best = min(fits, key=lambda r: r[key]) if key == "file_bytes" else max(fits, key=lambda r: r[key] or 0)
    return best["label"]


# ----- widgets ----------------------------------------------------------------------------
class LabChart(QWidget):
    """Bars of file size (left scale) with perplexity ratio printed over them. Paints only."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.rows: list[dict] = []
        self.setMinimumHeight(140)
        self.setAccessibleName("Chart of file size and perplexity by type")

    def set_rows(self, rows: list[dict]) -> None:
        self.rows = list(rows)
        self.setToolTip("; ".join(f"{r['label']}: {r['file_bytes'] / 1e6:.0f} MB, perplexity x{r['perplexity_ratio']:.3f}"
                                  for r in self.rows))
        self.update()

    def paintEvent(self, event) -> None:
        if not self.rows:
            return
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        width, height = self.width(), self.height() - 20
        biggest = max(r["file_bytes"] for r in self.rows) or 1
        slot = width / len(self.rows)
        for i, row in enumerate(self.rows):
            bar = height * row["file_bytes"] / biggest
            rect = QRectF(i * slot + slot * 0.15, height - bar, slot * 0.7, bar)
            painter.fillRect(rect, QColor("#4a7fb5"))
            painter.setPen(self.palette().windowText().color())
            painter.drawText(QRectF(i * slot, height, slot, 20), Qt.AlignmentFlag.AlignCenter, row["label"])
            painter.drawText(rect, Qt.AlignmentFlag.AlignHCenter | Qt.AlignmentFlag.AlignTop,
                             f"x{row['perplexity_ratio']:.3f}")
        painter.end()


class CompressPane(QWidget):
    """Self-contained: give it the services; call :meth:`shutdown` before it goes away."""

    sig_lab_finished = Signal(object)  # the job's result dict
    sig_model_added = Signal(object)  # ModelRecord

    def __init__(self, services: "Services", parent: QWidget | None = None):
        super().__init__(parent)
        from PySide6.QtCore import QThreadPool

        self.services = services
        self.pool = QThreadPool(self)
        self.pool.setMaxThreadCount(1)
        self._job: GeneratorJob | None = None
        self._jobs: set[GeneratorJob] = set()
        self._closed = False
        self.text_files: list[str] = []
        self.rows: list[dict] = []
        self.lab_settings: dict = {}  # LabConfig overrides for the next run (empty: the defaults)

        self.model_combo = QComboBox()
        self.model_combo.setAccessibleName("Model to compress")
        for record in services.library.list():
            if str(record.path).endswith(".gguf"):
                self.model_combo.addItem(record.display_name, str(record.path))
        self.goal_combo = QComboBox()
        self.goal_combo.setAccessibleName("Goal")
        self.goal_combo.addItems(list(GOALS))
        self.text_button = QPushButton("Held-out text…")
        self.text_button.setAccessibleName("Choose held-out text files")
        self.text_label = QLabel("No text chosen")
        self.run_button = QPushButton("Run")
        self.run_button.setAccessibleName("Run the quantization lab")
        self.stop_button = QPushButton("Stop")
        self.stop_button.setAccessibleName("Stop the quantization lab")
        self.stop_button.setEnabled(False)
        self.add_button = QPushButton("Add to library")
        self.add_button.setAccessibleName("Add the selected result to the library")
        self.add_button.setEnabled(False)
        top = QHBoxLayout()
        for w in (QLabel("Model"), self.model_combo, QLabel("Goal"), self.goal_combo, self.text_button,
                  self.text_label, self.run_button, self.stop_button):
            top.addWidget(w)
        top.addStretch(1)

        self.progress = QProgressBar()
        self.progress.setAccessibleName("Progress")
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setCornerButtonEnabled(False)  # select-all by a nameless corner is no help
        for corner in self.table.findChildren(QAbstractButton):
            corner.setAccessibleName("Select all results")
        self.table.setHorizontalHeaderLabels(list(COLUMNS))
        self.table.setAccessibleName("Results by quantization type")
        self.table.setSelectionBehavior(QTableWidget.SelectionBehavior.SelectRows)
        self.table.setCornerButtonEnabled(False)
        self.chart = LabChart()
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.status.setAccessibleName("Status")
        bottom = QHBoxLayout()
        bottom.addWidget(self.add_button)
        bottom.addStretch(1)

        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(self.progress)
        layout.addWidget(self.table, 1)
        layout.addWidget(self.chart)
        layout.addLayout(bottom)
        layout.addWidget(self.status)

        self.text_button.clicked.connect(self._choose_text)
        self.run_button.clicked.connect(self.run_lab)
        self.stop_button.clicked.connect(self.stop)
        self.add_button.clicked.connect(self.add_selected)
        self.goal_combo.currentIndexChanged.connect(lambda _i: self._show_recommendation())
        self.table.itemSelectionChanged.connect(lambda: self.add_button.setEnabled(bool(self.selected_row())))

    # ----- jobs -------------------------------------------------------------------------
    def _start(self, make, on_event) -> None:
        job = GeneratorJob(make)
        job.signals.sig_event_received.connect(lambda e: None if self._closed else on_event(e))
        job.signals.sig_job_failed.connect(lambda m: None if self._closed else self.status.setText(m))
        job.signals.sig_job_finished.connect(lambda job=job: self._done(job))
        self._jobs.add(job)
        self._job = job
        self.stop_button.setEnabled(True)
        self.run_button.setEnabled(False)
        self.pool.start(job)

    def _done(self, job: GeneratorJob) -> None:
        self._jobs.discard(job)
        if self._closed:
            return
        if job is self._job:
            self._job = None
            self.stop_button.setEnabled(False)
            self.run_button.setEnabled(True)

    def stop(self) -> None:
        if self._job is not None:
            self._job.stop()

    # ----- actions ----------------------------------------------------------------------
    def _choose_text(self) -> None:
        files, _ = QFileDialog.getOpenFileNames(self, "Held-out text", "", "Text (*.txt *.md *.rst);;All files (*)")
        if files:
            self.set_text_files(files)

    def set_text_files(self, files: list[str]) -> None:
        self.text_files = [str(f) for f in files]
        self.text_label.setText(operations.counted(len(files), "file"))

    def run_lab(self) -> None:
        model = self.model_combo.currentData()
        if not model:
            self.status.setText("Choose a model first.")
            return
        if not self.text_files:
            self.status.setText("Choose some held-out text first: the lab measures perplexity on it.")
            return
        services, files, settings = self.services, list(self.text_files), dict(self.lab_settings)
        self.status.setText("Starting…")
        self.progress.setRange(0, 0)

        def make(cancel):
            yield from run_lab_events(prepare_lab_job(services, model, files, settings), cancel)

        self._start(make, self._lab_event)

    def _lab_event(self, event: Any) -> None:
        data = getattr(event, "data", {}) or {}
        kind = getattr(event, "kind", "")
        if kind == "step":
            self.progress.setRange(0, int(data.get("total_steps") or 0))
            self.progress.setValue(int(data.get("step") or 0))
        elif kind == "message":
            self.status.setText(str(data.get("text", "")))
        elif kind == "error":
            self.status.setText(str(data.get("message", "The lab failed.")))
        elif kind == "cancelled":
            self.status.setText("Stopped; finished files are kept.")
        elif kind == "done":
            result = data.get("result") or {}
            self.show_rows(result.get("rows") or [])
            notes = " ".join(result.get("notes") or [])
            self.status.setText(f"Done. Reference: {result.get('reference_kind', '')}. {notes}".strip())
            self._show_recommendation()
            self.sig_lab_finished.emit(result)

    def show_rows(self, rows: list[dict]) -> None:
        self.rows = list(rows)
        self.table.setRowCount(len(rows))
        for r, row in enumerate(rows):
            values = (row["label"], f"{row['file_bytes'] / 1e6:.1f}", f"{row['tokens_per_s']:.1f}",
                      f"{row['perplexity']:.3f}", f"x{row['perplexity_ratio']:.4f}", f"{row['agreement']:.1%}")
            for c, value in enumerate(values):
                item = QTableWidgetItem(value)
                item.setFlags(item.flags() & ~Qt.ItemFlag.ItemIsEditable)
                self.table.setItem(r, c, item)
        self.progress.setRange(0, 1)
        self.progress.setValue(1)
        self.chart.set_rows(rows)

    def _show_recommendation(self) -> None:
        if not self.rows:
            return
        best = recommend(self.rows, self.goal_combo.currentText())
        for r, row in enumerate(self.rows):
            if row["label"] == best:
                self.table.selectRow(r)
        if best:
            self.table.setAccessibleDescription(f"Recommended for {self.goal_combo.currentText().lower()}: {best}")

    def selected_row(self) -> dict | None:
        selected = self.table.selectionModel().selectedRows() if self.table.selectionModel() else []
        return self.rows[selected[0].row()] if selected and selected[0].row() < len(self.rows) else None

    def add_selected(self) -> None:
        row = self.selected_row()
        if row is None:
            return
        library, path = self.services.library, row["path"]

        def make(cancel):
            yield library.add(path)

        def on_event(record) -> None:
            self.status.setText(f"Added {record.display_name} to the library.")
            self.sig_model_added.emit(record)

        self._start(make, on_event)

    def shutdown(self, timeout_ms: int = 30000) -> bool:
        self._closed = True
        for job in list(self._jobs):
            job.stop()
        return self.pool.waitForDone(timeout_ms)
