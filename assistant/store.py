"""The one SQLite store of the app: open, migrate, and the tables every feature shares.

Encrypted at rest: the file is a SQLCipher 4 database keyed with the key the composition root
got from :mod:`assistant.vault` (keyring or passphrase); every connection is made by
:func:`assistant.vault.cipher.connect` and hardened (``secure_delete``, temp data in memory).

Threading: a :class:`Store` owns one connection and serialises every call with a lock, so
it is the single owner of all writes; call it from worker threads (never the GUI thread)
or from the CLI's main thread. Other modules (conversations, documents, ...) add their
tables through :data:`MIGRATIONS` and their queries through methods that take the lock.

Why one module of ~600 lines: opening, the migration list and the locked connection are the
store's one owner of the file; every migration sits in the one ordered list so that a newcomer
sees the whole schema history in one place.
"""

from __future__ import annotations

import json
import threading
import time
from contextlib import contextmanager
from dataclasses import asdict, fields, is_dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, TypeVar

import sqlite_utils
from assistant.errors import CorruptDatabaseError, DiskFullError, NewerSchemaError, StoreError
from assistant.vault.cipher import connect, dbapi, harden, key_pragma_value

T = TypeVar("T")


def _migration_1(db: sqlite_utils.Database) -> None:
    db["models"].create(
        {
            "id": str,  # short stable name shown to the user, e.g. "smollm2-135m-instruct-q4_1"
            "display_name": str,
            "path": str,
            "sha256": str,
            "size_bytes": int,
            "source": str,  # "pack" (default model pack), "user" (imported), "trained"
            "metadata": str,  # JSON: engine.gguf_check.summarize() plus pack facts
            "licence_text": str,
            "added_at": float,
        },
        pk="id",
    )
    db["models"].create_index(["path"], unique=True)
    db["settings"].create({"scope": str, "key": str, "value": str}, pk=("scope", "key"))


# unicode61 with remove_diacritics 2 folds case and accents in every script it knows
# ("Café" finds "cafe", "MÜNCHEN" finds "munchen"). No prefix indexes: measured on 200,000
# messages (benchmarks/history_search.py) prefix='2 3' made inserts ~1.5x slower and the
# file 25% larger, with no gain for the prefixes people type (4+ letters, p95 ~35 ms either way).
FTS_OPTIONS = "tokenize = 'unicode61 remove_diacritics 2'"


def _migration_2(db: sqlite_utils.Database) -> None:
    """Conversations and messages, each with an external-content FTS5 index kept by triggers.

    Both tables have an INTEGER PRIMARY KEY ``n`` besides their uuid ``id``: FTS5 external
    content joins on the rowid, and only an INTEGER PRIMARY KEY rowid survives VACUUM.
    """
    statements = [
        """CREATE TABLE conversations (
            n INTEGER PRIMARY KEY,
            id TEXT NOT NULL UNIQUE,
            title TEXT NOT NULL,
            created_at REAL NOT NULL,
            last_activity_at REAL NOT NULL,
            pinned INTEGER NOT NULL DEFAULT 0 CHECK (pinned IN (0, 1)),
            archived INTEGER NOT NULL DEFAULT 0 CHECK (archived IN (0, 1)),
            deleted_at REAL
        )""",
        # The sidebar query: live conversations, pinned first, most recent activity first.
        "CREATE INDEX conversations_by_activity ON conversations (archived, pinned, last_activity_at) "
        "WHERE deleted_at IS NULL",
        "CREATE INDEX conversations_in_trash ON conversations (deleted_at) WHERE deleted_at IS NOT NULL",
        """CREATE TABLE messages (
            n INTEGER PRIMARY KEY,
            id TEXT NOT NULL UNIQUE,
            conversation_id TEXT NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
            role TEXT NOT NULL CHECK (role IN ('system', 'user', 'assistant')),
            text TEXT NOT NULL DEFAULT '',
            model TEXT,
            sampling TEXT NOT NULL DEFAULT '{}',
            metrics TEXT NOT NULL DEFAULT '{}',
            status TEXT NOT NULL DEFAULT 'complete' CHECK (status IN ('complete', 'interrupted', 'streaming')),
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL,
            documents TEXT NOT NULL DEFAULT '[]',
            adapter TEXT
        )""",
        "CREATE INDEX messages_by_conversation ON messages (conversation_id, created_at, n)",
        # Replies cut short by a crash are found at start without scanning every message.
        "CREATE INDEX messages_streaming ON messages (status) WHERE status = 'streaming'",
        f"CREATE VIRTUAL TABLE messages_fts USING fts5(text, content = 'messages', content_rowid = 'n', {FTS_OPTIONS})",
        f"CREATE VIRTUAL TABLE conversations_fts USING fts5(title, content = 'conversations', content_rowid = 'n', {FTS_OPTIONS})",
        # Triggers keep the indexes in the same transaction as the rows (cascaded deletes included).
        """CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages BEGIN
            INSERT INTO messages_fts (rowid, text) VALUES (new.n, new.text);
        END""",
        """CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages BEGIN
            INSERT INTO messages_fts (messages_fts, rowid, text) VALUES ('delete', old.n, old.text);
        END""",
        """CREATE TRIGGER messages_fts_update AFTER UPDATE OF text ON messages BEGIN
            INSERT INTO messages_fts (messages_fts, rowid, text) VALUES ('delete', old.n, old.text);
            INSERT INTO messages_fts (rowid, text) VALUES (new.n, new.text);
        END""",
        """CREATE TRIGGER conversations_fts_insert AFTER INSERT ON conversations BEGIN
            INSERT INTO conversations_fts (rowid, title) VALUES (new.n, new.title);
        END""",
        """CREATE TRIGGER conversations_fts_delete AFTER DELETE ON conversations BEGIN
            INSERT INTO conversations_fts (conversations_fts, rowid, title) VALUES ('delete', old.n, old.title);
        END""",
        """CREATE TRIGGER conversations_fts_update AFTER UPDATE OF title ON conversations BEGIN
            INSERT INTO conversations_fts (conversations_fts, rowid, title) VALUES ('delete', old.n, old.title);
            INSERT INTO conversations_fts (rowid, title) VALUES (new.n, new.title);
        END""",
    ]
    # One statement at a time: executescript() would COMMIT the migration's transaction.
    for statement in statements:
        db.execute(statement)


