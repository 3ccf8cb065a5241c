"""The Compress pane: pick a model, a goal and held-out text; run the quantization lab; see
the table and a chart; put a result in the library.

GUI thread only for the widgets. The job file is written on a pool thread of the window's
:class:`ui.jobs.Jobs`; the lab runs as its own process (``python -m training.run`` with kind
"quantize_lab"), followed by :class:`ui.train_process.JobProcess` (a QProcess: no thread waits
on its output). Everything that needs the training package (reading the text, checking the
model, quantizing, measuring) happens in that process, so the window never imports it; where
the installation has no training package (the self-contained bundle) the page says so at once.
Stop sends SIGTERM and the job keeps every finished file for a later run. Adding a result to
the library runs on the pool (it hashes the file).

The module-level functions are Qt-free operations (like :mod:`ui.train_operations`).
"""

from __future__ import annotations

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

from assistant.errors import TrainingJobError
from assistant.train.support import lab_unavailable
from assistant.wording import counted
from engine.job_files import new_run_folder, write_job_file
from ui.file_dialogs import start_folder
from ui.train_process import JobProcess

if TYPE_CHECKING:
    from assistant.app import Services
    from ui.jobs import Jobs

#: Goals the user can pick, and the most perplexity they accept relative to F16 for each.
GOALS = {
    "Smaller": ("file_bytes", 1.05),  # smallest file within 5% of F16's perplexity
    "Faster": ("tokens_per_s", 1.05),  # fastest within 5%
    "Same quality": ("file_bytes", 1.01),  # smallest within 1%
}
COLUMNS = ("Type", "Size (MB)", "Tokens/s", "Perplexity", "vs F16", "Agreement")
#: What each figure means, in the user's words: the columns' tooltips (issue 19, point 5).
COLUMN_HELP = {
    "Type": "How the model's numbers are stored: F16 is full precision; Q8_0, Q4_K_M… keep fewer bits per "
            "number (a smaller file, a little less exact).",
    "Size (MB)": "The size of the model file: about what it takes in memory too.",
    "Tokens/s": "How fast this type writes on this computer (words are one to a few tokens each).",
    "Perplexity": "How surprised the model is by your held-out text, on average; lower is better.",
    "vs F16": "Perplexity compared with the full-precision (F16) model: x1.000 is as good, x1.020 is 2 % "
              "more surprised by your text. Under x1.01 is hard to notice.",
    "Agreement": "How often this type picks the same next word as the F16 model on your held-out text: "
                 "100 % means it writes the same.",
}
#: The page before its first run, and what the figures mean, under the table.
EMPTY_STATE_TEXT = ("Make a smaller or faster copy of a model and see what it costs: choose some held-out "
                    "text, then Run.")
HELD_OUT_HELP = ("Held-out text: a few pages of your own writing that the model was not trained on; the lab "
                 "measures each copy on it, so the figures speak for text like yours.")
FIGURES_HELP = ("vs F16: quality compared with the full-precision model (x1.00 is as good, lower is better). "
                "Agreement: how often a copy picks the same next word as the full model. " + HELD_OUT_HELP)


