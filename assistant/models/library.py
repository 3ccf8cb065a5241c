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

from assistant.chat.reasoning import template_flags
from assistant.errors import LibraryError
from assistant.config import AppPaths
from assistant.models.discovery import FOLDERS_SETTING, SOURCE_LABELS, split_parts
from assistant.store import Store
from engine import model_pack
from engine.gguf_check import MalformedModelError, check_gguf
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
    linked_from: str | None = None  # the tool whose file this is (discovery.SOURCE_LABELS), None if imported
    link_name: str | None = None  # what that tool calls it
    missing: bool = False  # the file (or one part of it) was not on disk when the record was read

    @classmethod
    def from_row(cls, row: dict) -> "ModelRecord":
        record = cls(**{k: row.get(k) for k in cls.__dataclass_fields__ if k != "missing"})  # type: ignore[arg-type]
        # A stat per part, on the worker or CLI thread that reads the library.
        record.missing = not all(os.path.exists(p) for p in split_parts(record.path))
        return record

    @property
    def linked_from_label(self) -> str | None:
        return SOURCE_LABELS.get(self.linked_from, self.linked_from) if self.linked_from else None

    def missing_message(self) -> str:
        """One sentence saying which file is gone and what the user can do."""
        where = f" ({self.linked_from_label}: {self.link_name})" if self.linked_from else ""
        return (f"{self.display_name} is missing: its file {self.path}{where} is no longer there. "
                "Locate the file again or remove the model from the list.")

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
            # Large; the worker reads it from the file. Whether the model reasons is read once here.
            meta.update(template_flags(meta.pop("chat_template", None)))
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
        source = self._checked_path(path)
        record = self._described(source, n_ctx, free_memory)
        for existing in self.list():
            if existing.sha256 and existing.sha256 == record["sha256"]:
                raise LibraryError(f"{source.name} is already in the library as {existing.id}.")
        record.update({"id": self._unique_id(_slug(record["display_name"])), "source": "user", "added_at": time.time()})
        self.store.upsert_model(record)
        return self.get(record["id"])

    def link(self, path: str | os.PathLike, linked_from: str, link_name: str, n_ctx: int = 4096,
             free_memory: int | None = None, recommended_sampling: dict | None = None) -> ModelRecord:
        """Record a model another tool keeps (found by discovery) where it is: the file is never
        copied, moved or changed. The same header check and metadata as :meth:`add`; a split
        model is linked by its first part and every part is checked. Linking a file already in
        the library returns its record. ``recommended_sampling``: the sampling that tool runs the
        model with (an Ollama manifest's parameters), kept over the file's own recommendation."""
        source = self._checked_path(path, resolve=False)
        known = self.store.find_model_by_path(str(source))
        if known:
            return ModelRecord.from_row(known)
        record = self._described(source, n_ctx, free_memory)
        for existing in self.list():
            if existing.sha256 and existing.sha256 == record["sha256"]:
                return existing  # the same file under another path (a hard link, a copy)
        record.update({"id": self._unique_id(_slug(record["display_name"])), "source": "user",
                       "added_at": time.time(), "linked_from": linked_from, "link_name": link_name})
        if recommended_sampling:
            meta = record["metadata"]
            meta["recommended_sampling"] = {**(meta.get("recommended_sampling") or {}), **recommended_sampling}
        self.store.upsert_model(record)
        return self.get(record["id"])

    def locate(self, model_id: str, path: str | os.PathLike, n_ctx: int = 4096,
               free_memory: int | None = None) -> ModelRecord:
        """Point a model whose file went missing (or moved) at ``path``, after the same checks as
        an import; its id, name, task choices and settings stay."""
        record = self.get(model_id)
        if record.source == "pack":
            raise LibraryError(f"{record.id} is part of the default model pack; it is found by the app itself.")
        source = self._checked_path(path, resolve=record.linked_from is None)
        other = self.store.find_model_by_path(str(source))
        if other and other["id"] != record.id:
            raise LibraryError(f"{source.name} is already in the library as {other['id']}.")
        described = self._described(source, n_ctx, free_memory)
        described.pop("display_name")
        self.store.upsert_model({"id": record.id, **described})
        return self.get(record.id)

    @staticmethod
    def _checked_path(path: str | os.PathLike, resolve: bool = True) -> Path:
        """An absolute path to an existing file. Linked split models keep their own name (a
        Hugging Face snapshot link names the part; the blob it resolves to does not)."""
        source = Path(path).expanduser()
        if not source.exists():
            raise LibraryError(f"{source} does not exist.")
        if source.is_dir():
            raise LibraryError(f"{source} is a folder; choose a .gguf model file.")
        return source.resolve() if resolve else source.absolute()

    @staticmethod
    def _described(source: Path, n_ctx: int, free_memory: int | None) -> dict:
        """The record fields of a checked model file (every part of a split one); LibraryError
        with one clear sentence when it is malformed, unreadable or too large for this machine."""
        parts = split_parts(source)
        missing = [p.name for p in parts if not p.is_file()]
        if missing:
            raise LibraryError(f"{source.name} is part 1 of a model in {len(parts)} files, but "
                               f"{', '.join(missing)} {'is' if len(missing) == 1 else 'are'} missing.")
        try:
            inspection = inspect_model(source)
            headers = [check_gguf(p, split_part=True) for p in parts[1:]]
        except MalformedModelError as exc:
            raise LibraryError(f"{source.name} cannot be imported: {exc}") from exc
        except OSError as exc:
            raise LibraryError(f"{source} cannot be read: {exc.strerror or exc}") from exc
        summary = dict(inspection.summary)
        size = sum(p.stat().st_size for p in parts)
        if headers:  # the first part's header describes the model; the weights are spread over all
            summary["parameter_count"] = (summary.get("parameter_count") or 0) + sum(
                t.n_elements for h in headers for t in h.tensors)
            summary["file_size"] = size
            summary["split_parts"] = len(parts)
        try:
            check_fits(size, summary.get("kv_bytes_per_token", 0), n_ctx, source.name, free=free_memory,
                       n_vocab=summary.get("vocab_size"), n_embd=summary.get("embedding_length"),
                       trained=summary.get("context_length"))
        except ModelTooLargeError as exc:
            raise LibraryError(str(exc)) from exc
        tasks = ["chat", "complete"] if summary.get("chat_template") else ["complete"]
        licence = summary.get("licence") or ""
        meta = dict(summary)
        meta.update(template_flags(meta.pop("chat_template", None)))  # a reasoning model, read once here
        meta.update({"tasks": tasks, "kind": "gguf", "has_chat_template": bool(summary.get("chat_template"))})
        return {
            "display_name": summary.get("name") or source.stem,
            "path": str(source),
            "sha256": inspection.sha256 or "",
            "size_bytes": size,
            "metadata": meta,
            "licence_text": licence if isinstance(licence, str) else json.dumps(licence),
        }

    # ----- folders the user added for discovery -----------------------------------------
    def model_folders(self) -> list[str]:
        return list(self.store.get_setting("app", FOLDERS_SETTING, []) or [])

    def add_model_folder(self, folder: str | os.PathLike) -> list[str]:
        path = Path(folder).expanduser()
        if not path.is_dir():
            raise LibraryError(f"{path} is not a folder.")
        folders = self.model_folders()
        if str(path.resolve()) not in folders:
            folders.append(str(path.resolve()))
            self.store.set_setting("app", FOLDERS_SETTING, folders)
        return folders

    def remove_model_folder(self, folder: str) -> list[str]:
        folders = [f for f in self.model_folders() if f != folder]
        self.store.set_setting("app", FOLDERS_SETTING, folders)
        return folders

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
        if delete_file and record.linked_from:
            raise LibraryError(f"{record.path} belongs to {record.linked_from_label}, so this app does not delete it; "
                               f"remove it from the list here and delete it in {record.linked_from_label}.")
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
                record = self.get(chosen)
            except LibraryError:
                record = None
            if record is not None and record.missing:
                raise LibraryError(record.missing_message())
            if record is not None:
                return record
        candidates = [m for m in self.list() if task in m.tasks and (m.is_gguf or task == "embed") and not m.missing]
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
