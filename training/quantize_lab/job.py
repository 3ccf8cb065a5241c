"""``training.run`` dispatches kind "quantize_lab" here; the job is :mod:`training.quantize.job`."""

from training.quantize.job import run_job

__all__ = ["run_job"]
