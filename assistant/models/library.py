"""The model library: which models the user has, what they are, which serves which task.

Runs on worker threads or the CLI's main thread (the store serialises writes). Model files
are validated here with the bounded header check only; llama.cpp opens them solely in the
engine worker.
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

from assistant.errors import LibraryError
from assistant.config import AppPaths
from assistant.store import Store
from engine import model_pack
from engine.gguf_check import MalformedModelError
from engine.library import ModelTooLargeError, check_fits, inspect_model

TASKS = ("chat", "translate", "classify", "complete", "embed")


@dataclass
class ModelRecord:
    id: str
    display_name: str
    path: str
    sha256: str
    size_bytes: int
    source: str
    metadata: dict
    licence_text: str
    added_at: float

    @classmethod
    def from_row(cls, row: dict) -> "ModelRecord":
        return cls(**{k: row.get(k) for k in cls.__dataclass_fields__})  # type: ignore[arg-type]

    @property
    def tasks(self) -> list[str]:
        return list(self.metadata.get("tasks") or [])

    @property
    def is_gguf(self) -> bool:
        return self.metadata.get("kind", "gguf") == "gguf"


def _slug(text: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return slug[:60] or "model"


class ModelLibrary:
    def __init__(self, store: Store, paths: AppPaths):
        self.store = store
        self.paths = paths

    # ----- default pack -----------------------------------------------------------------
    def sync_default_pack(self) -> list[ModelRecord]:
        """Join and register the installed default pack (idempotent, cheap when unchanged)."""
        ready = model_pack.prepare_pack(self.paths.models_dir)
        records = []
        for pack in model_pack.PACK:
            path = ready.get(pack.id)
            if path is None:
                continue
            existing = self.store.get_model(pack.id)
            stat = path.stat() if path.is_file() else None
            size = stat.st_size if stat else _folder_size(path)
            if existing and existing["path"] == str(path) and existing["size_bytes"] == size:
                licence = model_pack.licence_text(pack)
                if existing.get("licence_text") != licence:  # stored by a version that kept the web page
                    self.store.upsert_model({"id": pack.id, "licence_text": licence})
                    existing = self.store.get_model(pack.id)
                records.append(ModelRecord.from_row(existing))
                continue
            meta = model_pack.describe(pack)
            sha = ""
            if pack.kind == "gguf":
                inspection = inspect_model(path)
                meta.update(inspection.summary)
                sha = inspection.sha256 or ""
            else:
                meta.update(_hf_folder_summary(path))
            meta.pop("chat_template", None)  # large; the worker reads it from the file
            self.store.upsert_model({
                "id": pack.id,
                "display_name": pack.display_name,
                "path": str(path),
                "sha256": sha,
                "size_bytes": size,
                "source": "pack",
                "metadata": meta,
                "licence_text": model_pack.licence_text(pack),
                "added_at": existing["added_at"] if existing else time.time(),
            })
            records.append(ModelRecord.from_row(self.store.get_model(pack.id)))
        return records

    # ----- queries ----------------------------------------------------------------------
    def list(self) -> list[ModelRecord]:
        return [ModelRecord.from_row(r) for r in self.store.list_models()]

    def get(self, name: str) -> ModelRecord:
        """Find by id, then by a unique id prefix or display name (case-insensitive)."""
        row = self.store.get_model(name)
        if row:
            return ModelRecord.from_row(row)
        lowered = name.lower()
        matches = [m for m in self.list() if m.id.startswith(lowered) or lowered in m.display_name.lower()]
        if len(matches) == 1:
            return matches[0]
        if not matches:
            known = ", ".join(m.id for m in self.list()) or "none"
            raise LibraryError(f"No model called {name!r} in the library (installed: {known}).")
        raise LibraryError(f"{name!r} matches several models: {', '.join(m.id for m in matches)}; be more specific.")

    # ----- import and removal -----------------------------------------------------------
    def add(self, path: str | os.PathLike, n_ctx: int = 4096, free_memory: int | None = None) -> ModelRecord:
        """Validate and register a GGUF file from disk; the library is unchanged on error."""
        source = Path(path).expanduser()
        if not source.exists():
            raise LibraryError(f"{source} does not exist.")
        if source.is_dir():
            raise LibraryError(f"{source} is a folder; choose a .gguf model file.")
        source = source.resolve()
        try:
            inspection = inspect_model(source)
        except MalformedModelError as exc:
            raise LibraryError(f"{source.name} cannot be imported: {exc}") from exc
        except OSError as exc:
            raise LibraryError(f"{source} cannot be read: {exc.strerror or exc}") from exc
        summary = inspection.summary
        try:
            check_fits(summary.get("file_size") or source.stat().st_size, summary.get("kv_bytes_per_token", 0),
                       n_ctx, source.name, free=free_memory)
        except ModelTooLargeError as exc:
            raise LibraryError(str(exc)) from exc
        for record in self.list():
            if record.sha256 and record.sha256 == inspection.sha256:
                raise LibraryError(f"{source.name} is already in the library as {record.id}.")
        model_id = self._unique_id(_slug(summary.get("name") or source.stem))
        tasks = ["chat", "complete"] if summary.get("chat_template") else ["complete"]
        licence = summary.get("licence") or ""
        meta = dict(summary)
        meta.pop("chat_template", None)
        meta.update({"tasks": tasks, "kind": "gguf", "has_chat_template": bool(summary.get("chat_template"))})
        self.store.upsert_model({
            "id": model_id,
            "display_name": summary.get("name") or source.stem,
            "path": str(source),
            "sha256": inspection.sha256 or "",
            "size_bytes": source.stat().st_size,
            "source": "user",
            "metadata": meta,
            "licence_text": licence if isinstance(licence, str) else json.dumps(licence),
            "added_at": time.time(),
        })
        return self.get(model_id)

    def _unique_id(self, base: str) -> str:
        candidate, n = base, 2
        while self.store.get_model(candidate):
            candidate, n = f"{base}-{n}", n + 1
        return candidate

    def remove(self, model_id: str, delete_file: bool = False, confirmed: bool = False) -> ModelRecord:
        """Take a model out of the library; its file is deleted only with ``confirmed``."""
        record = self.get(model_id)
        if record.source == "pack":
            raise LibraryError(f"{record.id} is part of the default model pack and cannot be removed.")
        if delete_file and not confirmed:
            raise LibraryError(f"Deleting {record.path} from disk needs a second confirmation.")
        self.store.delete_model(record.id)
        if delete_file:
            try:
                os.unlink(record.path)
            except FileNotFoundError:
                pass
        for task, chosen in self.routes().items():
            if chosen == record.id:
                self.set_route(task, None)
        return record

    # ----- task routing -----------------------------------------------------------------
    def routes(self) -> dict[str, str]:
        return dict(self.store.get_setting("app", "task_routes", {}) or {})

    def set_route(self, task: str, model_id: str | None) -> None:
        if task not in TASKS:
            raise LibraryError(f"Unknown task {task!r}; tasks are {', '.join(TASKS)}.")
        routes = self.routes()
        if model_id is None:
            routes.pop(task, None)
        else:
            record = self.get(model_id)
            if not record.is_gguf and task != "embed":
                raise LibraryError(f"{record.id} cannot serve {task}.")
            routes[task] = record.id
        self.store.set_setting("app", "task_routes", routes)

    def for_task(self, task: str) -> ModelRecord:
        """The model that serves a task: the user's choice, else the best installed one."""
        chosen = self.routes().get(task)
        if chosen:
            try:
                return self.get(chosen)
            except LibraryError:
                pass
        candidates = [m for m in self.list() if task in m.tasks and (m.is_gguf or task == "embed")]
        # Pack models are the measured defaults for their tasks; then the newest import.
        candidates.sort(key=lambda m: (m.source != "pack", -(m.added_at or 0)))
        if not candidates:
            raise LibraryError(f"No installed model can {task}; add one with `assistant models add PATH`.")
        return candidates[0]


def _folder_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else 0


def _hf_folder_summary(path: Path) -> dict:
    config = path / "config.json"
    meta: dict = {"file_size": _folder_size(path)}
    if config.is_file():
        try:
            data = json.loads(config.read_text(encoding="utf-8"))
            meta.update({
                "architecture": data.get("model_type"),
                "embedding_length": data.get("hidden_size"),
                "block_count": data.get("num_hidden_layers"),
                "context_length": data.get("max_position_embeddings"),
                "quantization": "F32 (safetensors)",
            })
        except (OSError, ValueError):
            pass
    return meta
