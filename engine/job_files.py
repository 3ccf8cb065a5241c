"""Training-job folders and their ``job.json``: one naming and one way to write, for the app
that prepares a job and the training process that runs it. Any thread, any process.

A job is a folder under ``<data>/training/runs``; ``job.json`` in it is what
``python -m training.run`` reads, and the job writes the settings it resolved back next to
its artefacts, so everything a run made sits beside the config that made it.

The user's text in a job folder (issue 24): the app copies what a job trains on into the folder
(the documents, a sentiment student's labelled texts) and names those copies in the job
(:data:`TEXT_COPIES`); a distillation caches its teacher's continuations of that text there. They
are kept exactly as long as the job may still need them: the training process shreds them when
the job ends and cannot be resumed (:func:`forget_job_texts`), and the app shreds those of a
stopped job the user gives up (``assistant.train.jobs.TrainingJobs.abandon``).
"""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

from engine.atomic import write_json_atomic
from engine.shred import shred_file

__all__ = ["JOB_FILE", "RESULT_TEXT_KEYS", "TEXT_COPIES", "TEXT_FILES", "forget_job_texts", "has_checkpoint",
           "new_run_folder", "shred_job_texts", "without_texts", "write_job_file"]

#: The job file's name in its folder.
JOB_FILE = "job.json"
#: Job key: the files the app copied for the job that hold the user's text (paths).
TEXT_COPIES = "text_copies"
#: Names of the files in a job folder that hold the user's text: the app's copy of the documents a
#: job trains on, a sentiment student's texts with the teacher's labels, a distillation's cache of
#: the teacher's continuations of the user's text (so that a resumed job need not write them again),
#: and the held-out texts every job kept next to its results before issue 24.
TEXT_FILES = ("documents.jsonl", "labels.jsonl", "teacher_texts.jsonl", "held_out.jsonl")
#: Keys of a job's result that hold text (the start of a held-out document and the model's
#: continuations of it): the window shows them from the ``done`` line; result files on the disk
#: leave them out (:func:`without_texts`).
RESULT_TEXT_KEYS = ("sample_prompt", "sample_before", "sample_after")


def new_run_folder(runs_dir: str | os.PathLike, name: str) -> Path:
    """Create and return ``runs_dir/<YYYYmmdd-HHMMSS>-<name>-<6 hex>``: names sort by start
    time, and two jobs started in the same second never share a folder."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    folder = Path(runs_dir) / f"{stamp}-{name}-{uuid.uuid4().hex[:6]}"
    folder.mkdir(parents=True)
    return folder


def write_job_file(folder: str | os.PathLike, job: dict, name: str = JOB_FILE) -> Path:
    """Write ``job`` as ``folder/name`` (indented JSON) atomically and return its path."""
    path = Path(folder) / name
    write_json_atomic(path, job)
    return path


def has_checkpoint(folder: str | os.PathLike) -> bool:
    """Whether a job folder holds a checkpoint to resume from (fine-tune or distillation)."""
    checkpoints = Path(folder) / "checkpoints"
    # latest.json: the pointer distillation runs wrote before training/checkpoints.py.
    return (checkpoints / "latest").is_file() or (checkpoints / "latest.json").is_file()


def _shred_all(paths, keep: tuple[str | os.PathLike, ...]) -> list[Path]:
    kept = {Path(p).resolve() for p in keep}
    removed = []
    for path in map(Path, paths):
        if path.is_file() and path.resolve() not in kept:
            shred_file(path)
            removed.append(path)
    return removed


def shred_job_texts(folder: str | os.PathLike, keep: tuple[str | os.PathLike, ...] = ()) -> list[Path]:
    """Shred the files named in :data:`TEXT_FILES` in ``folder`` (a job folder of the app's, never
    the user's own), except those in ``keep``; returns the ones removed."""
    return _shred_all([Path(folder) / name for name in TEXT_FILES], keep)


def forget_job_texts(job: dict) -> list[Path]:
    """Shred every copy of the user's text a job's folders hold: the files the app copied for it
    (:data:`TEXT_COPIES`) and those of :data:`TEXT_FILES` in its output folder, but never the file a
    caller asked the held-out texts to be kept in (``held_out_path``: a benchmark on a public
    corpus; the app never asks). Returns the files removed. Rank 0 of the job's process, when the
    job ends and cannot be resumed."""
    output = [Path(job["output_dir"]) / name for name in TEXT_FILES] if job.get("output_dir") else []
    keep = (job["held_out_path"],) if job.get("held_out_path") else ()
    return _shred_all([*(job.get(TEXT_COPIES) or []), *output], keep)


def without_texts(result: dict) -> dict:
    """``result`` without :data:`RESULT_TEXT_KEYS`: what a result file keeps on the disk."""
    return {key: value for key, value in result.items() if key not in RESULT_TEXT_KEYS}