def _migration_documents(db: sqlite_utils.Database) -> None:
    """Documents (issue 6): collections, files, chunks with FTS5 and a float32 vector BLOB.

    ``chunks.n`` is an INTEGER PRIMARY KEY so the external-content FTS5 index joins on a
    rowid that survives VACUUM; deleting a document cascades to its chunks, and the delete
    trigger takes them out of the FTS index in the same transaction. ``doc_index_state``
    holds one generation number, bumped by every write, so a reader's cached vector matrix
    knows when it is stale without comparing rows.
    """
    statements = [
        """CREATE TABLE doc_collections (
            n INTEGER PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            created_at REAL NOT NULL
        )""",
        """CREATE TABLE doc_watched (
            collection_n INTEGER NOT NULL REFERENCES doc_collections (n) ON DELETE CASCADE,
            path TEXT NOT NULL,
            added_at REAL NOT NULL,
            PRIMARY KEY (collection_n, path)
        )""",
        """CREATE TABLE doc_files (
            n INTEGER PRIMARY KEY,
            collection_n INTEGER NOT NULL REFERENCES doc_collections (n) ON DELETE CASCADE,
            path TEXT NOT NULL,
            type TEXT NOT NULL DEFAULT '',
            title TEXT NOT NULL DEFAULT '',
            sha256 TEXT NOT NULL DEFAULT '',
            mtime REAL NOT NULL DEFAULT 0,
            size INTEGER NOT NULL DEFAULT 0,
            status TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'indexed', 'error')),
            error TEXT,
            notes TEXT NOT NULL DEFAULT '[]',
            chunk_count INTEGER NOT NULL DEFAULT 0,
            added_at REAL NOT NULL,
            indexed_at REAL,
            UNIQUE (collection_n, path)
        )""",
        """CREATE TABLE doc_chunks (
            n INTEGER PRIMARY KEY,
            file_n INTEGER NOT NULL REFERENCES doc_files (n) ON DELETE CASCADE,
            ordinal INTEGER NOT NULL,
            text TEXT NOT NULL,
            title TEXT NOT NULL DEFAULT '',
            heading TEXT NOT NULL DEFAULT '',
            page INTEGER,
            tokens INTEGER NOT NULL DEFAULT 0,
            embedding BLOB
        )""",
        "CREATE INDEX doc_chunks_by_file ON doc_chunks (file_n, ordinal)",
        f"CREATE VIRTUAL TABLE doc_chunks_fts USING fts5(text, heading, title, content = 'doc_chunks', "
        f"content_rowid = 'n', {FTS_OPTIONS})",
        """CREATE TRIGGER doc_chunks_fts_insert AFTER INSERT ON doc_chunks BEGIN
            INSERT INTO doc_chunks_fts (rowid, text, heading, title) VALUES (new.n, new.text, new.heading, new.title);
        END""",
        """CREATE TRIGGER doc_chunks_fts_delete AFTER DELETE ON doc_chunks BEGIN
            INSERT INTO doc_chunks_fts (doc_chunks_fts, rowid, text, heading, title)
                VALUES ('delete', old.n, old.text, old.heading, old.title);
        END""",
        """CREATE TABLE doc_attachments (
            conversation_id TEXT NOT NULL,
            file_n INTEGER NOT NULL REFERENCES doc_files (n) ON DELETE CASCADE,
            PRIMARY KEY (conversation_id, file_n)
        )""",
        "CREATE TABLE doc_index_state (id INTEGER PRIMARY KEY CHECK (id = 1), generation INTEGER NOT NULL)",
        "INSERT INTO doc_index_state (id, generation) VALUES (1, 0)",
    ]
    for statement in statements:
        db.execute(statement)


