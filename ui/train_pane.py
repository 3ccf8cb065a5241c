"""The Train pane: teach a model the user's documents or translation memory (LoRA).

Why one module of ~720 lines: the form, the run's progress (chart and log) and the result card
follow one run through its states (checked, running, cancelled, resumable, done); the run
itself is in :mod:`assistant.train` and the process in :mod:`ui.train_process`.

GUI thread only. The job is checked and written on a pool thread of the window's
:class:`ui.jobs.Jobs` (:class:`assistant.train.jobs.TrainingJobs`); its work runs in its own
process (``python -m training.run``), followed by :class:`ui.train_process.JobProcess` (a
QProcess: each progress line arrives through the event loop, no thread waits on the pipe).
Cancel sends SIGTERM: the job saves a checkpoint and stops, and Resume carries on from it;
Discard… gives up a run that did not finish (after a confirmation: its copies of the user's text
are shredded and its folder removed, on a pool thread).
Closing the window does the same and waits for the job to be gone, so nothing is lost. When a run ends, its result card shows held-out perplexity before and
after (measured by the job through llama.cpp on the GGUF the user will run), sample
outputs before and after, and buttons to use the adapter in chat or for translation.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QButtonGroup,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QMessageBox,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QRadioButton,
    QSpinBox,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from assistant.train.support import training_unavailable
from assistant.wording import counted
from ui import train_operations as ops
from ui.empty_state import EmptyState
from ui.file_dialogs import start_folder
from ui.train_process import JobProcess

if TYPE_CHECKING:
    from assistant.app import Services
    from ui.jobs import Jobs

#: The right half before any run: one sentence and one action (issue 19, point 5).
EMPTY_STATE_TEXT = ("No training run yet: a run teaches a model the words of your documents or a translation "
                    "memory, and its learning curve and a before-and-after comparison show here.")

#: The confirmation before a run is discarded: what goes, what stays, and that it is for good.
DISCARD_TEXT = ("This deletes the run's checkpoints and its copies of your text (overwritten first) and cannot be "
                "undone; the trained results of finished runs are not touched.")

#: What each preset means, in the user's words.
PRESET_TEXT = {
    "quick": "Quick: a light adapter (rank 8, attention only), one pass. Minutes on a laptop.",
    "balanced": "Balanced: rank 16 on every layer, one pass. The usual choice.",
    "thorough": "Thorough: rank 32, two passes. Learns the most; takes about four times as long.",
}
#: The same presets when the goal is a smaller copy (training.distill.config.PRESETS).
DISTILL_PRESET_TEXT = {
    "quick": "Quick: 60 short steps. Shows the copy recovering; it will not be as good as the original yet.",
    "balanced": "Balanced: one pass over the documents. On a 2-core laptop about half an hour per 250,000 "
                "tokens of text.",
    "thorough": "Thorough: three gentler passes, for an overnight run.",
}
#: What the page can make: an adapter (LoRA) or a smaller copy (prune + distil, issue 8).
GOALS = (("lora", "Teach it my documents or translations (an adapter)"),
         ("distill", "Make a smaller, faster copy that keeps what matters in my documents"))


def _format_eta(seconds: Any) -> str:
    try:
        seconds = int(float(seconds))
    except (TypeError, ValueError):
        return "…"
    if seconds >= 3600:
        return f"{seconds // 3600} h {seconds % 3600 // 60} min"
    if seconds >= 60:
        return f"{seconds // 60} min {seconds % 60} s"
    return f"{seconds} s"


TRAIN_COLOR = "#3b82f6"
EVAL_COLOR = "#f97316"


def loss_chart_ranges(steps: list[float], losses: list[float]) -> tuple[tuple[float, float], tuple[float, float]]:
    """The chart's (x, y) ranges: steps from 0 to the last one (at least 1), losses from a little
    under the lowest (never below 0) to a little over the highest. Chosen here rather than by
    pyqtgraph's auto-range, which zooms a single point into a sliver (0.9999 to 1.0001)."""
    x_high = max([1.0, *steps])
    if not losses:
        return (0.0, x_high), (0.0, 1.0)
    low, high = min(losses), max(losses)
    margin = max((high - low) * 0.1, abs(high) * 0.1, 0.05)
    return (0.0, x_high), (max(0.0, low - margin), high + margin)


