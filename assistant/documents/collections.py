"""The user's documents: collections of files, parsed, chunked, embedded and indexed.

Threading: every method runs on a worker thread (the GUI's pool) or the CLI's main thread,
never the GUI thread: parsing, embedding (an engine round trip) and writing take time. The
long operations (:meth:`Documents.add_paths`, :meth:`Documents.sync`,
:meth:`Documents.reindex`) are generators of :class:`Progress` events that check a cancel
flag between files and between embedding batches; the store serialises the writes.

Consistency: a file's chunks are computed (parse, chunk, embed) before anything is written,
then replaced in one transaction, so the index never holds half a file; a file that fails
keeps a row with ``status = 'error'`` and its message, and no chunks.
"""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np

from assistant.errors import DocumentsError
from assistant.documents.ingest import (
    IngestError,
    WordPiece,
    chunk_document,
    document_type,
    embedding_text,
    parse_file,
)
from assistant.store import Store
from engine.library import sha256_file

#: Collection used when the user names none.
DEFAULT_COLLECTION = "default"
#: Texts per engine round trip: large enough to amortise the IPC, small enough that
#: cancelling and the progress bar react within a second or two.
EMBED_BATCH = 32

#: ``embed(texts) -> float32 array (n, dim)`` of unit vectors; the engine's, or a test's.
EmbedFn = Callable[[list[str]], np.ndarray]


@dataclass
class Progress:
    """One step of a long document job, for a progress bar and a per-file message list.

    ``kind``: "start" (total known), "file" (a file is starting), "indexed", "unchanged",
    "removed", "error" (``message`` says why; the batch goes on), "cancelled", "done".
    """

    kind: str
    index: int = 0  # 1-based position of the file in the batch
    total: int = 0
    path: str = ""
    chunks: int = 0
    message: str = ""
    totals: dict = field(default_factory=dict)

    @property
    def files_finished(self) -> int:
        """Files of the batch that are done: a "file" event names the file starting, which is
        not done yet (the bar must not show 100 % while the last file is being indexed)."""
        if self.kind == "done":
            return self.total
        started_not_finished = self.kind == "file" or (self.kind == "cancelled" and bool(self.path))
        return max(0, self.index - 1) if started_not_finished else self.index


def engine_embedder(services) -> EmbedFn:
    """An :data:`EmbedFn` through the engine worker with the library's embedding model.

    The MiniLM safetensors folder is converted to GGUF once (cached in the models folder,
    keyed by the source's hash); any thread but the GUI's.
    """
    from engine.convert_bert import ensure_gguf

    record = services.library.for_task("embed")
    path = Path(record.path)
    gguf_path = path if path.is_file() else ensure_gguf(path, services.paths.models_dir)

    def embed(texts: list[str]) -> np.ndarray:
        vectors, _metrics = services.engine.embed(str(gguf_path), texts, with_metrics=True)
        return vectors

    return embed


def default_counter(services=None) -> WordPiece:
    from engine import model_pack

    folder = model_pack.locate(model_pack.MINILM, services.paths.models_dir if services else Path("/nonexistent"))
    return WordPiece.from_folder(folder)