#: Forward migrations, in order; the schema version is their count. Append, never edit.
MIGRATIONS: list[Callable[[sqlite_utils.Database], None]] = [_migration_1, _migration_2]
MIGRATIONS.append(_migration_documents)  # issue 6: documents


def _migration_study(db: sqlite_utils.Database) -> None:
    """Study (issue 22): decks, their cards with the FSRS state as JSON, and every review.

    ``due`` is the FSRS due time as seconds since the epoch (UTC), indexed with the deck for
    "what is due now"; a card's text is unique within its deck so proposing twice adds nothing
    twice. Each review is its own row, written with the card's new state in one transaction.
    """
    statements = [
        """CREATE TABLE study_decks (
            n INTEGER PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            created_at REAL NOT NULL
        )""",
        """CREATE TABLE study_cards (
            n INTEGER PRIMARY KEY,
            deck_n INTEGER NOT NULL REFERENCES study_decks (n) ON DELETE CASCADE,
            kind TEXT NOT NULL CHECK (kind IN ('cloze', 'qa', 'choice')),
            front TEXT NOT NULL,
            back TEXT NOT NULL,
            choices TEXT NOT NULL DEFAULT '[]',
            source TEXT NOT NULL DEFAULT '{}',
            language TEXT NOT NULL DEFAULT 'en',
            fsrs TEXT NOT NULL,
            due REAL NOT NULL,
            created_at REAL NOT NULL,
            UNIQUE (deck_n, kind, front, back)
        )""",
        "CREATE INDEX study_cards_due ON study_cards (deck_n, due)",
        """CREATE TABLE study_reviews (
            n INTEGER PRIMARY KEY,
            card_n INTEGER NOT NULL REFERENCES study_cards (n) ON DELETE CASCADE,
            rating INTEGER NOT NULL CHECK (rating BETWEEN 1 AND 4),
            reviewed_at REAL NOT NULL,
            due_after REAL NOT NULL
        )""",
        "CREATE INDEX study_reviews_by_time ON study_reviews (reviewed_at)",
    ]
    for statement in statements:
        db.execute(statement)


MIGRATIONS.append(_migration_study)  # issue 22: study


def _migration_variants(db: sqlite_utils.Database) -> None:
    """Regenerated replies kept as variants of one reply (issue 19, point 9).

    ``variant_of`` is the id of the first reply of the group on every one of its variants
    (NULL while a reply was never regenerated); ``chosen`` marks the variant the conversation
    shows and the next turn sees (one per group; 1 for every message without variants, so the
    rows of an older database read as before).
    """
    statements = [
        "ALTER TABLE messages ADD COLUMN variant_of TEXT",
        "ALTER TABLE messages ADD COLUMN chosen INTEGER NOT NULL DEFAULT 1 CHECK (chosen IN (0, 1))",
        "CREATE INDEX messages_variants ON messages (variant_of) WHERE variant_of IS NOT NULL",
    ]
    for statement in statements:
        db.execute(statement)


MIGRATIONS.append(_migration_variants)  # issue 19: regenerate keeps variants


