"""Which LoRA adapter each task uses: the user's "use in chat" / "use for translation".

Qt-free; any thread (the store serialises writes). An adapter is a GGUF LoRA file written
by a training job for one base model; it is used only with that base (a chat model chosen
later that is another file gets no adapter, never a mismatched one). The engine switches
adapters per request without reloading the base, so choosing one costs nothing until the
next reply.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from assistant.errors import AdapterError

#: Tasks an adapter can be chosen for.
ADAPTER_TASKS = ("chat", "translate")
#: The store's settings scope for the choices.
SCOPE = "adapters"


@dataclass
class ActiveAdapter:
    task: str
    path: str  # the GGUF LoRA file
    base: str  # the GGUF base model it was trained for
    scale: float = 1.0  # how strongly it applies (1.0: as trained)

    def to_engine(self) -> dict:
        return {"path": self.path, "scale": self.scale}


def _same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.realpath(a) == os.path.realpath(b)


class ActiveAdapters:
    def __init__(self, store):
        self.store = store

    def get(self, task: str) -> ActiveAdapter | None:
        data = self.store.get_setting(SCOPE, task)
        if not data:
            return None
        try:
            return ActiveAdapter(**data)
        except TypeError:
            return None  # written by a newer version: ignore rather than fail every reply

    def set(self, task: str, path: str | Path, base: str | Path, scale: float = 1.0) -> ActiveAdapter:
        if task not in ADAPTER_TASKS:
            raise AdapterError(f"An adapter can be used for {' or '.join(ADAPTER_TASKS)}, not {task!r}.")
        path, base = Path(path), Path(base)
        if not path.is_file():
            raise AdapterError(f"The adapter file {path} does not exist (was the training run deleted?).")
        if not base.is_file():
            raise AdapterError(f"The adapter was trained for {base.name}, which is no longer installed.")
        if not 0.0 <= float(scale) <= 2.0:
            raise AdapterError("The adapter strength must be between 0 and 2.")
        active = ActiveAdapter(task, str(path.resolve()), str(base.resolve()), float(scale))
        self.store.set_setting(SCOPE, task, asdict(active))
        return active

    def clear(self, task: str) -> None:
        self.store.set_setting(SCOPE, task, None)

    def for_model(self, task: str, model_path: str) -> list[dict]:
        """The engine's ``adapters`` for ``task`` with ``model_path`` as base: the chosen one
        if it was trained for that very file and still exists, else none."""
        active = self.get(task)
        if active is None or not os.path.isfile(active.path) or not _same_file(active.base, model_path):
            return []
        return [active.to_engine()]
