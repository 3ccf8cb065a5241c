"""Training jobs as the app sees them: prepare, check, start, follow, cancel, resume.

Qt-free core under the Train pane (and usable from the CLI), free of the ``training`` package:
the work runs in its own process, ``python -m training.run JOB.json`` (torch never enters the
GUI process). This module gathers the job's data (the store's documents), writes the job folder
and, before it keeps that folder, has the training package check that the job can work
(settings, data, architecture, memory, disk) in a short child, ``python -m training.run --check``
(:func:`assistant.train.process.check_job`): the same ``preflight`` the job runs again when it
starts, so there is one copy of each check and its message. A refusal raises
:class:`TrainingJobError` with that message and leaves no folder behind. Starting and following
the process is :mod:`assistant.train.process`: :meth:`TrainingJobs.start` spawns it with
subprocess for the CLI; the window starts the prepared job file with QProcess
(``ui/train_process.py``).

The copy of the user's text a job reads (``documents.jsonl`` in its folder, named in the job's
``text_copies``) lives only as long as the job may need it: the training process shreds it when the
job ends and cannot be resumed (see ``training/run.py``), :meth:`TrainingJobs.abandon` when the
user gives up (discards) a stopped job, with the rest of its folder, and a refused job's folder is
shredded whole.

Threading: :meth:`TrainingJobs.prepare_documents` and the other ``prepare_*`` read the database,
write files and wait for the check child (seconds): call them from a worker thread (the
window's pool), never the GUI thread.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from assistant.config import AppPaths
from assistant.errors import TrainingJobError
# The process and its progress lines live in assistant.train.process, which the window imports
# without the training package; they are named here too for the callers of this module.
from assistant.train.process import (  # noqa: F401
    StepEvent,
    TrainingEvent,
    TrainingProcess,
    check_job,
    job_launch,
    job_process_ids,
    parse_event,
)
from engine.atomic import atomic_write, write_json_atomic
from engine.job_files import (JOB_FILE, TEXT_COPIES, forget_job_texts, has_checkpoint, new_run_folder, shred_job_texts,
                              without_texts, write_job_file)
from engine.shred import shred_tree, shredding_replaced

#: The job folder's copy of the documents a job trains on (one {"title", "text"} per line).
DOCUMENTS_FILE = "documents.jsonl"
#: The files a job writes when it finishes: a fine-tune's result.json, a distillation's distill.json.
RESULT_FILES = ("result.json", "distill.json")


# ----- documents from the store -------------------------------------------------------------
def _merge_chunks(chunks: list[str]) -> str:
    """A file's text from its stored chunks: each chunk repeats the last paragraphs of the one
    before (retrieval overlap), which training must not see twice."""
    pieces: list[str] = []
    for chunk in chunks:
        parts = chunk.split("\n\n")
        overlap = 0
        for k in range(min(len(parts), len(pieces)), 0, -1):
            if pieces[-k:] == parts[:k]:
                overlap = k
                break
        pieces.extend(parts[overlap:])
    return "\n\n".join(pieces)


def collection_documents(store, collections: list[str]) -> list[dict]:
    """[{"title", "text"}] of every indexed file in ``collections`` (names), in path order."""
    if not collections:
        raise TrainingJobError("Choose at least one document collection to train on.")
    with store.reading() as conn:
        known = {r[0]: r[1] for r in conn.execute("SELECT name, n FROM doc_collections")}
        missing = [c for c in collections if c not in known]
        if missing:
            raise TrainingJobError(f"No document collection called {', '.join(map(repr, missing))} "
                                   f"(collections: {', '.join(sorted(known)) or 'none'}).")
        ids = [known[c] for c in collections]
        marks = ",".join("?" * len(ids))
        files = conn.execute(f"SELECT n, title, path FROM doc_files WHERE collection_n IN ({marks}) "
                             f"AND status = 'indexed' ORDER BY path", ids).fetchall()
        docs = []
        for file_n, title, path in files:
            chunks = [r[0] for r in conn.execute("SELECT text FROM doc_chunks WHERE file_n = ? ORDER BY ordinal",
                                                 (file_n,))]
            text = _merge_chunks(chunks)
            if text.strip():
                docs.append({"title": title or Path(path).name, "text": text})
    if not docs:
        raise TrainingJobError(f"The collection{'s' if len(collections) > 1 else ''} {', '.join(collections)} "
                               "hold no indexed documents with text. Add documents first.")
    return docs


# ----- jobs -----------------------------------------------------------------------------------
@dataclass
class JobSpec:
    """A prepared job folder; ``job`` is what job.json holds."""

    folder: Path
    job: dict

    @property
    def job_file(self) -> Path:
        return self.folder / JOB_FILE


class TrainingJobs:
    """Prepares and starts training jobs under ``<data>/training``. One per app (Services)."""

    def __init__(self, paths: AppPaths, store=None, python: str | None = None):
        self.paths = paths
        self.store = store
        self.python = python or sys.executable

    @property
    def root(self) -> Path:
        return self.paths.data_dir / "training"

    @property
    def runs_dir(self) -> Path:
        return self.root / "runs"

    @property
    def cache_root(self) -> Path:
        return self.root / "base-cache"

    # ----- preparing ----------------------------------------------------------------------------
    def _new_folder(self, name: str) -> Path:
        return new_run_folder(self.runs_dir, name)

    def _checked(self, folder: Path, job: dict, docs: list[dict] | None = None) -> JobSpec:
        """Write ``docs`` (the job's documents.jsonl, named in its ``text_copies``) into ``folder``,
        have the training package check the job (its data is in place by then), and write job.json;
        on any failure the folder is shredded, so a refused job leaves nothing half-made and no copy
        of the text. Worker thread."""
        try:
            if docs is not None:
                copy = folder / DOCUMENTS_FILE
                job[TEXT_COPIES] = [str(copy)]
                with atomic_write(copy) as handle:
                    for doc in docs:
                        handle.write(json.dumps(doc, ensure_ascii=False) + "\n")
            info = check_job(job, self.python)
            if "source" in info:  # a translation memory's direction: the file's when the user named none
                job["dataset"].update(source=info["source"], target=info["target"])
            write_job_file(folder, job)
        except BaseException:
            shred_tree(folder)
            raise
        return JobSpec(folder, job)

    def _lora_job(self, folder: Path, base_gguf: Path, dataset: dict, preset_name: str, settings: dict | None,
                  name: str) -> dict:
        return {"kind": "lora", "name": name, "base_gguf": str(Path(base_gguf).resolve()),
                "cache_root": str(self.cache_root), "output_dir": str(folder), "dataset": dataset,
                "preset": preset_name, "settings": dict(settings or {}), "created_at": time.time()}

    def prepare_documents(self, collections: list[str], base_gguf: Path, preset_name: str = "balanced",
                          settings: dict | None = None, name: str = "documents") -> JobSpec:
        """A continued pre-training job on the text of ``collections`` (worker thread)."""
        if self.store is None:
            raise TrainingJobError("No document store is open.")
        docs = collection_documents(self.store, list(collections))
        folder = self._new_folder(name)
        dataset = {"type": "documents", "path": str(folder / DOCUMENTS_FILE), "collections": list(collections)}
        return self._checked(folder, self._lora_job(folder, base_gguf, dataset, preset_name, settings, name), docs)

    def prepare_translation(self, memory_file: Path, base_gguf: Path, source: str | None = None,
                            target: str | None = None, preset_name: str = "balanced",
                            settings: dict | None = None, name: str = "translation") -> JobSpec:
        """A job teaching the translator's prompt format from a TSV/TMX translation memory
        (worker thread); ``source`` and ``target`` default to the file's languages."""
        folder = self._new_folder(name)
        dataset = {"type": "translation_memory", "path": str(Path(memory_file).resolve()),
                   "source": source, "target": target}
        return self._checked(folder, self._lora_job(folder, base_gguf, dataset, preset_name, settings, name))

    def prepare_distill(self, collections: list[str], teacher_gguf: Path, preset_name: str = "balanced",
                        settings: dict | None = None, keep_ratio: float = 0.5, quantize: str | None = "Q8_0",
                        name: str = "smaller") -> JobSpec:
        """A smaller, faster copy of ``teacher_gguf``: the student keeps ``keep_ratio`` of its
        layers (chosen by measured importance) and is healed by distillation on the text of
        ``collections``, then written as GGUF (and quantized). Worker thread; every check of
        the job's own preflight (settings, data, memory, architecture, Gemma's layer pattern)
        runs in the check child first, so the user hears about a problem before the job starts."""
        if self.store is None:
            raise TrainingJobError("No document store is open.")
        docs = collection_documents(self.store, list(collections))
        folder = self._new_folder(name)
        job = {"kind": "distill", "name": name, "teacher_gguf": str(Path(teacher_gguf).resolve()),
               "cache_root": str(self.cache_root), "output_dir": str(folder),
               "dataset": {"type": "documents", "path": str(folder / DOCUMENTS_FILE),
                           "collections": list(collections)},
               "preset": preset_name, "settings": dict(settings or {}),
               "prune": {"strategy": "importance", "keep_ratio": float(keep_ratio)},
               "export_gguf": True, "quantize": quantize, "created_at": time.time()}
        return self._checked(folder, job, docs)

    # ----- running ------------------------------------------------------------------------------
    def start(self, spec: JobSpec, resume: bool = False) -> "TrainingProcess":
        return TrainingProcess.spawn(self.python, spec.job_file, resume)

    def resumable(self, folder: Path) -> JobSpec:
        """The job in ``folder``, checked to have a checkpoint to resume from (worker thread:
        reads its job.json); the window starts its process itself (``--resume``)."""
        folder = Path(folder)
        job_file = folder / JOB_FILE
        if not job_file.is_file():
            raise TrainingJobError(f"{folder} is not a training job folder (no job.json).")
        if not has_checkpoint(folder):
            raise TrainingJobError("This job has no checkpoint yet; start it again instead of resuming.")
        try:
            job = json.loads(job_file.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise TrainingJobError(f"The job file {job_file} cannot be read: {exc}") from exc
        return JobSpec(folder, job)

    def resume(self, folder: Path) -> "TrainingProcess":
        return TrainingProcess.spawn(self.python, self.resumable(folder).job_file, resume=True)

    def job_folder(self, job_id: str) -> Path:
        """The folder of the job named ``job_id`` (its folder's name, as ``assistant train list``
        and the Train page show it); raises :class:`TrainingJobError` for a name that is no job
        of this app. Any thread (it only looks at the disk)."""
        job_id = str(job_id).strip()
        # A name, never a path: "../x" or "/tmp/x" must not reach a folder outside runs_dir.
        folder = self.runs_dir / job_id
        if not job_id or Path(job_id).name != job_id or job_id in (".", "..") or not (folder / JOB_FILE).is_file():
            raise TrainingJobError(f"No training job called {job_id!r}; `assistant train list` shows them.")
        return folder

    @staticmethod
    def finished(folder: Path) -> bool:
        """Whether the job in ``folder`` wrote its result (a fine-tune's result.json, a
        distillation's distill.json): what it made is the user's, never discarded with it."""
        return any((Path(folder) / name).is_file() for name in RESULT_FILES)

    def abandon(self, folder: Path) -> None:
        """Give up (discard) a job that is not running and did not finish: its copies of the user's
        text are shredded (overwritten, then deleted), then the rest of its folder (checkpoints,
        log, job.json) is removed, so it no longer lists. A running job is refused (it must be
        stopped first: its process would write the files again), and so is a finished one (its
        folder holds the adapter or model it made). Worker thread or the CLI's main thread
        (shredding writes the files over; the check reads the process table)."""
        folder = Path(folder)
        if not (folder / JOB_FILE).is_file() or folder.resolve().parent != self.runs_dir.resolve():
            raise TrainingJobError(f"{folder} is not a training job folder of this app.")
        if self.finished(folder):
            raise TrainingJobError(f"The job {folder.name} finished; what it made stays, so nothing was deleted.")
        if job_process_ids(folder / JOB_FILE):
            raise TrainingJobError(f"The job {folder.name} is running; stop it first (Cancel on the Train page), "
                                   "then discard it.")
        try:
            job = json.loads((folder / JOB_FILE).read_text(encoding="utf-8"))
        except ValueError:
            job = {}  # a damaged job file names no copies; those in the folder are shredded below
        # The text first, wherever the job names it: if removing the rest fails, no copy is left.
        forget_job_texts(job if isinstance(job, dict) else {})
        shred_job_texts(folder)  # a job.json whose output_dir is elsewhere: its own folder too
        try:
            shutil.rmtree(folder)
        except OSError as exc:
            raise TrainingJobError(f"The copies of your text in {folder} were shredded, but the folder could not "
                                   f"be removed ({exc.strerror or exc}).") from exc

    def runs(self) -> list[dict]:
        """Job folders, newest first, with their result when finished.

        A finished job never needs a copy of the user's text again; runs made before issue 24 kept
        theirs (documents.jsonl, held_out.jsonl, the samples in result.json), so what is found beside
        a result is shredded here (worker thread)."""
        out = []
        if self.runs_dir.is_dir():
            for folder in sorted(self.runs_dir.iterdir(), reverse=True):
                if not (folder / JOB_FILE).is_file():
                    continue
                result_file = next((folder / name for name in RESULT_FILES if (folder / name).is_file()), None)
                result = json.loads(result_file.read_text()) if result_file is not None else None
                if result is not None:
                    shred_job_texts(folder)
                    if without_texts(result) != result:
                        result = without_texts(result)
                        with shredding_replaced(result_file):
                            write_json_atomic(result_file, result)
                out.append({"folder": str(folder), "job": json.loads((folder / JOB_FILE).read_text()),
                            "result": result, "resumable": has_checkpoint(folder) and result is None})
        return out
