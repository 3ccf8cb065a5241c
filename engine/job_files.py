"""Training-job folders and their ``job.json``: one naming and one way to write, for the app
that prepares a job and the training process that runs it. Any thread, any process.

A job is a folder under ``<data>/training/runs``; ``job.json`` in it is what
``python -m training.run`` reads, and the job writes the settings it resolved back next to
its artefacts, so everything a run made sits beside the config that made it.
"""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

from engine.atomic import write_json_atomic

__all__ = ["JOB_FILE", "new_run_folder", "write_job_file"]

#: The job file's name in its folder.
JOB_FILE = "job.json"


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
