"""The "prune" job kind: cut a student out of the teacher, then heal it by distillation.

Runs in the training process, main thread. ``training.run`` runs this kind with the distillation
job (:mod:`training.distill.job`): healing a cut student *is* distillation, and a distillation
job without a ``student_gguf`` already cuts its student from the teacher (through
:mod:`training.student` and this folder's trainer). What belongs to the prune kind alone is
here: :func:`as_distill_job` checks the job and turns it into that distillation job. So
distillation imports pruning, never the other way round.

The job file is a "distill" job without a ``student_gguf``; ``prune`` holds the PruneConfig
settings (default: half the layers, chosen by measured importance) and ``settings`` the
distillation that heals the cut (``max_steps: 0`` with ``epochs: 0`` would skip healing; the
default heals one pass over the documents).
"""

from __future__ import annotations


class PruneError(ValueError):
    """A prune job that cannot run; the message is for the user."""


def as_distill_job(job: dict) -> dict:
    """The distillation job that runs a "prune" job: the student cut from the teacher."""
    if job.get("student_gguf"):
        raise PruneError("A prune job makes its student from the teacher; use a distill job to teach an "
                         "installed student model.")
    return {**job, "prune": dict(job.get("prune") or {})}
