"""The "prune" job kind: cut a student out of the teacher, then heal it by distillation.

Runs in the training process, main thread. The job file is a "distill" job without a
``student_gguf`` (see :mod:`training.distill.job`, which cuts the student through
:mod:`training.student`); ``prune`` holds the PruneConfig settings
(default: half the layers, chosen by measured importance) and ``settings`` the distillation
that heals the cut (``max_steps: 0`` with ``epochs: 0`` would skip healing; the default heals
one pass over the documents).
"""

from __future__ import annotations

from training.distill.job import run_job as _distill
from training.progress import ProgressReporter
from training.student import DistillError


def run_job(job: dict, reporter: ProgressReporter) -> dict:
    if job.get("student_gguf"):
        raise DistillError("A prune job makes its student from the teacher; use a distill job to teach an "
                           "installed student model.")
    return _distill({**job, "prune": dict(job.get("prune") or {})}, reporter)