def _migration_linked_models(db: sqlite_utils.Database) -> None:
    """Models linked in place from another tool's folder (issue 20).

    ``linked_from`` is the tool whose file the record points at ("ollama", "lmstudio", ...,
    see assistant.models.discovery.SOURCE_LABELS), NULL for a file the user imported; the app
    never deletes or changes a linked file. ``link_name`` is what that tool calls the model
    ("llama3.2:1b"), so a missing file can be explained in the tool's own words.
    """
    db.execute("ALTER TABLE models ADD COLUMN linked_from TEXT")
    db.execute("ALTER TABLE models ADD COLUMN link_name TEXT")


MIGRATIONS.append(_migration_linked_models)  # issue 20: models linked in place


def _migration_reasoning(db: sqlite_utils.Database) -> None:
    """A reasoning model's thinking kept apart from its answer (issue 20).

    ``text`` stays the answer alone, so the search index (which covers ``text``), titles and
    the next turn's prompt never see the thinking; ``reasoning`` holds it ('' for every other
    message, and for the rows of an older database).
    """
    db.execute("ALTER TABLE messages ADD COLUMN reasoning TEXT NOT NULL DEFAULT ''")


MIGRATIONS.append(_migration_reasoning)  # issue 20: reasoning models


# ----- settings scopes -------------------------------------------------------------------
#: Scope of app-wide settings; models and conversations layer their own over it.
APP_SCOPE = "app"


def model_scope(model_id: str) -> str:
    return f"model:{model_id}"


def conversation_scope(conversation_id: str) -> str:
    return f"conversation:{conversation_id}"


#: SQLite's page cache per connection, in KiB (see Store._open for why it is larger than SQLite's default).
PAGE_CACHE_KIB = 256 * 1024


def schema_version() -> int:
    return len(MIGRATIONS)


