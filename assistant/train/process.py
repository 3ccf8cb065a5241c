"""A training job's process as the app sees it: the command that starts it and its progress lines.

Qt-free, and free of the ``training`` package too: the window (and the self-contained bundle,
which leaves ``training`` out) imports this module to start and follow a job, so nothing here
may import it. A job runs as ``python -m training.run JOB.json [--resume]`` and writes one JSON
object per line on stdout (see ``training/progress.py``); its stderr goes to ``stderr.log`` in
the job's folder.

- :func:`job_launch` says how to start the process (program, arguments, environment, folder,
  log file): :class:`TrainingProcess` spawns it with :mod:`subprocess` (the CLI, benchmarks,
  the sentiment student), the window with ``QProcess`` (``ui/train_process.py``);
- :class:`ProgressReader` turns the output, in whatever pieces it arrives, into typed events
  and makes sure a follower always sees one final event (done, error or cancelled), even when
  the process died without saying why. Both followers use it, so a line means the same to both;
- :func:`check_job` runs the checks a job makes before it starts (``python -m training.run
  --check``, the job on stdin) in a short child started the same way, so that the app refuses a
  job that cannot work, with the training package's own message, before it keeps a job folder;
- :func:`job_process_ids` finds a job's running processes, whoever started them (the window, the
  CLI, another window), so that a job is never given up under its own feet.

Threads: :func:`check_job` blocks for the check's few seconds (a worker thread or the CLI's
main thread, never the GUI's); :meth:`TrainingProcess.events` blocks on the child's output (a worker thread or the
CLI's main thread, never the GUI's); :class:`ProgressReader` does no I/O but reading the log's
last lines when the process died, and runs on whichever thread reads the output;
:meth:`TrainingProcess.cancel` is safe from any thread (it only sends SIGTERM: the job saves a
checkpoint and exits with code 3); :func:`job_process_ids` reads the process table (a worker thread
or the CLI's main thread).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from assistant.errors import TrainingJobError

#: The folder holding the ``training`` package: the job runs there, with it on the path.
PROJECT_ROOT = Path(__file__).resolve().parents[2]
#: Lines of the job's stderr quoted when it dies without saying why.
STDERR_TAIL_LINES = 8
#: Seconds the check before a job may take: it reads model headers and the user's data and
#: loads no model, so seconds are usual; a minute more covers a slow disk or a busy machine.
CHECK_TIMEOUT_S = 90


# ----- typed events -----------------------------------------------------------------------
@dataclass
class TrainingEvent:
    """One line of a job's progress; ``data`` holds every field the line had."""

    kind: str  # start, step, eval, checkpoint, message, resumed, done, error, cancelled
    data: dict = field(default_factory=dict)

    @property
    def final(self) -> bool:
        return self.kind in ("done", "error", "cancelled")


@dataclass
class StepEvent(TrainingEvent):
    step: int = 0
    total_steps: int = 0
    loss: float | None = None
    tokens_per_s: float = 0.0
    eta_s: float = 0.0


def parse_event(line: str) -> TrainingEvent | None:
    """A progress line as a typed event; None for anything that is not one (stray output)."""
    try:
        data = json.loads(line)
    except ValueError:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("event"), str):
        return None
    kind = data["event"]
    if kind == "step":
        return StepEvent(kind, data, int(data.get("step", 0)), int(data.get("total_steps", 0)), data.get("loss"),
                         float(data.get("tokens_per_s", 0.0)), float(data.get("eta_s", 0.0)))
    return TrainingEvent(kind, data)


def _tail(text: str) -> str:
    return "\n".join(text.strip().splitlines()[-STDERR_TAIL_LINES:])


def death_message(code: int | None, log_path: Path | None) -> str:
    """Why a job ended without a final line: its exit (``code`` < 0: killed by that signal; None:
    killed, the signal unknown) and the last lines of its log."""
    tail = ""
    if log_path is not None:
        try:
            tail = _tail(Path(log_path).read_text(encoding="utf-8", errors="replace"))
        except OSError:
            pass
    if code is None:
        how = "was killed"
    elif code < 0:
        how = f"was killed by signal {-code}"
    else:
        how = f"exited with code {code}"
    return (f"The training process {how} before finishing; it can be resumed from its last checkpoint."
            + (f"\n{tail}" if tail else ""))


class ProgressReader:
    """A job's stdout, fed in pieces as it arrives, as typed events (any one thread)."""

    def __init__(self, log_path: Path | None = None):
        self.log_path = log_path
        self.result: dict | None = None  # the "done" line's result
        self.final: TrainingEvent | None = None
        self._partial = ""

    def feed(self, text: str) -> list[TrainingEvent]:
        """The events of the complete lines in ``text`` (with what an earlier piece left unfinished)."""
        lines = (self._partial + text).split("\n")
        self._partial = lines.pop()
        return self._events(lines)

    def finish(self, exit_code: int | None) -> list[TrainingEvent]:
        """The process has exited: the events of its last, unterminated line, and an ``error``
        event when it never wrote a final one (``exit_code`` as in :func:`death_message`)."""
        events = self._events([self._partial])
        self._partial = ""
        if self.final is None:
            event = TrainingEvent("error", {"message": death_message(exit_code, self.log_path), "exit_code": exit_code})
            self.final = event
            events.append(event)
        return events

    def _events(self, lines: list[str]) -> list[TrainingEvent]:
        events = []
        for line in lines:
            event = parse_event(line) if line.strip() else None
            if event is None:
                continue
            if event.kind == "done":
                self.result = event.data.get("result")
            if event.final:
                self.final = event
            events.append(event)
        return events


