"""Backups of the app's database: made with SQLite's backup API, listed, and restored.

Backup and restore belong to the store, not to any one feature: a backup is the whole
database (conversations, documents, settings). The module-level functions work while the
database cannot be opened at all (a damaged file is replaced by its last backup); a
:class:`Backups` works on an open :class:`~assistant.store.Store`.

Backups are whole-database copies made with SQLite's backup API (never a file copy of the
live database), encrypted with the database's own key, written under a temp name and renamed, ``assistant-<UTC time>.sqlite3`` in
the backups folder, the last ``keep`` of them kept. Restore validates a copy of the backup
(``integrity_check``, schema version) before anything changes, keeps the database it
replaces as ``replaced-<UTC time>.sqlite3`` in the backups folder, and swaps the files
while the store's connection is closed.

Threading: every call runs on the caller's thread (a worker thread of the window, the CLI's
main thread) and takes the store's lock through its methods.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from engine.atomic import fsync_dir
from assistant.errors import BackupError
from assistant.store import Store, schema_version
from assistant.vault.cipher import WrongKeyError, connect, dbapi

BACKUP_PREFIX = "assistant-"
BACKUP_SUFFIX = ".sqlite3"
REPLACED_PREFIX = "replaced-"
#: Backups kept; older ones are deleted after each new backup (hand-made and automatic alike).
DEFAULT_KEEP_BACKUPS = 7
#: An automatic backup is taken at start when the newest backup is older than this.
AUTO_BACKUP_EVERY_S = 24 * 3600


def _utc_stamp() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S-%f")


@dataclass
class RestoreResult:
    backup: Path
    #: Where the database that was replaced now lives (nothing is thrown away).
    previous_kept_as: Path | None


def list_backups(backups_dir: str | os.PathLike) -> list[Path]:
    """Backups in the folder, oldest first (names carry their UTC time)."""
    folder = Path(backups_dir)
    if not folder.is_dir():
        return []
    return sorted(
        p for p in folder.iterdir() if p.name.startswith(BACKUP_PREFIX) and p.name.endswith(BACKUP_SUFFIX) and p.is_file()
    )


def latest_backup(backups_dir: str | os.PathLike) -> Path | None:
    backups = list_backups(backups_dir)
    return backups[-1] if backups else None


def _remove_quietly(path: Path) -> None:
    for suffix in ("", "-journal", "-wal", "-shm"):
        try:
            os.unlink(f"{path}{suffix}")
        except FileNotFoundError:
            pass
        except OSError:
            pass


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _prepare_restore_copy(backup: Path, folder: Path, key: bytes) -> Path:
    """Copy ``backup`` into a temp file in ``folder`` and prove the copy sound; returns it.

    The copy goes through SQLite's backup API from a read-only connection, so the backup
    itself is never modified, and what is checked is exactly what will be put in place.
    """
    if not backup.is_file():
        raise BackupError(f"No such backup: {backup}.")
    tmp = folder / f".restore-{_utc_stamp()}.sqlite3.tmp"
    try:
        try:
            source = connect(backup, key)
        except WrongKeyError:
            raise BackupError(f"The backup {backup} cannot be read as a database with this installation's key: "
                              "it is damaged, or encrypted with another key (made before a key rotation, or on "
                              "another installation); nothing was changed.") from None
        try:
            dest = connect(tmp, key, check=False)
            try:
                source.backup(dest)
                problems = [r[0] for r in dest.execute("PRAGMA integrity_check").fetchall()]
                if problems != ["ok"]:
                    raise BackupError(
                        f"The backup {backup} is damaged ({problems[0]}); nothing was changed. Try an older backup."
                    )
                version = dest.execute("PRAGMA user_version").fetchone()[0]
                tables = {r[0] for r in dest.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
                if version < 1 or "settings" not in tables:
                    raise BackupError(f"{backup} is not a backup of this app's database; nothing was changed.")
                if version > schema_version():
                    raise BackupError(
                        f"The backup {backup} was made by a newer version of the app (schema {version}); "
                        "nothing was changed. Please update the app to restore it."
                    )
                dest.execute("PRAGMA journal_mode = DELETE")
            finally:
                dest.close()
        finally:
            source.close()
        _fsync_file(tmp)
    except BackupError:
        _remove_quietly(tmp)
        raise
    except dbapi.DatabaseError as exc:
        _remove_quietly(tmp)
        raise BackupError(f"The backup {backup} cannot be read as a database ({exc}); nothing was changed.") from None
    except OSError as exc:
        _remove_quietly(tmp)
        raise BackupError(f"Cannot restore into {folder}: {exc.strerror or exc}; nothing was changed.") from None
    return tmp


def _swap_in(db_path: Path, prepared: Path, keep_as: Path) -> Path | None:
    """Move the current database (and its -wal/-shm) to ``keep_as``, the prepared copy into
    its place. Nothing may have the database open. On failure everything is moved back."""
    moved: list[str] = []
    try:
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(f"{db_path}{suffix}"):
                keep_as.parent.mkdir(parents=True, exist_ok=True)
                os.replace(f"{db_path}{suffix}", f"{keep_as}{suffix}")
                moved.append(suffix)
        os.replace(prepared, db_path)
    except OSError as exc:
        for suffix in reversed(moved):
            try:
                os.replace(f"{keep_as}{suffix}", f"{db_path}{suffix}")
            except OSError:
                pass
        _remove_quietly(prepared)
        raise BackupError(f"Cannot replace {db_path}: {exc.strerror or exc}; nothing was changed.") from None
    fsync_dir(db_path.parent)
    fsync_dir(keep_as.parent)
    return keep_as if moved else None


def restore_database_file(db_path: str | os.PathLike, backup: str | os.PathLike | None,
                          backups_dir: str | os.PathLike, key: bytes) -> RestoreResult:
    """Restore while no :class:`Store` is open (the database is damaged and cannot open).

    Runs on the caller's thread; the caller must not have the database open anywhere.
    ``backup=None`` means the latest backup. The damaged file is kept, renamed.
    """
    db_path, backups_dir = Path(db_path), Path(backups_dir)
    chosen = _choose_backup(backup, backups_dir)
    db_path.parent.mkdir(parents=True, exist_ok=True)
    prepared = _prepare_restore_copy(chosen, db_path.parent, key)
    kept = _swap_in(db_path, prepared, backups_dir / f"{REPLACED_PREFIX}{_utc_stamp()}{BACKUP_SUFFIX}")
    return RestoreResult(backup=chosen, previous_kept_as=kept)


def _choose_backup(backup: str | os.PathLike | None, backups_dir: Path) -> Path:
    if backup is not None:
        return Path(backup)
    chosen = latest_backup(backups_dir)
    if chosen is None:
        raise BackupError(f"There is no backup in {backups_dir} yet (make one with: assistant history backup).")
    return chosen


class Backups:
    """The backups folder of one open store."""

    def __init__(self, store: Store, backups_dir: str | os.PathLike):
        self._store = store
        self.backups_dir = Path(backups_dir)

    def backup(self, keep: int = DEFAULT_KEEP_BACKUPS) -> Path:
        """Copy the whole database into the backups folder; keep the newest ``keep``."""
        if keep < 1:
            raise BackupError("Keep at least one backup.")
        try:
            self.backups_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise BackupError(f"Cannot create {self.backups_dir}: {exc.strerror or exc}.") from None
        final = self.backups_dir / f"{BACKUP_PREFIX}{_utc_stamp()}{BACKUP_SUFFIX}"
        tmp = self.backups_dir / f".{final.name}.tmp"
        try:
            self._store.backup_to(tmp)
            _fsync_file(tmp)
            os.replace(tmp, final)
            fsync_dir(self.backups_dir)
        except (dbapi.Error, OSError) as exc:
            _remove_quietly(tmp)
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
            raise BackupError(f"Cannot write a backup in {self.backups_dir}: {reason}. Nothing was kept.") from None
        for old in list_backups(self.backups_dir)[:-keep]:
            _remove_quietly(old)
        return final

    def backup_if_due(self, every_s: float = AUTO_BACKUP_EVERY_S, now: float | None = None) -> Path | None:
        """The automatic backup: one when the newest is older than ``every_s`` (at most daily by
        default), else None. Worker thread, at start (after the first paint)."""
        newest = self.latest_backup()
        current = time.time() if now is None else now
        if newest is not None and current - newest.stat().st_mtime < every_s:
            return None
        return self.backup()

    def list_backups(self) -> list[Path]:
        return list_backups(self.backups_dir)

    def latest_backup(self) -> Path | None:
        return latest_backup(self.backups_dir)

    def restore(self, backup: str | os.PathLike | None = None) -> RestoreResult:
        """Put a backup (default: the latest) in place of the live database.

        The backup is copied and checked before anything changes; the database it replaces
        is kept in the backups folder. The store is reopened (and migrated) on the restored
        file, so services holding it keep working. Stop streaming replies first: a reply
        that began before the restore has no row to save into afterwards.
        """
        chosen = _choose_backup(backup, self.backups_dir)
        prepared = _prepare_restore_copy(chosen, self._store.path.parent, self._store.key)
        keep_as = self.backups_dir / f"{REPLACED_PREFIX}{_utc_stamp()}{BACKUP_SUFFIX}"
        try:
            with self._store.offline() as db_path:
                kept = _swap_in(db_path, prepared, keep_as)
        finally:
            if prepared.exists():  # the swap failed and put everything back
                _remove_quietly(prepared)
        return RestoreResult(backup=chosen, previous_kept_as=kept)
