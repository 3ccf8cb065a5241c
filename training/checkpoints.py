"""What every resumable training method shares: the device, the learning-rate schedule, RNG
state, and checkpoints that a kill at any moment cannot leave half written.

Runs in the training process (``python -m training.run``) on its main thread; under
``torchrun`` only rank 0 calls :func:`publish_checkpoint`.

A checkpoint is a folder ``<root>/step-NNNNNNN``. It is written under a hidden temporary
name, every file in it is fsynced, then it is renamed into place and the pointer file
``<root>/latest`` (the folder's name) is replaced atomically. A reader that follows the
pointer therefore finds either the previous checkpoint or the new one, whole.
"""

from __future__ import annotations

import json
import math
import random
import shutil
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from engine.atomic import atomic_dir, atomic_write_text

__all__ = [
    "KEEP_CHECKPOINTS",
    "latest_checkpoint",
    "publish_checkpoint",
    "resolve_device",
    "restore_rng",
    "rng_state",
    "warmup_cosine",
]

#: Checkpoints kept (older ones are deleted once a new one is in place).
KEEP_CHECKPOINTS = 2
#: The pointer to the newest checkpoint. Distillation runs before 2026-11-24 wrote
#: ``latest.json`` ({"checkpoint": name}); it is still read so that such a run can resume.
_POINTER = "latest"
_OLD_POINTER = "latest.json"


def resolve_device(name: str) -> torch.device:
    """The job's ``device`` setting as a torch device: "auto" is CUDA when present, else CPU;
    a CUDA device asked for on a machine without one is a clear error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("The job asks for CUDA, but no CUDA device is available; use device 'auto' or 'cpu'.")
    return torch.device(name)


def warmup_cosine(optimizer: torch.optim.Optimizer, total_steps: int, warmup_steps: int,
                  kind: str = "cosine") -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up, then (``kind="cosine"``) cosine decay to 10 % of the rate at
    ``total_steps``, or (``"constant"``) the full rate. The warm-up is cut to leave at least
    one step at the full rate, so a run shorter than its warm-up still reaches it."""
    warmup = min(warmup_steps, max(0, total_steps - 1))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        if kind == "constant":
            return 1.0
        progress = (step - warmup) / max(1, total_steps - warmup)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def rng_state() -> dict[str, Any]:
    """Every random generator a training step draws from, to be saved in a checkpoint."""
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}


def restore_rng(state: dict[str, Any]) -> None:
    """Put back what :func:`rng_state` saved (a CUDA state only where CUDA is present)."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def publish_checkpoint(root: Path, step: int, write: Callable[[Path], None]) -> Path:
    """Create ``root/step-NNNNNNN`` whole: ``write(folder)`` fills a temporary folder, which
    is fsynced and renamed into place; then ``latest`` names it and checkpoints beyond the
    newest :data:`KEEP_CHECKPOINTS` are deleted. On any error nothing is left behind and the
    previous checkpoint stays the latest."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    name = f"step-{step:07d}"
    final = root / name
    with atomic_dir(final) as tmp:
        write(tmp)
    atomic_write_text(root / _POINTER, name)
    (root / _OLD_POINTER).unlink(missing_ok=True)
    for old in sorted(p for p in root.glob("step-*") if p.is_dir())[:-KEEP_CHECKPOINTS]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def latest_checkpoint(root: Path) -> Path | None:
    """The newest whole checkpoint under ``root`` (one with its ``state.pt``), or None."""
    root = Path(root)
    pointer, old_pointer = root / _POINTER, root / _OLD_POINTER
    if pointer.is_file():
        name = pointer.read_text(encoding="utf-8").strip()
    elif old_pointer.is_file():
        name = json.loads(old_pointer.read_text(encoding="utf-8"))["checkpoint"]
    else:
        return None
    path = root / name
    return path if (path / "state.pt").is_file() else None