# ----- starting the process -------------------------------------------------------------------
@dataclass
class JobLaunch:
    """How to start one ``python -m training.run`` process (a job, or the check before one)."""

    program: str
    arguments: list[str]
    environment: dict[str, str]
    working_dir: Path
    log_path: Path | None  # a job's stderr is appended here; None: the caller reads it (the check)

    @property
    def command(self) -> list[str]:
        return [self.program, *self.arguments]


def _launch(arguments: list[str], python: str | None, log_path: Path | None) -> JobLaunch:
    """``python -m training.run ARGUMENTS``, unbuffered so that every line arrives when it is
    written, with the project on the path."""
    environment = {**os.environ, "PYTHONUNBUFFERED": "1",
                   "PYTHONPATH": os.pathsep.join(filter(None, [str(PROJECT_ROOT), os.environ.get("PYTHONPATH")]))}
    return JobLaunch(python or sys.executable, ["-m", "training.run", *arguments], environment, PROJECT_ROOT,
                     log_path)


def job_launch(job_file: Path, resume: bool = False, python: str | None = None) -> JobLaunch:
    """The command of ``python -m training.run JOB.json [--resume]``; stderr to the job's log."""
    job_file = Path(job_file)
    return _launch([str(job_file)] + (["--resume"] if resume else []), python, job_file.parent / "stderr.log")


def check_launch(python: str | None = None) -> JobLaunch:
    """The command of ``python -m training.run --check`` (the job description on its stdin)."""
    return _launch(["--check"], python, None)


def check_job(job: dict, python: str | None = None, timeout: float = CHECK_TIMEOUT_S) -> dict:
    """What the training package's checks of ``job`` learnt (e.g. a translation memory's
    direction); raises :class:`TrainingJobError` with their message when they refuse it.

    They run in a short child, ``python -m training.run --check``, started like the job itself
    (:func:`check_launch`, the same interpreter), so the window's process never imports the
    training package and both processes hold one copy of each check. Blocks for the check's
    seconds: a worker thread or the CLI's main thread, never the GUI's."""
    launch = check_launch(python)
    try:
        done = subprocess.run(launch.command, input=json.dumps(job), capture_output=True, text=True,
                              encoding="utf-8", errors="replace", cwd=launch.working_dir, env=launch.environment,
                              timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        raise TrainingJobError(f"The check before the training job did not finish within {timeout:.0f} s; "
                               "nothing was started. Try again when the machine is less busy.") from exc
    except OSError as exc:
        raise TrainingJobError(f"The check before the training job could not start ({exc}).") from exc
    reply = None
    lines = done.stdout.strip().splitlines()
    if lines:
        try:
            reply = json.loads(lines[-1])
        except ValueError:
            pass
    if not isinstance(reply, dict) or "ok" not in reply:
        tail = _tail(done.stderr)
        raise TrainingJobError(f"The check before the training job exited with code {done.returncode} without "
                               "an answer; nothing was started." + (f"\n{tail}" if tail else ""))
    if not reply["ok"]:
        raise TrainingJobError(str(reply.get("message") or "The training job was refused by its check."))
    return dict(reply.get("info") or {})


class TrainingProcess:
    """A running ``python -m training.run`` started with :mod:`subprocess`; iterate
    :meth:`events` on a worker thread (or the CLI's main thread)."""

    def __init__(self, process: subprocess.Popen, job_file: Path, log_path: Path):
        self.process = process
        self.job_file = job_file
        self.log_path = log_path
        self.result: dict | None = None

    @classmethod
    def spawn(cls, python: str, job_file: Path, resume: bool = False) -> "TrainingProcess":
        launch = job_launch(job_file, resume, python)
        log = open(launch.log_path, "ab")
        try:
            process = subprocess.Popen(launch.command, cwd=launch.working_dir, stdin=subprocess.DEVNULL,
                                       stdout=subprocess.PIPE, stderr=log, env=launch.environment, text=True,
                                       encoding="utf-8", bufsize=1)
        finally:
            log.close()
        return cls(process, Path(job_file), launch.log_path)

    @property
    def pid(self) -> int:
        return self.process.pid

    def events(self) -> Iterator[TrainingEvent]:
        """Progress events until the job ends; the last one is always final (done/error/cancelled)."""
        reader = ProgressReader(self.log_path)
        assert self.process.stdout is not None
        for line in self.process.stdout:
            for event in reader.feed(line):
                self.result = reader.result
                yield event
        code = self.process.wait()
        self.process.stdout.close()
        yield from reader.finish(code)
        self.result = reader.result

    def cancel(self) -> None:
        """Ask the job to save and stop (SIGTERM); it ends with a ``cancelled`` event."""
        if self.process.poll() is None:
            try:
                self.process.send_signal(signal.SIGTERM)
            except ProcessLookupError:
                pass

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()

    def wait(self, timeout: float | None = None) -> int:
        return self.process.wait(timeout)


def job_process_ids(job_file: Path) -> list[int]:
    """Ids of the running ``python -m training.run`` processes (``torchrun`` and its workers too)
    of ``job_file``, started by anyone: a window keeps no record another process could read, so
    the process table is the one place that knows whether a job runs. A process whose command line
    cannot be read (another user's, one that just ended) is not this user's job."""
    import psutil  # a dependency of the app; imported when asked, like engine.settings does

    target = Path(job_file).resolve()
    found = []
    for process in psutil.process_iter(["cmdline"]):
        command = process.info.get("cmdline") or []
        if "training.run" not in command:
            continue
        for argument in command:
            if Path(argument).name != target.name:
                continue
            path = Path(argument)
            if not path.is_absolute():  # relative to where that process was started
                try:
                    path = Path(process.cwd()) / path
                except psutil.Error:
                    continue
            if path.resolve() == target:
                found.append(process.pid)
                break
    return found