class Documents:
    """Collections, files and chunks in the app's store; see the module docstring."""

    def __init__(self, store: Store, embed: EmbedFn, counter: WordPiece | None = None,
                 chunk_tokens: int = 180, overlap_tokens: int = 40):
        self.store = store
        self.embed = embed
        self._counter = counter  # the default one loads MiniLM's vocabulary: only when chunking
        self.chunk_tokens = chunk_tokens  # passage budget; MiniLM reads 256 tokens with the heading line
        self.overlap_tokens = overlap_tokens  # carried into the next passage so no sentence loses its context

    @property
    def counter(self) -> WordPiece:
        if self._counter is None:
            self._counter = default_counter()
        return self._counter

    # ----- collections ------------------------------------------------------------------
    def collection_id(self, name: str, create: bool = False) -> int:
        name = (name or DEFAULT_COLLECTION).strip()
        with self.store.reading() as conn:
            row = conn.execute("SELECT n FROM doc_collections WHERE name = ?", (name,)).fetchone()
        if row:
            return int(row[0])
        if not create:
            raise DocumentsError(f"No document collection called {name!r} (collections: "
                                 f"{', '.join(c['name'] for c in self.collections()) or 'none'}).")
        with self.store.transaction() as conn:
            conn.execute("INSERT OR IGNORE INTO doc_collections (name, created_at) VALUES (?, ?)", (name, time.time()))
            return int(conn.execute("SELECT n FROM doc_collections WHERE name = ?", (name,)).fetchone()[0])

    def collections(self) -> list[dict]:
        with self.store.reading() as conn:
            rows = conn.execute(
                "SELECT c.n, c.name, COUNT(f.n), COALESCE(SUM(f.chunk_count), 0) FROM doc_collections c "
                "LEFT JOIN doc_files f ON f.collection_n = c.n GROUP BY c.n ORDER BY c.name").fetchall()
        return [{"id": r[0], "name": r[1], "files": r[2], "chunks": r[3]} for r in rows]

    def list(self, collection: str | None = None) -> list[dict]:
        """Every file (or a collection's): path, title, type, status, error, chunks."""
        sql = ("SELECT f.n, c.name, f.path, f.title, f.type, f.status, f.error, f.chunk_count, f.size, f.indexed_at, f.notes "
               "FROM doc_files f JOIN doc_collections c ON c.n = f.collection_n")
        args: list = []
        if collection:
            sql += " WHERE c.n = ?"
            args.append(self.collection_id(collection))
        with self.store.reading() as conn:
            rows = conn.execute(sql + " ORDER BY c.name, f.path", args).fetchall()
        keys = ("id", "collection", "path", "title", "type", "status", "error", "chunks", "size", "indexed_at", "notes")
        out = [dict(zip(keys, r)) for r in rows]
        for item in out:
            item["notes"] = json.loads(item["notes"] or "[]")
        return out

    def watched(self) -> list[tuple[str, str]]:
        with self.store.reading() as conn:
            rows = conn.execute("SELECT c.name, w.path FROM doc_watched w JOIN doc_collections c ON c.n = w.collection_n "
                                "ORDER BY c.name, w.path").fetchall()
        return [(r[0], r[1]) for r in rows]

    # ----- adding -----------------------------------------------------------------------
    def _expand(self, paths: Iterable[str | os.PathLike], collection_n: int,
                errors: list[tuple[str, str]]) -> list[Path]:
        files: list[Path] = []
        for raw in paths:
            if not str(raw).strip():  # Path("") is the working folder: never what was meant
                errors.append(("", "An empty path was given; choose a file or a folder."))
                continue
            try:
                path = Path(raw).expanduser()
                path = path.resolve()
            except OSError:
                pass
            except ValueError:  # a NUL byte: no file can have this name
                errors.append((repr(str(raw)), f"{str(raw)!r} is not a valid file name."))
                continue
            if path.is_dir():
                with self.store.transaction() as conn:
                    conn.execute("INSERT OR IGNORE INTO doc_watched (collection_n, path, added_at) VALUES (?, ?, ?)",
                                 (collection_n, str(path), time.time()))
                files.extend(_folder_files(path))
            elif path.exists():
                files.append(path)
            else:
                errors.append((str(path), f"{path}: no such file or folder."))
        seen: set[Path] = set()
        return [f for f in files if not (f in seen or seen.add(f))]

    def add_paths(self, paths: Iterable[str | os.PathLike], collection: str = DEFAULT_COLLECTION,
                  cancel: threading.Event | None = None, force: bool = False) -> Iterator[Progress]:
        """Index files and folders (folders recursively, and watched from now on).

        Yields a :class:`Progress` per step; unchanged files (same size, mtime and hash)
        are skipped unless ``force``. A bad file yields ``error`` and the batch goes on.
        """
        cancel = cancel or threading.Event()
        collection_n = self.collection_id(collection, create=True)
        errors: list[tuple[str, str]] = []
        files = self._expand(paths, collection_n, errors)
        yield from self._index_files(collection_n, files, cancel, force, errors)

    def _index_files(self, collection_n: int, files: list[Path], cancel: threading.Event, force: bool,
                     errors: list[tuple[str, str]] | None = None, removed: list[str] | None = None) -> Iterator[Progress]:
        errors = list(errors or [])
        total = len(files) + len(errors)
        totals = {"indexed": 0, "unchanged": 0, "errors": 0, "chunks": 0, "removed": len(removed or [])}
        yield Progress("start", 0, total, totals=dict(totals))
        index = 0
        for path, message in errors:
            index += 1
            totals["errors"] += 1
            yield Progress("error", index, total, path, message=message, totals=dict(totals))
        for path in removed or []:
            yield Progress("removed", index, total, path, totals=dict(totals))
        for path in files:
            if cancel.is_set():
                yield Progress("cancelled", index, total, totals=dict(totals))
                return
            index += 1
            yield Progress("file", index, total, str(path), totals=dict(totals))
            try:
                outcome, n = self._index_one(collection_n, path, cancel, force)
            except _Cancelled:
                yield Progress("cancelled", index, total, str(path), totals=dict(totals))
                return
            except IngestError as exc:
                totals["errors"] += 1
                self._record_error(collection_n, path, str(exc))
                yield Progress("error", index, total, str(path), message=str(exc), totals=dict(totals))
                continue
            except Exception as exc:  # an engine failure: this file fails, the batch goes on
                message = f"{path.name}: could not be indexed ({exc})."
                totals["errors"] += 1
                self._record_error(collection_n, path, message)
                yield Progress("error", index, total, str(path), message=message, totals=dict(totals))
                continue
            totals[outcome] += 1
            totals["chunks"] += n
            yield Progress(outcome, index, total, str(path), chunks=n, totals=dict(totals))
        yield Progress("done", index, total, totals=dict(totals))

    def _existing(self, collection_n: int, path: Path) -> dict | None:
        with self.store.reading() as conn:
            row = conn.execute("SELECT n, sha256, mtime, size, status FROM doc_files WHERE collection_n = ? AND path = ?",
                               (collection_n, str(path))).fetchone()
        return dict(zip(("n", "sha256", "mtime", "size", "status"), row)) if row else None

    def _index_one(self, collection_n: int, path: Path, cancel: threading.Event, force: bool) -> tuple[str, int]:
        try:
            stat = path.stat()
        except OSError as exc:
            raise IngestError(f"{path.name}: cannot be read ({exc.strerror or exc}).") from None
        existing = self._existing(collection_n, path)
        if existing and not force and existing["status"] == "indexed" and existing["size"] == stat.st_size \
                and existing["mtime"] == stat.st_mtime:
            return "unchanged", 0
        document = parse_file(path)  # IngestError: caller records it
        # Hash after parsing so that a refused file (too large, wrong type) is never read whole.
        sha = sha256_file(path)
        if existing and not force and existing["status"] == "indexed" and existing["sha256"] == sha:
            with self.store.transaction() as conn:  # touched, not changed: remember the new mtime
                conn.execute("UPDATE doc_files SET mtime = ?, size = ? WHERE n = ?", (stat.st_mtime, stat.st_size, existing["n"]))
            return "unchanged", 0
        chunks = chunk_document(document, self.counter, self.chunk_tokens, self.overlap_tokens)
        if not chunks:
            raise IngestError(f"{path.name}: no text was found in it.")
        vectors = np.zeros((len(chunks), 0), dtype=np.float32)
        parts = []
        for start in range(0, len(chunks), EMBED_BATCH):
            if cancel.is_set():
                raise _Cancelled()
            batch = chunks[start:start + EMBED_BATCH]
            parts.append(np.asarray(self.embed([embedding_text(document.title, c) for c in batch]), dtype=np.float32))
        vectors = np.concatenate(parts) if parts else vectors
        now = time.time()
        with self.store.transaction() as conn:
            conn.execute(
                "INSERT INTO doc_files (collection_n, path, type, title, sha256, mtime, size, status, error, notes, "
                "chunk_count, added_at, indexed_at) VALUES (?, ?, ?, ?, ?, ?, ?, 'indexed', NULL, ?, ?, ?, ?) "
                "ON CONFLICT (collection_n, path) DO UPDATE SET type = excluded.type, title = excluded.title, "
                "sha256 = excluded.sha256, mtime = excluded.mtime, size = excluded.size, status = 'indexed', error = NULL, "
                "notes = excluded.notes, chunk_count = excluded.chunk_count, indexed_at = excluded.indexed_at",
                (collection_n, str(path), document.type, document.title, sha, stat.st_mtime, stat.st_size,
                 json.dumps(document.notes), len(chunks), now, now))
            file_n = conn.execute("SELECT n FROM doc_files WHERE collection_n = ? AND path = ?",
                                  (collection_n, str(path))).fetchone()[0]
            conn.execute("DELETE FROM doc_chunks WHERE file_n = ?", (file_n,))
            conn.executemany(
                "INSERT INTO doc_chunks (file_n, ordinal, text, title, heading, page, tokens, embedding) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [(file_n, c.ordinal, c.text, document.title, c.heading(), c.page, c.tokens, vectors[i].tobytes())
                 for i, c in enumerate(chunks)])
            _bump(conn)
        return "indexed", len(chunks)

    def _record_error(self, collection_n: int, path: Path, message: str) -> None:
        """Keep the failed file listed with its message and no chunks (stale ones go)."""
        try:
            stat = path.stat()
            mtime, size = stat.st_mtime, stat.st_size
        except OSError:
            mtime, size = 0.0, 0
        with self.store.transaction() as conn:
            conn.execute(
                "INSERT INTO doc_files (collection_n, path, type, status, error, mtime, size, added_at) "
                "VALUES (?, ?, ?, 'error', ?, ?, ?, ?) ON CONFLICT (collection_n, path) DO UPDATE SET "
                "status = 'error', error = excluded.error, mtime = excluded.mtime, size = excluded.size, chunk_count = 0",
                (collection_n, str(path), document_type(path) or "", message, mtime, size, time.time()))
            conn.execute("DELETE FROM doc_chunks WHERE file_n IN (SELECT n FROM doc_files WHERE collection_n = ? AND path = ?)",
                         (collection_n, str(path)))
            _bump(conn)

    # ----- removal and re-indexing --------------------------------------------------------
    def remove(self, target: str, collection: str | None = None) -> int:
        """Remove a file, every file under a folder (and stop watching it), or a whole
        collection (``target`` = its name with ``collection`` None). Returns files removed;
        their chunks go in the same transaction (cascade + FTS trigger)."""
        path = str(Path(target).expanduser().resolve()) if (os.sep in target or Path(target).exists()) else target
        with self.store.transaction() as conn:
            where, args = "(f.path = ? OR f.path LIKE ? ESCAPE '\\')", [path, _like_prefix(path)]
            if collection:
                row = conn.execute("SELECT n FROM doc_collections WHERE name = ?", (collection,)).fetchone()
                if not row:
                    raise DocumentsError(f"No document collection called {collection!r}.")
                where += " AND f.collection_n = ?"
                args.append(row[0])
            ids = [r[0] for r in conn.execute(f"SELECT f.n FROM doc_files f WHERE {where}", args)]
            conn.execute("DELETE FROM doc_watched WHERE (path = ? OR path LIKE ? ESCAPE '\\')" +
                         (" AND collection_n = ?" if collection else ""), args)
            if not ids and not collection:
                row = conn.execute("SELECT n FROM doc_collections WHERE name = ?", (target,)).fetchone()
                if row:
                    ids = [r[0] for r in conn.execute("SELECT n FROM doc_files WHERE collection_n = ?", (row[0],))]
                    conn.execute("DELETE FROM doc_collections WHERE n = ?", (row[0],))
            if not ids:
                raise DocumentsError(f"Nothing indexed matches {target!r}.")
            conn.executemany("DELETE FROM doc_files WHERE n = ?", [(i,) for i in ids])
            _bump(conn)
        # Removed means unreadable from the file too: old index segments, freed pages, the WAL.
        self.store.erase_freed_space(("doc_chunks_fts",))
        return len(ids)

    def reindex(self, collection: str | None = None, cancel: threading.Event | None = None) -> Iterator[Progress]:
        """Parse, chunk and embed every file again (after a model or chunking change)."""
        cancel = cancel or threading.Event()
        for item in self.collections():
            if collection and item["name"] != collection:
                continue
            files = [Path(f["path"]) for f in self.list(item["name"])]
            yield from self._index_files(item["id"], files, cancel, force=True)

    def sync(self, cancel: threading.Event | None = None) -> Iterator[Progress]:
        """Bring the index up to date with the disk: polled mtimes and sizes, new files in
        watched folders, deleted files removed. Cheap when nothing changed (stat calls only)."""
        cancel = cancel or threading.Event()
        for item in self.collections():
            collection_n = item["id"]
            known = {f["path"]: f for f in self.list(item["name"])}
            with self.store.reading() as conn:
                folders = [r[0] for r in conn.execute("SELECT path FROM doc_watched WHERE collection_n = ?", (collection_n,))]
            gone = [p for p in known if not Path(p).exists()]
            if gone:
                with self.store.transaction() as conn:
                    conn.executemany("DELETE FROM doc_files WHERE collection_n = ? AND path = ?",
                                     [(collection_n, p) for p in gone])
                    _bump(conn)
            todo: list[Path] = []
            for folder in folders:
                if Path(folder).is_dir():
                    todo.extend(f for f in _folder_files(Path(folder)) if str(f) not in known)
            for path_text, info in known.items():
                path = Path(path_text)
                if path_text in gone:
                    continue
                try:
                    stat = path.stat()
                except OSError:
                    continue
                if info["status"] != "indexed" or self._changed(collection_n, path, stat):
                    todo.append(path)
            if todo or gone:
                yield from self._index_files(collection_n, todo, cancel, force=False, removed=gone)

    def _changed(self, collection_n: int, path: Path, stat: os.stat_result) -> bool:
        existing = self._existing(collection_n, path)
        return existing is None or existing["mtime"] != stat.st_mtime or existing["size"] != stat.st_size

    # ----- attachments --------------------------------------------------------------------
    def attach(self, conversation_id: str, file_ids: Iterable[int]) -> None:
        with self.store.transaction() as conn:
            conn.executemany("INSERT OR IGNORE INTO doc_attachments (conversation_id, file_n) VALUES (?, ?)",
                             [(conversation_id, int(i)) for i in file_ids])

    def detach(self, conversation_id: str, file_ids: Iterable[int] | None = None) -> None:
        with self.store.transaction() as conn:
            if file_ids is None:
                conn.execute("DELETE FROM doc_attachments WHERE conversation_id = ?", (conversation_id,))
            else:
                conn.executemany("DELETE FROM doc_attachments WHERE conversation_id = ? AND file_n = ?",
                                 [(conversation_id, int(i)) for i in file_ids])

    def attached(self, conversation_id: str) -> list[int]:
        with self.store.reading() as conn:
            return [r[0] for r in conn.execute("SELECT file_n FROM doc_attachments WHERE conversation_id = ? ORDER BY file_n",
                                               (conversation_id,))]

    def chunk(self, chunk_id: int) -> dict | None:
        """One passage with its file, for "open the passage" from a cited source."""
        with self.store.reading() as conn:
            row = conn.execute("SELECT c.n, c.text, c.title, c.heading, c.page, c.ordinal, f.path, f.n FROM doc_chunks c "
                               "JOIN doc_files f ON f.n = c.file_n WHERE c.n = ?", (chunk_id,)).fetchone()
        if not row:
            return None
        return dict(zip(("id", "text", "title", "heading", "page", "ordinal", "path", "file_id"), row))

    def stats(self) -> dict:
        with self.store.reading() as conn:
            files, chunks = conn.execute("SELECT (SELECT COUNT(*) FROM doc_files), (SELECT COUNT(*) FROM doc_chunks)").fetchone()
            fts = conn.execute("SELECT COUNT(*) FROM doc_chunks_fts").fetchone()[0]
        return {"files": files, "chunks": chunks, "fts_rows": fts}


class _Cancelled(Exception):
    pass


def _bump(conn) -> None:
    conn.execute("UPDATE doc_index_state SET generation = generation + 1 WHERE id = 1")


def _like_prefix(path: str) -> str:
    escaped = path.rstrip(os.sep).replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped + os.sep + "%"


def _folder_files(folder: Path) -> list[Path]:
    """Supported files under ``folder``, recursively, skipping hidden files and folders.

    Links are followed only while they stay inside ``folder`` (os.walk does not enter linked
    folders): a folder the user adds must never pull in files from elsewhere on the disk.
    """
    out = []
    root_real = os.path.realpath(folder)
    for root, dirs, names in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(names):
            if not name.startswith(".") and document_type(name) is not None:
                path = Path(root) / name
                if os.path.commonpath([root_real, os.path.realpath(path)]) == root_real:
                    out.append(path)
    return out