# ----- Qt-free operations (pool thread) ---------------------------------------------------
def prepare_lab_job(services: "Services", model_path: str, text_files: list[str], settings: dict | None = None) -> Path:
    """Write a quantize_lab job file in a new run folder and return its path; ``settings``
    are training.quantize.config.LabConfig fields (the defaults measure thoroughly)."""
    if not text_files:
        raise TrainingJobError("Choose some held-out text first: the lab measures perplexity on it.")
    folder = new_run_folder(services.paths.data_dir / "training" / "runs", "compress")
    job = {"kind": "quantize_lab", "model_gguf": str(model_path), "output_dir": str(folder / "lab"),
           "dataset": {"type": "text_files", "paths": [str(p) for p in text_files]}, "settings": dict(settings or {}),
           "created_at": time.time()}
    return write_job_file(folder, job, name="job-in.json")


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
    """Give it the services and the window's jobs; call :meth:`shutdown` before it goes away."""

    sig_lab_finished = Signal(object)  # the job's result dict
    sig_model_added = Signal(object)  # ModelRecord

    def __init__(self, services: "Services", jobs: "Jobs", parent: QWidget | None = None):
        super().__init__(parent)
        self.services = services
        self.jobs = jobs
        # Said up front, not after the user has chosen everything (the bundle has no training package).
        self.unavailable = lab_unavailable()
        # The running lab: a JobProcess, "starting" while its job file is written, "adding" while
        # a result goes into the library, else None.
        self.process: JobProcess | str | None = None
        self._stop_requested = False
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
        self.text_button.setToolTip(HELD_OUT_HELP)
        self.text_label.setToolTip(HELD_OUT_HELP)
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
        for column, name in enumerate(COLUMNS):
            self.table.horizontalHeaderItem(column).setToolTip(COLUMN_HELP[name])
        self.table.setAccessibleName("Results by quantization type")
        self.table.setSelectionBehavior(QTableWidget.SelectionBehavior.SelectRows)
        self.table.setCornerButtonEnabled(False)
        self.chart = LabChart()
        # Said next to the figures, not only in tooltips: what "vs F16", "agreement" and the
        # held-out text are.
        self.figures_help = QLabel(FIGURES_HELP)
        self.figures_help.setObjectName("MutedLabel")
        self.figures_help.setAccessibleName("What the figures mean")
        self.figures_help.setWordWrap(True)
        self.status = QLabel(self.unavailable or EMPTY_STATE_TEXT)
        self.status.setWordWrap(True)
        self.status.setAccessibleName("Status")
        self.run_button.setEnabled(not self.unavailable)
        bottom = QHBoxLayout()
        bottom.addWidget(self.add_button)
        bottom.addStretch(1)

        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(self.progress)
        layout.addWidget(self.table, 1)
        layout.addWidget(self.chart)
        layout.addWidget(self.figures_help)
        layout.addLayout(bottom)
        layout.addWidget(self.status)

        self.text_button.clicked.connect(self._choose_text)
        self.run_button.clicked.connect(self.run_lab)
        self.stop_button.clicked.connect(self.stop)
        self.add_button.clicked.connect(self.add_selected)
        self.goal_combo.currentIndexChanged.connect(lambda _i: self._show_recommendation())
        self.table.itemSelectionChanged.connect(lambda: self.add_button.setEnabled(bool(self.selected_row())))

    # ----- state ------------------------------------------------------------------------
    @property
    def busy(self) -> bool:
        return self.process is not None

    def _set_busy(self, state: JobProcess | str | None) -> None:
        self.process = state
        self.stop_button.setEnabled(state is not None and state != "adding")
        self.run_button.setEnabled(state is None and not self.unavailable)

    def stop(self) -> None:
        """Stop the lab: the job keeps every finished file for a later run."""
        self._stop_requested = True
        if isinstance(self.process, JobProcess):
            self.process.cancel()

    # ----- actions ----------------------------------------------------------------------
    def _choose_text(self) -> None:
        near = self.text_files[0] if self.text_files else None
        files, _ = QFileDialog.getOpenFileNames(self, "Held-out text", start_folder(near),
                                                "Text (*.txt *.md *.rst);;All files (*)")
        if files:
            self.set_text_files(files)

    def set_text_files(self, files: list[str]) -> None:
        self.text_files = [str(f) for f in files]
        self.text_label.setText(counted(len(files), "file"))

    def run_lab(self) -> None:
        if self.busy:
            return
        if self.unavailable:
            self.status.setText(self.unavailable)
            return
        model = self.model_combo.currentData()
        if not model:
            self.status.setText("Choose a model first.")
            return
        if not self.text_files:
            self.status.setText("Choose some held-out text first: the lab measures perplexity on it.")
            return
        self.status.setText("Starting…")
        self.progress.setRange(0, 0)
        self._stop_requested = False
        self._set_busy("starting")
        self.jobs.run(prepare_lab_job, self.services, model, list(self.text_files), dict(self.lab_settings),
                      on_done=self._follow, on_error=self._failed)

    def _follow(self, job_file: Path) -> None:
        """GUI thread: the job file is written; start the lab's process and follow it."""
        if self._closed:
            return
        if self._stop_requested:
            self._failed("Stopped before the lab started.")
            return
        process = JobProcess(job_file, parent=self)
        process.sig_event_received.connect(self._lab_event)
        process.sig_job_finished.connect(self._lab_ended)
        self._set_busy(process)
        process.start()

    def _lab_ended(self, _result: dict | None) -> None:
        if isinstance(self.process, JobProcess):
            self.process.deleteLater()
        self._set_busy(None)
        if self.progress.maximum() == 0:  # ended before its first step
            self.progress.setRange(0, 1)
            self.progress.setValue(0)

    def _failed(self, message: str, _exc: Any = None) -> None:
        if self._closed:
            return
        self._set_busy(None)
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.status.setText(message)

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
        if row is None or self.busy:
            return
        self._set_busy("adding")

        def added(record) -> None:
            if self._closed:
                return
            self._set_busy(None)
            self.status.setText(f"Added {record.display_name} to the library.")
            self.sig_model_added.emit(record)

        self.jobs.run(self.services.library.add, row["path"], on_done=added, on_error=self._failed)

    def shutdown(self) -> bool:
        """GUI thread, at close: a running lab stops (its finished files are kept) and is waited for."""
        self._closed = True
        self._stop_requested = True
        if isinstance(self.process, JobProcess):
            return self.process.shutdown()
        return True
