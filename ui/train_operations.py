"""Small operations the Train pane calls; each runs on a worker thread of :class:`ui.jobs.Jobs`.

Qt-free; core modules are imported inside the functions, when the page first asks, so that
opening the window stays fast. The ``prepare_*`` operations have the job checked (in a short
``python -m training.run --check`` child) and written, and return its
:class:`assistant.train.jobs.JobSpec`: the pane starts the process itself
(:class:`ui.train_process.JobProcess`), so no worker thread waits on it while it runs.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from assistant.app import Services

#: Architectures the trainer and the GGUF exporters support.
TRAINABLE_ARCHITECTURES = ("llama", "gemma3")


@dataclass
class TrainView:
    collections: list = field(default_factory=list)  # {"name", "files", "chunks"}
    models: list = field(default_factory=list)  # {"label", "path", "architecture"}
    runs: list = field(default_factory=list)  # {"label", "folder", "result", "resumable"}


def _jobs(services: "Services"):
    from assistant.train.jobs import TrainingJobs

    return TrainingJobs(services.paths, services.store)


def _run_label(run: dict) -> str:
    job = run.get("job") or {}
    when = time.strftime("%d %b %H:%M", time.localtime(float(job.get("created_at") or 0)))
    dataset = job.get("dataset") or {}
    what = ", ".join(dataset.get("collections") or []) or Path(str(dataset.get("path", ""))).name
    base = Path(str(job.get("base_gguf") or job.get("teacher_gguf") or "")).name
    if job.get("kind") == "distill":
        base = f"smaller copy of {base}"
    result = run.get("result")
    if result:
        state = "finished"
    elif run.get("resumable"):
        state = "stopped, can resume"
    else:
        state = "not finished"
    return f"{when} · {job.get('preset', '')} · {what} · {base} · {state}"


def train_view(services: "Services") -> TrainView:
    from assistant.documents.collections import Documents

    collections = [c for c in Documents(services.store, None).collections() if c["chunks"]]
    models = []
    for record in services.library.list():
        architecture = str((record.metadata or {}).get("architecture") or "")
        if architecture in TRAINABLE_ARCHITECTURES and str(record.path).endswith(".gguf"):
            models.append({"label": record.display_name, "path": record.path, "architecture": architecture})
    runs = [{**run, "label": _run_label(run)} for run in _jobs(services).runs()]
    return TrainView(collections, models, runs)


def prepare_documents_job(services: "Services", collections: list[str], model_path: str, preset: str,
                          settings: dict | None = None):
    """Check and prepare a job on the collections' text; the pane starts its process."""
    return _jobs(services).prepare_documents(collections, Path(model_path), preset, settings)


def prepare_translation_job(services: "Services", memory_file: str, model_path: str, preset: str,
                            settings: dict | None = None):
    return _jobs(services).prepare_translation(Path(memory_file), Path(model_path), preset_name=preset,
                                               settings=settings)


def prepare_distill_job(services: "Services", collections: list[str], model_path: str, preset: str,
                        settings: dict | None = None):
    """Check and prepare a smaller copy of the model (prune + distil); the pane starts its process."""
    return _jobs(services).prepare_distill(collections, Path(model_path), preset, settings)


def add_to_library(services: "Services", path: str):
    """Put a finished student into the model library (checked and hashed there); pool thread."""
    return services.library.add(Path(path))


def resume_job(services: "Services", folder: str):
    """The stopped job in ``folder``, checked to have a checkpoint; the pane restarts its process."""
    return _jobs(services).resumable(Path(folder))


def discard_job(services: "Services", folder: str) -> None:
    """Give up the stopped job in ``folder``: its copies of the user's text shredded, its folder
    removed; the core refuses a running or finished job. Pool thread (shredding writes the files
    over)."""
    _jobs(services).abandon(Path(folder))


def with_job(result: dict | None, job: dict) -> dict | None:
    """The job's result with the base model it was trained for (from its job.json)."""
    if not result:
        return result
    return {**result, "base_gguf": job.get("base_gguf", ""), "kind": job.get("kind", "lora")}


def activate_adapter(services: "Services", task: str, adapter_path: str, base_path: str) -> None:
    """Use the adapter for ``task`` from the next reply on; the engine checks it fits first."""
    from assistant.models.adapters import ActiveAdapters

    services.engine.load_adapter(base_path, adapter_path, timeout=120)
    ActiveAdapters(services.store).set(task, adapter_path, base_path)
