"""Entry point of a training job: ``python -m training.run JOB.json [--resume]``.

This module *is* the training process's main thread. It reads the job file, installs the
SIGTERM/SIGINT handler (which only sets ``reporter.stop_requested``; the job saves a
checkpoint at its next step boundary and raises ``JobCancelled``), dispatches on
``job["kind"]`` to the ``run_job(job, reporter)`` of that kind's job module (:data:`KINDS`:
``training.<method>.job``) and reports the outcome as the last JSON line:

  {"event": "done", "result": {...}}     exit 0
  {"event": "error", "message": "..."}   exit 2 (the message is for the user; a traceback,
                                          if the error was unexpected, goes to stderr)
  {"event": "cancelled", "step": N}      exit 3 (resume with --resume)

The same command runs under ``torchrun --nproc_per_node N -m training.run JOB.json``; only
rank 0 writes progress lines and artefacts.

Before that last line, rank 0 shreds the copies of the user's text the job's folders hold
(:func:`engine.job_files.forget_job_texts`: the documents the app copied for it, a distillation's
teacher-written continuations of them) unless the job can still be resumed: a finished job never
needs them again, nor does one that failed or was stopped before its first checkpoint (the app
starts such a job afresh, in a new folder). A job stopped or failed after a checkpoint keeps them
for ``--resume``; a job killed outright (SIGKILL, power cut) cannot clean up and keeps them too,
until it is resumed to its end or the user gives it up (``TrainingJobs.abandon`` in the app).

``python -m training.run --check`` is the short process the app starts before it keeps a job
folder (the window's process never imports this package): it reads a job description as JSON
on stdin, runs the ``preflight(job)`` of that kind's job module (the same checks the job makes
before it starts: settings, data, architecture, memory, disk), loads no model, and writes one
line:

  {"ok": true, "info": {...}}             exit 0 (what the checks learnt, e.g. a translation
                                          memory's direction)
  {"ok": false, "message": "..."}         exit 2 (the message is for the user)
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import signal
import sys
import traceback
from pathlib import Path

# Before anything imports transformers/huggingface_hub: offline, no telemetry, no sockets.
from engine import privacy

privacy.install()

from engine.job_files import forget_job_texts, has_checkpoint  # noqa: E402
from engine.partial_files import sweep_stale_partials  # noqa: E402
from training.progress import JobCancelled, ProgressReporter  # noqa: E402

EXIT_OK, EXIT_ERROR, EXIT_CANCELLED = 0, 2, 3
#: Job kind (as job files name it) -> the module whose ``run_job`` runs it. "quantize_lab" is
#: the name the app has always written for the quantization lab.
KINDS = {
    "lora": "training.lora.job",
    "distill": "training.distill.job",
    "prune": "training.distill.job",  # cut, then healed by distillation (see training/prune/job.py)
    "quantize_lab": "training.quantize.job",
    "sentiment_student": "training.sentiment_student.job",
}


class JobFileError(ValueError):
    """The job file is missing, unreadable or incomplete."""


def read_job(path: Path) -> dict:
    path = Path(path)
    try:
        job = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise JobFileError(f"The job file {path} does not exist.") from exc
    except (OSError, ValueError) as exc:
        raise JobFileError(f"The job file {path} cannot be read: {exc}") from exc
    return _known_kind(job, f"The job file {path.name}")


def _known_kind(job: object, what: str) -> dict:
    if not isinstance(job, dict) or not isinstance(job.get("kind"), str) or job["kind"] not in KINDS:
        raise JobFileError(f"{what} must be an object with kind one of {', '.join(KINDS)}.")
    return job


def _user_errors() -> tuple[type[BaseException], ...]:
    """Exception types whose message is written for the user (no traceback needed)."""
    errors: list[type[BaseException]] = [JobFileError, ValueError, MemoryError, OSError]
    for module, name in (("training.datasets", "DatasetError"), ("training.base_model", "BaseModelError"),
                         ("training.resources", "ResourceError"), ("training.export.common", "ExportError"),
                         ("training.export.lora_gguf", "ExportError")):
        try:
            errors.append(getattr(importlib.import_module(module), name))
        except (ImportError, AttributeError):
            pass
    return tuple(errors)


def check(text: str) -> dict:
    """The ``--check`` reply for the job description ``text`` (see the module docstring)."""
    try:
        try:
            job = json.loads(text)
        except ValueError as exc:
            raise JobFileError(f"The job description cannot be read: {exc}") from exc
        job = _known_kind(job, "The job description")
        preflight = getattr(importlib.import_module(KINDS[job["kind"]]), "preflight", None)
        # A kind without a preflight checks everything when it starts.
        info = preflight(job) if preflight is not None else {}
    except _user_errors() as exc:
        return {"ok": False, "message": str(exc) or type(exc).__name__}
    except Exception as exc:  # a bug: the app shows one line, the traceback goes to stderr
        traceback.print_exc()
        return {"ok": False, "message": f"The job could not be checked ({type(exc).__name__}: {exc})."}
    return {"ok": True, "info": info}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.run", description=__doc__.splitlines()[0])
    parser.add_argument("job", type=Path, nargs="?", help="job file (JSON)")
    parser.add_argument("--resume", action="store_true", help="continue from the job's last checkpoint")
    parser.add_argument("--check", action="store_true",
                        help="check the job description on stdin before it starts; one JSON line on stdout")
    args = parser.parse_args(argv)
    if args.check:
        # Libraries may print; the reply must be the only line on stdout.
        with contextlib.redirect_stdout(sys.stderr):
            reply = check(sys.stdin.read())
        print(json.dumps(reply, default=str), flush=True)
        return EXIT_OK if reply["ok"] else EXIT_ERROR
    if args.job is None:
        parser.error("a job file is needed (or --check with the job on stdin)")

    rank = int(os.environ.get("RANK", 0))
    reporter = ProgressReporter(sys.stdout, rank=rank)
    signal.signal(signal.SIGTERM, reporter.request_stop)
    signal.signal(signal.SIGINT, reporter.request_stop)
    job = None
    try:
        job = read_job(args.job)
        if args.resume:
            job["resume"] = True
        if job.get("output_dir"):
            # A run killed earlier may have left a half-written adapter or model there.
            sweep_stale_partials(job["output_dir"])
        module = importlib.import_module(KINDS[job["kind"]])
        result = module.run_job(job, reporter)
    except JobCancelled as exc:
        _forget_texts(job, rank, finished=False)
        reporter.emit("cancelled", step=exc.args[0] if exc.args else None)
        return EXIT_CANCELLED
    except _user_errors() as exc:
        if not isinstance(exc, JobFileError):
            traceback.print_exc()  # stderr is the job's log; the user sees the message line
        _forget_texts(job, rank, finished=False)
        reporter.emit("error", message=str(exc) or type(exc).__name__, type=type(exc).__name__)
        return EXIT_ERROR
    except Exception as exc:  # a bug: the user gets one line, the log gets the traceback
        traceback.print_exc()
        _forget_texts(job, rank, finished=False)
        reporter.emit("error", message=f"The training job failed unexpectedly ({type(exc).__name__}: {exc}).",
                      type=type(exc).__name__)
        return EXIT_ERROR
    _forget_texts(job, rank, finished=True)
    reporter.emit("done", result=result)
    return EXIT_OK


def _forget_texts(job: dict | None, rank: int, finished: bool) -> None:
    """Shred the job's copies of the user's text unless it can still be resumed (see the module
    docstring); before the final line, so that a follower who reads it finds them gone. Rank 0
    only: the ranks share the folder. A failure to shred is logged (the path, never the text) and
    does not change the job's outcome."""
    if job is None or rank != 0:
        return
    if not finished and job.get("output_dir") and has_checkpoint(job["output_dir"]):
        return  # --resume reads them again
    try:
        forget_job_texts(job)
    except OSError as exc:
        print(f"Could not shred the job's copy of the text: {exc}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