class LossChart(QWidget):
    """Training loss by step (pyqtgraph), with the held-out loss as points when measured."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        import pyqtgraph as pg

        self.setAccessibleName("Loss chart")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.plot = pg.PlotWidget(self)
        self.plot.setAccessibleName("Training loss by step")
        # Nothing to do with the keyboard here: not a Tab stop (as the Study chart).
        self.plot.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.plot.setBackground(None)
        self.plot.showGrid(x=True, y=True, alpha=0.2)
        self.plot.setLabel("bottom", "step")
        self.plot.setLabel("left", "loss")
        # The key sits in its own row above the plot: pyqtgraph's legend is drawn inside the
        # view box, where a falling loss curve and the held-out points run under it.
        self.key = QLabel(f'<span style="color:{TRAIN_COLOR}">&#9473;&#9473;</span> training loss'
                          f'&nbsp;&nbsp;&nbsp;<span style="color:{EVAL_COLOR}">&#9679;</span> held-out loss')
        self.key.setTextFormat(Qt.TextFormat.RichText)
        self.key.setAccessibleName("Chart key: training loss as a line, held-out loss as points")
        self.train_curve = self.plot.plot([], [], pen=pg.mkPen(TRAIN_COLOR, width=2))
        self.eval_points = self.plot.plot([], [], pen=None, symbol="o", symbolBrush=EVAL_COLOR)
        layout.addWidget(self.key)
        layout.addWidget(self.plot)
        self.steps: list[float] = []
        self.losses: list[float] = []
        self.eval_steps: list[float] = []
        self.eval_losses: list[float] = []

    def clear(self) -> None:
        self.steps, self.losses, self.eval_steps, self.eval_losses = [], [], [], []
        self.train_curve.setData([], [])
        self.eval_points.setData([], [])
        self._fit()

    def add_step(self, step: float, loss: float) -> None:
        self.steps.append(float(step))
        self.losses.append(float(loss))
        self.train_curve.setData(self.steps, self.losses)
        self._fit()

    def add_eval(self, step: float, loss: float) -> None:
        self.eval_steps.append(float(step))
        self.eval_losses.append(float(loss))
        self.eval_points.setData(self.eval_steps, self.eval_losses)
        self._fit()

    def _fit(self) -> None:
        (x_low, x_high), (y_low, y_high) = loss_chart_ranges(self.steps + self.eval_steps,
                                                             self.losses + self.eval_losses)
        self.plot.setXRange(x_low, x_high, padding=0.02)
        self.plot.setYRange(y_low, y_high, padding=0)


class TrainPane(QWidget):
    """Self-contained: give it the services and the window's jobs; call :meth:`shutdown` at close."""

    sig_training_finished = Signal(object)  # the result dict (or None when it failed or was cancelled)
    sig_adapter_activated = Signal(str, str)  # task, adapter path
    sig_student_added = Signal(object)  # the ModelRecord of a smaller copy put in the library

    def __init__(self, services: "Services", jobs: "Jobs", parent: QWidget | None = None):
        super().__init__(parent)
        self.services = services
        self.jobs = jobs
        # Said up front, not after the user has chosen everything (the bundle has no PyTorch).
        self.unavailable = training_unavailable()
        # The running JobProcess; "starting" while the job is checked and written on the pool.
        self.process: JobProcess | str | None = None
        self._cancel_requested = False
        self._closed = False
        self.result: dict | None = None
        self.events: list = []  # this run's events, for the status line and tests
        self._build()
        self.refresh()

    # ----- layout ------------------------------------------------------------------------------
    def _build(self) -> None:
        setup = QGroupBox("Teach a model")
        setup.setAccessibleName("Training set-up")
        form = QFormLayout(setup)
        self.goal_combo = QComboBox()
        self.goal_combo.setAccessibleName("What to make")
        for key, text in GOALS:
            self.goal_combo.addItem(text, key)
        self.goal_combo.currentIndexChanged.connect(self._goal_changed)
        form.addRow("Make", self.goal_combo)
        self.source_group = QButtonGroup(self)
        self.from_documents = QRadioButton("My documents")
        self.from_documents.setAccessibleName("Learn from my documents")
        self.from_memory = QRadioButton("A translation memory (TSV or TMX)")
        self.from_memory.setAccessibleName("Learn from a translation memory")
        self.from_documents.setChecked(True)
        for button in (self.from_documents, self.from_memory):
            self.source_group.addButton(button)
            button.toggled.connect(self._source_changed)
        self.collections = QListWidget()
        self.collections.setAccessibleName("Document collections to learn from")
        self.collections.setMaximumHeight(90)
        self.memory_path = QLineEdit()
        self.memory_path.setAccessibleName("Translation memory file")
        self.memory_path.setPlaceholderText("pairs.tsv or memory.tmx")
        self.memory_browse = QPushButton("Browse…")
        self.memory_browse.setAccessibleName("Choose a translation memory file")
        self.memory_browse.clicked.connect(self._choose_memory)
        memory_row = QHBoxLayout()
        memory_row.addWidget(self.memory_path, 1)
        memory_row.addWidget(self.memory_browse)
        form.addRow(self.from_documents)
        form.addRow(self.collections)
        form.addRow(self.from_memory)
        form.addRow(memory_row)
        self.model_combo = QComboBox()
        self.model_combo.setAccessibleName("Model to teach")
        form.addRow("Model", self.model_combo)
        self.preset_combo = QComboBox()
        self.preset_combo.setAccessibleName("Training preset")
        for name in PRESET_TEXT:
            self.preset_combo.addItem(name.capitalize(), name)
        self.preset_combo.setCurrentIndex(1)
        self.preset_text = QLabel(PRESET_TEXT["balanced"])
        self.preset_text.setAccessibleName("What the preset does")
        self.preset_text.setWordWrap(True)
        self.preset_combo.currentIndexChanged.connect(lambda _i: self._show_preset())
        form.addRow("Preset", self.preset_combo)
        form.addRow(self.preset_text)
        self.max_steps = QSpinBox()
        self.max_steps.setAccessibleName("Stop after this many steps (0: the preset's full run)")
        self.max_steps.setRange(0, 100000)
        self.max_steps.setSpecialValueText("full run")
        self.max_steps.setToolTip("For a quick try: stop after this many steps instead of the preset's passes")
        form.addRow("Steps", self.max_steps)
        buttons = QHBoxLayout()
        self.start_button = QPushButton("Start training")
        self.start_button.setAccessibleName("Start training")
        self.start_button.clicked.connect(self.start)
        self.start_button.setEnabled(not self.unavailable)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setAccessibleName("Cancel training (it can be resumed)")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.cancel)
        buttons.addWidget(self.start_button)
        buttons.addWidget(self.cancel_button)
        buttons.addStretch(1)
        form.addRow(buttons)

        runs_box = QGroupBox("Earlier runs")
        runs_box.setAccessibleName("Earlier runs")
        runs_layout = QVBoxLayout(runs_box)
        self.runs = QListWidget()
        self.runs.setAccessibleName("Earlier training runs")
        self.runs.currentItemChanged.connect(self._run_selected)
        self.resume_button = QPushButton("Resume")
        self.resume_button.setAccessibleName("Resume the selected run")
        self.resume_button.setEnabled(False)
        self.resume_button.clicked.connect(self.resume_selected)
        # Shown only for a run that did not finish: one that finished holds what it made.
        self.discard_button = QPushButton("Discard…")
        self.discard_button.setAccessibleName("Discard the selected stopped run")
        self.discard_button.setToolTip("Delete its checkpoints and its copies of your text (asks first)")
        self.discard_button.hide()
        self.discard_button.clicked.connect(self.ask_discard)
        self.active_dialog: QMessageBox | None = None  # the discard question while it shows
        run_buttons = QHBoxLayout()
        run_buttons.addWidget(self.resume_button)
        run_buttons.addWidget(self.discard_button)
        run_buttons.addStretch(1)
        runs_layout.addWidget(self.runs)
        runs_layout.addLayout(run_buttons)

        left = QWidget()
        left_layout = QVBoxLayout(left)
        left_layout.setContentsMargins(0, 0, 0, 0)
        left_layout.addWidget(setup)
        left_layout.addWidget(runs_box, 1)

        self.progress = QProgressBar()
        self.progress.setAccessibleName("Training progress")
        self.status = QLabel(self.unavailable or "Choose what to learn from and press Start.")
        self.status.setAccessibleName("Training status")
        self.status.setWordWrap(True)
        self.chart = LossChart()
        # Before any run the chart would be an empty frame: say what a run gives and start one.
        self.empty_state = EmptyState(EMPTY_STATE_TEXT, "Start a first run", self.start, name="No training run yet",
                                      action_name="Start a first training run", action_tip="With the choices on the left")
        self.empty_label, self.empty_start_button = self.empty_state.label, self.empty_state.button
        self.empty_start_button.setEnabled(not self.unavailable)
        self.empty_state.hide()

        self.result_box = QGroupBox("Result")
        self.result_box.setAccessibleName("Training result")
        result_layout = QVBoxLayout(self.result_box)
        self.result_summary = QLabel("")
        self.result_summary.setAccessibleName("Perplexity before and after")
        self.result_summary.setWordWrap(True)
        self.result_summary.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        samples = QHBoxLayout()
        self.sample_before = QPlainTextEdit()
        self.sample_before.setReadOnly(True)
        self.sample_before.setAccessibleName("Sample output before training")
        self.sample_after = QPlainTextEdit()
        self.sample_after.setReadOnly(True)
        self.sample_after.setAccessibleName("Sample output after training")
        for caption, box in (("Before", self.sample_before), ("After", self.sample_after)):
            column = QVBoxLayout()
            label = QLabel(caption)
            label.setBuddy(box)
            column.addWidget(label)
            column.addWidget(box)
            samples.addLayout(column)
        use_row = QHBoxLayout()
        self.use_chat = QPushButton("Use in chat")
        self.use_chat.setAccessibleName("Use this adapter in chat")
        self.use_chat.clicked.connect(lambda: self.use_adapter("chat"))
        self.use_translate = QPushButton("Use for translation")
        self.use_translate.setAccessibleName("Use this adapter for translation")
        self.use_translate.clicked.connect(lambda: self.use_adapter("translate"))
        self.add_student = QPushButton("Add to my models")
        self.add_student.setAccessibleName("Add the smaller copy to the model library")
        self.add_student.clicked.connect(self.add_student_to_library)
        use_row.addWidget(self.use_chat)
        use_row.addWidget(self.use_translate)
        use_row.addWidget(self.add_student)
        use_row.addStretch(1)
        result_layout.addWidget(self.result_summary)
        result_layout.addLayout(samples)
        result_layout.addLayout(use_row)
        self.result_box.hide()

        right = QWidget()
        right_layout = QVBoxLayout(right)
        right_layout.setContentsMargins(0, 0, 0, 0)
        right_layout.addWidget(self.progress)
        right_layout.addWidget(self.status)
        right_layout.addWidget(self.empty_state, 2)
        right_layout.addWidget(self.chart, 2)
        right_layout.addWidget(self.result_box, 2)

        splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.setAccessibleName("Training")
        splitter.setChildrenCollapsible(False)
        splitter.addWidget(left)
        splitter.addWidget(right)
        splitter.setStretchFactor(1, 1)
        splitter.setSizes([380, 700])
        layout = QVBoxLayout(self)
        layout.setContentsMargins(16, 12, 16, 12)
        layout.addWidget(splitter)
        self._source_changed()

    # ----- state --------------------------------------------------------------------------------
    @property
    def busy(self) -> bool:
        return self.process is not None

    @property
    def goal(self) -> str:
        return self.goal_combo.currentData() or "lora"

    def _show_preset(self) -> None:
        texts = DISTILL_PRESET_TEXT if self.goal == "distill" else PRESET_TEXT
        self.preset_text.setText(texts[self.preset_combo.currentData() or "balanced"])

    def _goal_changed(self, *_: Any) -> None:
        # A smaller copy learns from documents only (a translation memory teaches a task, not a
        # language, and is too little text to heal a cut model).
        distill = self.goal == "distill"
        if distill:
            self.from_documents.setChecked(True)
        self.from_memory.setEnabled(not distill)
        self.start_button.setText("Make the smaller copy" if distill else "Start training")
        self._show_preset()

    def _source_changed(self, *_: Any) -> None:
        documents = self.from_documents.isChecked()
        self.collections.setEnabled(documents)
        self.memory_path.setEnabled(not documents)
        self.memory_browse.setEnabled(not documents)

    def _choose_memory(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Translation memory", start_folder(self.memory_path.text()),
                                              "Translation memory (*.tsv *.tmx *.txt);;All files (*)")
        if path:
            self.memory_path.setText(path)
            self.from_memory.setChecked(True)

    def refresh(self) -> None:
        """Reload collections, trainable models and earlier runs (read on a worker thread)."""
        self.jobs.run(ops.train_view, self.services, on_done=self._fill, on_error=self._failed)

    def _fill(self, view: "ops.TrainView") -> None:
        checked = {self.collections.item(i).data(Qt.ItemDataRole.UserRole)
                   for i in range(self.collections.count())
                   if self.collections.item(i).checkState() == Qt.CheckState.Checked}
        self.collections.clear()
        for collection in view.collections:
            item = QListWidgetItem(f"{collection['name']} ({counted(int(collection['files']), 'file')})")
            item.setData(Qt.ItemDataRole.UserRole, collection["name"])
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            item.setCheckState(Qt.CheckState.Checked if collection["name"] in checked or len(view.collections) == 1
                               else Qt.CheckState.Unchecked)
            self.collections.addItem(item)
        current = self.model_combo.currentData()
        self.model_combo.clear()
        for model in view.models:
            self.model_combo.addItem(model["label"], model["path"])
        index = self.model_combo.findData(current) if current else -1
        self.model_combo.setCurrentIndex(max(0, index))
        self.runs.clear()
        for run in view.runs:
            item = QListWidgetItem(run["label"])
            item.setData(Qt.ItemDataRole.UserRole, run)
            self.runs.addItem(item)
        self._show_empty_state(not view.runs and not self.busy and self.result is None)
        if not view.models:
            self.status.setText("No model that can be trained is installed (llama or gemma3 GGUF models can).")
        self.start_button.setEnabled(bool(view.models) and not self.busy and not self.unavailable)
        if self.unavailable:
            self.status.setText(self.unavailable)

    def _show_empty_state(self, empty: bool) -> None:
        self.empty_state.setVisible(empty)
        self.chart.setVisible(not empty)

    def _run_selected(self, item: QListWidgetItem | None, _previous=None) -> None:
        run = item.data(Qt.ItemDataRole.UserRole) if item is not None else None
        self.resume_button.setEnabled(bool(run and run.get("resumable")) and not self.busy)
        discardable = bool(run) and not run.get("result")
        self.discard_button.setVisible(discardable)
        self.discard_button.setEnabled(discardable and not self.busy)
        if run and run.get("result") and not self.busy:
            self.result = {**run["result"], "base_gguf": (run.get("job") or {}).get("base_gguf", "")}
            self._show_result(self.result)

    def chosen_collections(self) -> list[str]:
        return [self.collections.item(i).data(Qt.ItemDataRole.UserRole) for i in range(self.collections.count())
                if self.collections.item(i).checkState() == Qt.CheckState.Checked]

    # ----- running ------------------------------------------------------------------------------
    def start(self) -> None:
        """Check and prepare the job on a worker thread, then follow its process."""
        if self.busy:
            return
        if self.unavailable:
            self.status.setText(self.unavailable)
            return
        model_path = self.model_combo.currentData()
        if not model_path:
            self.status.setText("Choose a model to teach.")
            return
        preset = self.preset_combo.currentData()
        settings = {"max_steps": self.max_steps.value()} if self.max_steps.value() else {}
        if self.from_documents.isChecked():
            collections = self.chosen_collections()
            if not collections:
                self.status.setText("Tick at least one document collection (add documents on the Documents page).")
                return
            make = ops.prepare_distill_job if self.goal == "distill" else ops.prepare_documents_job
            prepare = (make, self.services, collections, model_path, preset, settings)
        else:
            memory = self.memory_path.text().strip()
            if not memory:
                self.status.setText("Choose a translation memory file (TSV with source and target columns, or TMX).")
                return
            prepare = (ops.prepare_translation_job, self.services, memory, model_path, preset, settings)
        self._begin("Checking the data, memory and disk…")
        self.jobs.run(*prepare, on_done=self._follow, on_error=self._start_failed)

    def resume_selected(self) -> None:
        run = self.selected_run()
        if not run or self.busy:
            return
        self._begin("Resuming from the last checkpoint…")
        self.jobs.run(ops.resume_job, self.services, run["folder"], on_done=lambda spec: self._follow(spec, resume=True),
                      on_error=self._start_failed)

    def selected_run(self) -> dict | None:
        item = self.runs.currentItem()
        return item.data(Qt.ItemDataRole.UserRole) if item is not None else None

    def ask_discard(self) -> QMessageBox | None:
        """Ask before the selected run that did not finish is given up; on "Discard" it goes on a
        pool thread and the list is read again. Returns the question (shown window-modal)."""
        run = self.selected_run()
        if not run or run.get("result") or self.busy:
            return None
        box = QMessageBox(QMessageBox.Icon.Warning, "Discard this run?",
                          f"Discard the run “{run['label']}”?", parent=self)
        box.setInformativeText(DISCARD_TEXT)
        discard = box.addButton("Discard", QMessageBox.ButtonRole.DestructiveRole)
        discard.setAccessibleName("Discard the run for good")
        box.addButton(QMessageBox.StandardButton.Cancel)
        box.setDefaultButton(QMessageBox.StandardButton.Cancel)  # Enter must not delete anything

        def answered(_result: int) -> None:
            self.active_dialog = None
            if box.clickedButton() is discard:
                self._discard(run["folder"])

        box.finished.connect(answered)
        box.finished.connect(lambda _r: box.deleteLater())
        self.active_dialog = box
        box.open()
        return box

    def _discard(self, folder: str) -> None:
        self.discard_button.setEnabled(False)  # one request per run, even on a double click
        self.resume_button.setEnabled(False)
        self.status.setText("Discarding the run…")
        self.jobs.run(ops.discard_job, self.services, folder, on_done=self._discarded,
                      on_error=self._discard_failed)

    def _discarded(self, _none=None) -> None:
        self.status.setText("Discarded: its checkpoints and its copies of your text are gone.")
        self.refresh()

    def _discard_failed(self, message: str, _exc: Any = None) -> None:
        self.status.setText(message)
        self.refresh()  # the list shows what is on the disk now

    def _begin(self, text: str) -> None:
        self.process = "starting"  # busy until the job is followed or failed to start
        self._cancel_requested = False
        self.events = []
        self.result = None
        self.result_box.hide()
        self._show_empty_state(False)
        self.chart.clear()
        self.progress.setRange(0, 0)
        self.status.setText(text)
        self.start_button.setEnabled(False)
        self.resume_button.setEnabled(False)
        self.discard_button.setEnabled(False)
        self.cancel_button.setEnabled(True)

    def _start_failed(self, message: str, _exc: Any = None) -> None:
        self.process = None
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.status.setText(message)
        self.cancel_button.setEnabled(False)
        self.start_button.setEnabled(self.model_combo.count() > 0 and not self.unavailable)
        # The selected run is still there: Resume and Discard… may be tried again after a failure.
        self._run_selected(self.runs.currentItem())

    def _follow(self, spec, resume: bool = False) -> None:
        """GUI thread: the job is written (``spec``, an assistant.train.jobs.JobSpec); start its
        process and follow it."""
        if self._closed:
            return
        if self._cancel_requested:
            self._start_failed("Stopped before the job started.")
            return
        process = JobProcess(spec.job_file, resume=resume, parent=self)
        process.sig_event_received.connect(self._on_event)
        process.sig_job_finished.connect(lambda result, job=spec.job: self._ended(ops.with_job(result, job)))
        self.process = process
        process.start()

    def cancel(self) -> None:
        """Ask the job to save a checkpoint and stop; Resume carries on from it."""
        self._cancel_requested = True
        if isinstance(self.process, JobProcess):
            self.process.cancel()
        self.cancel_button.setEnabled(False)
        self.status.setText("Stopping: saving a checkpoint…")

    def _on_event(self, event) -> None:
        self.events.append(event)
        data = event.data
        if event.kind == "start":
            total = int(data.get("total_steps") or 0)
            self.progress.setRange(0, max(1, total))
            self.progress.setValue(int(data.get("step") or 0))
            self.status.setText(f"Training on {data.get('train_blocks', '?')} blocks of {data.get('seq_len', '?')} "
                                f"tokens ({data.get('device', 'cpu')}).")
            if data.get("eval_loss") is not None:
                self.chart.add_eval(float(data.get("step") or 0), float(data["eval_loss"]))
        elif event.kind == "step":
            total = int(data.get("total_steps") or self.progress.maximum() or 1)
            self.progress.setRange(0, max(1, total))
            self.progress.setValue(int(data.get("step") or 0))
            if data.get("loss") is not None:
                self.chart.add_step(float(data["step"]), float(data["loss"]))
            self.status.setText(f"Step {data.get('step')} of {total} · loss {float(data.get('loss') or 0):.3f} · "
                                f"{float(data.get('tokens_per_s') or 0):.0f} tokens/s · "
                                f"about {_format_eta(data.get('eta_s'))} left")
        elif event.kind == "eval" and data.get("eval_loss") is not None:
            self.chart.add_eval(float(data.get("step") or 0), float(data["eval_loss"]))
        elif event.kind == "message" and data.get("text", data.get("message")):
            self.status.setText(str(data.get("text", data.get("message"))))
        elif event.kind == "resumed":
            self.status.setText(f"Resumed at step {data.get('step')}.")
        elif event.kind == "cancelled":
            self.status.setText("Stopped. A checkpoint was saved: select the run under Earlier runs and Resume.")
        elif event.kind == "error":
            self.status.setText(str(data.get("message") or "The training job failed."))

    def _ended(self, result: dict | None) -> None:
        if isinstance(self.process, JobProcess):
            self.process.deleteLater()
        self.process = None
        self.cancel_button.setEnabled(False)
        self.progress.setRange(0, 1)
        self.progress.setValue(1 if result else 0)
        self.result = result
        if result:
            self._show_result(result)
            self.status.setText("Done.")
        self.refresh()
        self.sig_training_finished.emit(result)

    def _show_result(self, result: dict) -> None:
        if result.get("student_gguf") or result.get("kind") == "distill":
            self._show_student(result)
            return
        self.add_student.hide()
        self.use_chat.show()
        self.use_translate.show()
        lines = []
        before, after = result.get("gguf_perplexity_before"), result.get("gguf_perplexity_after")
        if before and after:
            change = (after - before) / before * 100
            lines.append(f"Held-out perplexity through llama.cpp: {before:.2f} → {after:.2f} ({change:+.1f}%)")
        elif result.get("perplexity_before") and result.get("perplexity_after"):
            lines.append(f"Held-out perplexity (training process): {result['perplexity_before']:.2f} → "
                         f"{result['perplexity_after']:.2f}")
        if result.get("tokens_per_s"):
            lines.append(f"{float(result['tokens_per_s']):.0f} tokens/s on {result.get('device', 'cpu')}")
        if result.get("adapter_gguf"):
            lines.append(f"Adapter: {result['adapter_gguf']}")
        else:
            lines.append("No llama.cpp adapter was written, so it cannot be used in chat yet.")
        self.result_summary.setText("\n".join(lines))
        self.sample_before.setPlainText(result.get("sample_before", ""))
        self.sample_after.setPlainText(result.get("sample_after", ""))
        usable = bool(result.get("adapter_gguf"))
        self.use_chat.setEnabled(usable)
        self.use_translate.setEnabled(usable)
        self.result_box.show()

    def _show_student(self, result: dict) -> None:
        """The card of a smaller copy: how much smaller, how close, and Add to my models."""
        lines = []
        prune = result.get("prune") or {}
        if prune.get("student_layers") and prune.get("teacher_layers"):
            lines.append(f"{prune['student_layers']} of {prune['teacher_layers']} layers kept: "
                         f"{prune.get('student_params', 0) / 1e6:.0f}M instead of "
                         f"{prune.get('teacher_params', 0) / 1e6:.0f}M parameters.")
        teacher, before, after = (result.get("teacher_perplexity"), result.get("perplexity_before"),
                                  result.get("perplexity_after"))
        if teacher and after:
            cut = f"; just cut, before learning: {before:.1f}" if before else ""
            lines.append(f"Held-out perplexity: original {teacher:.2f}, smaller copy {after:.2f} "
                         f"({after / teacher:.2f}x){cut}. Lower is better.")
        path = result.get("student_gguf_quantized") or result.get("student_gguf")
        lines.append(f"Model file: {path}" if path else "No model file was written (see the job's log).")
        self.result_summary.setText("\n".join(lines))
        self.sample_before.setPlainText("")
        self.sample_after.setPlainText("")
        self.use_chat.hide()
        self.use_translate.hide()
        self.add_student.show()
        self.add_student.setEnabled(bool(path))
        self.result_box.show()

    def add_student_to_library(self) -> None:
        result = self.result or {}
        path = result.get("student_gguf_quantized") or result.get("student_gguf")
        if not path:
            return
        self.add_student.setEnabled(False)
        self.jobs.run(ops.add_to_library, self.services, path, on_done=self._student_added, on_error=self._failed)

    def _student_added(self, record) -> None:
        name = getattr(record, "display_name", None) or "The smaller copy"
        self.status.setText(f"{name} is in your models: choose it on the Models page or in a conversation.")
        self.sig_student_added.emit(record)

    def use_adapter(self, task: str) -> None:
        """Make the finished adapter the one used for ``task`` (chat or translate)."""
        result = self.result or {}
        if not result.get("adapter_gguf"):
            return
        path = result["adapter_gguf"]
        self.jobs.run(ops.activate_adapter, self.services, task, path, result.get("base_gguf", ""),
                      on_done=lambda _r: self._activated(task, path), on_error=self._failed)

    def _activated(self, task: str, path: str) -> None:
        self.status.setText(f"The adapter is now used for {'chat' if task == 'chat' else 'translation'}.")
        self.sig_adapter_activated.emit(task, path)

    def _failed(self, message: str, _exc: Any = None) -> None:
        self.status.setText(message)

    def shutdown(self) -> bool:
        """GUI thread, at close: a running job saves a checkpoint and stops (resumable); waits
        for its process to be gone. A job still being written is not started."""
        self._closed = True
        self._cancel_requested = True
        process = self.process
        if isinstance(process, JobProcess):
            return process.shutdown()
        return True
