"""A training job's process followed with QProcess: the window's adapter for ``python -m training.run``.

GUI thread only. The core says how to start the job and what its output means
(:mod:`assistant.train.process`: :func:`job_launch`, :class:`ProgressReader`); this class only
wires them to a :class:`QProcess`: each progress line arrives through the event loop
(``readyReadStandardOutput``) and leaves as ``sig_event_received``, and when the process has
exited ``sig_job_finished`` carries the job's result (None when it failed or was cancelled,
after the final event that says which). No thread waits on the pipe while the job runs.

:meth:`JobProcess.cancel` sends SIGTERM: the job saves a checkpoint and exits (resumable).
:meth:`JobProcess.shutdown` does the same at close and waits for the process to be gone.
"""

from __future__ import annotations

import codecs
from pathlib import Path

from PySide6.QtCore import QIODevice, QObject, QProcess, QProcessEnvironment, Signal

from assistant.train.process import ProgressReader, TrainingEvent, job_launch

#: How long a closing window waits for a cancelled job to save its checkpoint and exit.
SHUTDOWN_WAIT_MS = 30_000


class JobProcess(QObject):
    """One ``python -m training.run JOB.json`` run: :meth:`start`, then signals until it ends."""

    sig_event_received = Signal(object)  # assistant.train.process.TrainingEvent
    sig_job_finished = Signal(object)  # the "done" line's result dict, or None

    def __init__(self, job_file: Path, resume: bool = False, python: str | None = None,
                 parent: QObject | None = None):
        super().__init__(parent)
        launch = job_launch(Path(job_file), resume, python)
        self.job_file = Path(job_file)
        self.reader = ProgressReader(launch.log_path)
        # A read can end inside a character: the decoder keeps its first bytes for the next one.
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._ended = False
        self.process = QProcess(self)
        self.process.setProgram(launch.program)
        self.process.setArguments(launch.arguments)
        self.process.setWorkingDirectory(str(launch.working_dir))
        environment = QProcessEnvironment()
        for key, value in launch.environment.items():
            environment.insert(key, value)
        self.process.setProcessEnvironment(environment)
        self.process.setStandardInputFile(QProcess.nullDevice())
        self.process.setStandardErrorFile(str(launch.log_path), QIODevice.OpenModeFlag.Append)
        self.process.readyReadStandardOutput.connect(self._read)
        self.process.finished.connect(self._finished)
        self.process.errorOccurred.connect(self._error)

    @property
    def running(self) -> bool:
        return self.process.state() != QProcess.ProcessState.NotRunning

    @property
    def result(self) -> dict | None:
        return self.reader.result

    def start(self) -> None:
        self.process.start()

    def cancel(self) -> None:
        """Ask the job to save a checkpoint and stop (SIGTERM); its ``cancelled`` event follows."""
        if self.running:
            self.process.terminate()

    def shutdown(self, timeout_ms: int = SHUTDOWN_WAIT_MS) -> bool:
        """At close: stop the job (it saves a checkpoint), wait for it, kill it if it will not go.
        The signals stay quiet from here on: the widgets may be going away."""
        self.blockSignals(True)
        if not self.running:
            return True
        self.process.terminate()
        if self.process.waitForFinished(timeout_ms):
            return True
        self.process.kill()
        return self.process.waitForFinished(5000)

    # ----- QProcess's signals (GUI thread) ---------------------------------------------------
    def _read(self) -> None:
        text = self._decoder.decode(bytes(self.process.readAllStandardOutput().data()))
        for event in self.reader.feed(text):
            self.sig_event_received.emit(event)

    def _finished(self, exit_code: int, exit_status: QProcess.ExitStatus) -> None:
        self._read()
        crashed = exit_status == QProcess.ExitStatus.CrashExit
        self._end(None if crashed else exit_code)

    def _error(self, error: QProcess.ProcessError) -> None:
        if error == QProcess.ProcessError.FailedToStart:  # no finished() follows
            event = TrainingEvent("error", {"message": "The training process could not start "
                                                       f"({self.process.errorString()})."})
            self.reader.final = event
            self._emit_end([event])

    def _end(self, exit_code: int | None) -> None:
        self._emit_end(self.reader.finish(exit_code))

    def _emit_end(self, events: list) -> None:
        if self._ended:
            return
        self._ended = True
        for event in events:
            self.sig_event_received.emit(event)
        self.sig_job_finished.emit(self.reader.result if self.reader.final and self.reader.final.kind == "done"
                                   else None)