class Store:
    """The app's database, encrypted with ``key`` and opened with WAL; see the module docstring
    for threading. A wrong key reads as a damaged file (:class:`CorruptDatabaseError`): SQLCipher
    cannot tell them apart."""

    def __init__(self, path: str | Path, key: bytes, before_migration: Callable[["Store"], None] | None = None):
        """``before_migration(store)`` runs when an existing file is about to be migrated to a
        newer schema (the composition root takes a backup there)."""
        self.path = Path(path)
        self._key = key
        self._before_migration = before_migration
        self._lock = threading.RLock()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._open()

    def _open(self) -> None:
        """Connect, refuse newer or damaged files, switch to WAL and migrate forward."""
        try:
            self._conn = connect(self.path, self._key, check=False)
            harden(self._conn)
            # SQLCipher decrypts and checks each page as it enters SQLite's page cache, so a page
            # read again after it left the cache is decrypted again: a cache of up to 256 MiB (not
            # the default 8 MiB) keeps the search index's pages decrypted across queries. It grows
            # only with the pages actually read, so a small library costs little; a history of
            # 200,000 messages (~400 MB) is where it fills (benchmarks/encryption_overhead.py).
            self._conn.execute(f"PRAGMA cache_size = {-PAGE_CACHE_KIB}")
            self._conn.execute("PRAGMA busy_timeout = 5000")
            self._conn.execute("PRAGMA foreign_keys = ON")
            found = self._conn.execute("PRAGMA user_version").fetchone()[0]
        except dbapi.OperationalError as exc:
            # Locked, unreadable or missing folder: the file itself may be fine, so do not call it damaged.
            self._close_quietly()
            raise StoreError(f"Cannot open the database {self.path}: {exc}.") from exc
        except dbapi.DatabaseError as exc:
            self._close_quietly()
            if getattr(exc, "sqlite_errorcode", None) == getattr(dbapi, "SQLITE_NOTADB", 26):
                # An encrypted file reads as "not a database" under any other key, so a damaged
                # first page and a file encrypted with another key look the same; say both.
                raise CorruptDatabaseError(
                    f"The database {self.path} cannot be read with its key: it is damaged, or it was "
                    "encrypted with another key. It was kept as it is; restore it from a backup "
                    "(assistant history restore BACKUP), or open it with its own recovery key "
                    "(assistant vault recover).", self.path) from None
            raise CorruptDatabaseError(
                f"The database {self.path} is damaged ({exc}). It was kept as it is; "
                "restore it from a backup (assistant history restore BACKUP) or move it away to start afresh.",
                self.path,
            ) from exc
        if found > schema_version():
            self._close_quietly()
            raise NewerSchemaError(
                f"The database {self.path} was written by a newer version of this app "
                f"(schema {found}, this version knows up to {schema_version()}). "
                "Nothing was changed; please update the app to open it."
            )
        try:
            self._conn.execute("PRAGMA journal_mode = WAL")
            # NORMAL is durable across application crashes in WAL mode; only an OS crash can lose
            # the last commits, never corrupt the file.
            self._conn.execute("PRAGMA synchronous = NORMAL")
            self.db = sqlite_utils.Database(self._conn)
            self._migrate(found)
        except dbapi.DatabaseError as exc:
            # A header that reads fine over damaged pages shows up here; each migration is one
            # transaction, so a failed one leaves the file as it was.
            self._close_quietly()
            if isinstance(exc, dbapi.OperationalError):
                raise StoreError(f"Cannot prepare the database {self.path}: {exc}.") from exc
            raise CorruptDatabaseError(
                f"The database {self.path} is damaged ({exc}). It was kept as it is; "
                "restore it from a backup (assistant history restore BACKUP) or move it away to start afresh.",
                self.path,
            ) from exc

    def _close_quietly(self) -> None:
        try:
            self._conn.close()
        except Exception:
            pass

    def _migrate(self, found: int) -> None:
        if 0 < found < schema_version() and self._before_migration is not None:
            self._before_migration(self)
        for version in range(found + 1, schema_version() + 1):
            with self.transaction():
                MIGRATIONS[version - 1](self.db)
                self._conn.execute(f"PRAGMA user_version = {version}")

    @contextmanager
    def transaction(self) -> Iterator[dbapi.Connection]:
        """One write transaction under the store's lock; rolled back on any error."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
                self._conn.execute("COMMIT")
            except BaseException as exc:
                # SQLite may already have rolled back by itself (a full disk does that).
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                if isinstance(exc, dbapi.OperationalError) and not isinstance(exc, StoreError) \
                        and getattr(exc, "sqlite_errorcode", None) == dbapi.SQLITE_FULL:
                    raise DiskFullError(
                        f"The disk holding {self.path.parent} is full, so this change was not saved; "
                        "everything saved before is intact. Free some space and try again.") from exc
                raise

    @contextmanager
    def reading(self) -> Iterator[dbapi.Connection]:
        with self._lock:
            yield self._conn

    @contextmanager
    def snapshot(self) -> Iterator[dbapi.Connection]:
        """Several reads that see one consistent state (a read transaction) under the lock."""
        with self._lock:
            self._conn.execute("BEGIN")
            try:
                yield self._conn
            finally:
                self._conn.execute("COMMIT")

    def integrity_problems(self) -> list[str]:
        """``PRAGMA integrity_check`` findings; empty when the database is sound.

        SQLCipher's own check runs first: a page whose HMAC fails (damaged, or changed by someone
        without the key) cannot be decrypted at all, and SQLite's check would stop at it with a
        bare "SQL logic error" instead of naming it."""
        with self.reading() as conn:
            pages = [r[0] for r in conn.execute("PRAGMA cipher_integrity_check").fetchall()]
            if pages:
                return pages
            try:
                rows = [r[0] for r in conn.execute("PRAGMA integrity_check").fetchall()]
            except dbapi.OperationalError:
                raise
            except dbapi.DatabaseError as exc:  # damage bad enough to stop the check itself
                return [str(exc)]
        return [] if rows == ["ok"] else rows

    def backup_to(self, target: str | Path) -> None:
        """Copy the whole database into the new file ``target`` with SQLite's backup API.

        Runs under the lock, so the copy is one consistent state; the copy is encrypted with
        the same key (SQLCipher's backup API copies pages between databases keyed alike) and
        switched to a rollback journal so that it is one self-contained file (no -wal beside
        it). The caller makes it atomic (write to a temp name, then rename).
        """
        with self._lock:
            dest = connect(target, self._key, check=False)
            try:
                self._conn.backup(dest)
                dest.execute("PRAGMA journal_mode = DELETE")
            finally:
                dest.close()

    def rekey(self, new_key: bytes) -> None:
        """Re-encrypt the whole file with ``new_key`` in one transaction (``PRAGMA rekey``): a
        crash leaves it under the old key or the new one, never a mix. Caller: the vault's
        rotation, which keeps both keys until this returns."""
        with self._lock:
            self._conn.execute(f"PRAGMA rekey = {key_pragma_value(new_key)}")
            self._key = new_key
            self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def erase_freed_space(self, fts_tables: tuple[str, ...] = ()) -> None:
        """After a delete the user means to be final (empty trash, remove a collection), leave
        nothing of the deleted text in the file (see SECURITY.md):

        - each FTS5 index in ``fts_tables`` is merged into one segment (``optimize``): FTS5
          records a delete as a new entry and keeps the old segment, words included, until
          segments merge;
        - ``secure_delete`` has overwritten every freed page with zeros;
        - the WAL, which still holds the old page images, is copied back and truncated to zero
          bytes. A reader holding an old snapshot makes the checkpoint partial; it completes on
          the next call or at close.

        Worker thread; the merge costs time in proportion to the index, so it is for rare,
        explicit deletes, not for every edit."""
        with self._lock:
            for table in fts_tables:
                with self.transaction() as conn:
                    conn.execute(f"INSERT INTO {table}({table}) VALUES ('optimize')")
            self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    @property
    def key(self) -> bytes:
        """The key the file is encrypted with, for copies that must be encrypted alike (backups)."""
        return self._key

    @contextmanager
    def offline(self) -> Iterator[Path]:
        """Close the connection for file-level work on the database (a restore), then reopen.

        Holds the lock throughout, so no other thread can use the store meanwhile. Reopening
        runs the usual checks and migrations on whatever file is then at :attr:`path`.
        """
        with self._lock:
            self._close_quietly()
            try:
                yield self.path
            finally:
                self._open()

    def close(self) -> None:
        with self._lock:
            self._close_quietly()

    # ----- models -------------------------------------------------------------------------
    def upsert_model(self, record: dict) -> None:
        row = dict(record)
        row.setdefault("added_at", time.time())
        if isinstance(row.get("metadata"), dict):
            row["metadata"] = json.dumps(row["metadata"])
        with self.transaction():
            self.db["models"].upsert(row, pk="id")

    def list_models(self) -> list[dict]:
        with self.reading():
            rows = list(self.db["models"].rows_where(order_by="source, display_name"))
        return [self._model_row(r) for r in rows]

    def get_model(self, model_id: str) -> dict | None:
        with self.reading():
            rows = list(self.db["models"].rows_where("id = ?", [model_id]))
        return self._model_row(rows[0]) if rows else None

    def find_model_by_path(self, path: str) -> dict | None:
        with self.reading():
            rows = list(self.db["models"].rows_where("path = ?", [path]))
        return self._model_row(rows[0]) if rows else None

    def delete_model(self, model_id: str) -> None:
        with self.transaction():
            self.db["models"].delete_where("id = ?", [model_id])

    @staticmethod
    def _model_row(row: dict) -> dict:
        row = dict(row)
        row["metadata"] = json.loads(row.get("metadata") or "{}")
        return row

    # ----- settings -----------------------------------------------------------------------
    def get_setting(self, scope: str, key: str, default: Any = None) -> Any:
        with self.reading():
            row = self._conn.execute(
                "SELECT value FROM settings WHERE scope = ? AND key = ?", (scope, key)
            ).fetchone()
        return json.loads(row[0]) if row else default

    def set_setting(self, scope: str, key: str, value: Any) -> None:
        with self.transaction() as conn:
            conn.execute(
                "INSERT INTO settings(scope, key, value) VALUES (?, ?, ?) "
                "ON CONFLICT(scope, key) DO UPDATE SET value = excluded.value",
                (scope, key, json.dumps(value)),
            )

    def load_settings(self, scope: str, cls: type[T]) -> T:
        """A typed settings dataclass: stored values over the dataclass's defaults."""
        stored = self.get_setting(scope, cls.__name__, {}) or {}
        names = {f.name for f in fields(cls)}  # type: ignore[arg-type]
        return cls(**{k: v for k, v in stored.items() if k in names})

    def save_settings(self, scope: str, value: Any) -> None:
        assert is_dataclass(value)
        self.set_setting(scope, type(value).__name__, asdict(value))

    def load_layered_settings(self, cls: type[T], *scopes: str) -> T:
        """A typed settings dataclass from several scopes, later scopes winning field by field.

        E.g. ``load_layered_settings(SamplingParams, APP_SCOPE, model_scope(m), conversation_scope(c))``:
        the dataclass's defaults, then the app's, the model's and the conversation's values.
        """
        names = {f.name for f in fields(cls)}  # type: ignore[arg-type]
        merged: dict[str, Any] = {}
        for scope in scopes:
            stored = self.get_setting(scope, cls.__name__, {}) or {}
            merged.update({k: v for k, v in stored.items() if k in names})
        return cls(**merged)
