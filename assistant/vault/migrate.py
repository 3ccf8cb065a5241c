"""Encrypt the plaintext databases an earlier version left (the live one and its backups), crash-safe.

For each plaintext file ``F`` (steps, and what a kill at that point leaves):

1. its WAL is checkpointed into it; ``F.encrypting`` is written with ``sqlcipher_export`` and
   proven (``integrity_check``, the same row count in every table, the same schema version)
   and flushed. *Killed here:* ``F`` is untouched; the next start deletes the partial copy.
2. ``F.plaintext-old`` is made a second name (hard link) of ``F``. *Killed here:* ``F`` is
   still the plaintext original; the next start drops the extra name (unlink, not shred: it
   is the same file).
3. ``F.encrypting`` is renamed over ``F`` (atomic). *Killed after:* ``F`` is the complete
   encrypted copy; the next start shreds ``F.plaintext-old``.
4. ``F.plaintext-old`` (now the only name of the plaintext bytes) and the plaintext ``-wal`` /
   ``-shm`` are overwritten with zeros and deleted.

So every moment leaves either the old database intact or the new one complete, and the
plaintext is destroyed only once its encrypted copy is proven. Where hard links are not
supported (some network or FAT file systems), step 2 renames ``F`` instead and the next start
puts it back if step 3 never happened.

Runs before the store opens (the composition root, a worker thread); nothing else may have
the files open.
"""

from __future__ import annotations

import os
from pathlib import Path

from assistant.errors import StoreError
from assistant.vault.cipher import connect, dbapi, export_encrypted, is_plaintext_database, shred_file
from engine.atomic import fsync_dir

ENCRYPTING_SUFFIX = ".encrypting"
PLAINTEXT_OLD_SUFFIX = ".plaintext-old"


def plaintext_files(database: Path, backups_dir: Path) -> list[Path]:
    """The live database and every backup file that is still unencrypted."""
    found = [database] if is_plaintext_database(database) else []
    if backups_dir.is_dir():
        found += sorted(p for p in backups_dir.iterdir()
                        if p.suffix == ".sqlite3" and p.is_file() and is_plaintext_database(p))
    return found


def finish_interrupted(path: Path) -> None:
    """Clean up after a migration of ``path`` that was killed (see the module docstring)."""
    partial = Path(f"{path}{ENCRYPTING_SUFFIX}")
    old = Path(f"{path}{PLAINTEXT_OLD_SUFFIX}")
    if old.exists():
        if not path.exists():
            os.replace(old, path)            # the no-hard-link path, killed between its renames
        elif is_plaintext_database(path) and os.path.samefile(old, path):
            old.unlink()                     # killed before the swap: just the extra name
        else:
            shred_file(old)                  # killed after the swap: the plaintext must go
    if partial.exists():
        partial.unlink()                     # encrypted and unproven: never the only copy


def _table_counts(conn) -> dict[str, int]:
    names = [r[0] for r in conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")]
    counts = {}
    for name in names:
        try:
            counts[name] = conn.execute(f'SELECT count(*) FROM "{name}"').fetchone()[0]
        except dbapi.OperationalError:
            counts[name] = -1  # a virtual table whose module is absent; compared as such
    return counts


def encrypt_in_place(path: Path, key: bytes) -> None:
    """Replace the plaintext SQLite file ``path`` by an encrypted copy, as the module docstring says."""
    finish_interrupted(path)
    if not is_plaintext_database(path):
        return
    partial = Path(f"{path}{ENCRYPTING_SUFFIX}")
    old = Path(f"{path}{PLAINTEXT_OLD_SUFFIX}")
    source = dbapi.connect(str(path), isolation_level=None)
    try:
        source.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        expected, version = _table_counts(source), source.execute("PRAGMA user_version").fetchone()[0]
        export_encrypted(source, partial, key)
    except dbapi.DatabaseError as exc:
        source.close()
        if partial.exists():
            partial.unlink()
        raise StoreError(f"{path} could not be encrypted ({exc}); it was left as it was.") from None
    source.close()
    copy = connect(partial, key)
    try:
        problems = [r[0] for r in copy.execute("PRAGMA integrity_check").fetchall()]
        same = _table_counts(copy) == expected and copy.execute("PRAGMA user_version").fetchone()[0] == version
        copy.execute("PRAGMA journal_mode = DELETE")
    finally:
        copy.close()
    if problems != ["ok"] or not same:
        partial.unlink()
        raise StoreError(f"The encrypted copy of {path} did not match it; the original was left as it was.")
    with open(partial, "rb") as handle:
        os.fsync(handle.fileno())
    try:
        os.link(path, old)
    except OSError:
        os.replace(path, old)
    os.replace(partial, path)
    fsync_dir(path.parent)
    shred_file(old)
    for suffix in ("-wal", "-shm", "-journal"):
        shred_file(Path(f"{path}{suffix}"))
    fsync_dir(path.parent)


def encrypt_plaintext_data(database: Path, backups_dir: Path, key: bytes) -> list[Path]:
    """Encrypt the live database and every plaintext backup; returns the files encrypted.
    Interrupted earlier runs are finished or undone first."""
    finish_interrupted(database)
    if backups_dir.is_dir():
        for leftover in backups_dir.glob(f"*{PLAINTEXT_OLD_SUFFIX}"):
            finish_interrupted(Path(str(leftover)[: -len(PLAINTEXT_OLD_SUFFIX)]))
        for leftover in backups_dir.glob(f"*{ENCRYPTING_SUFFIX}"):
            leftover.unlink()
    done = []
    for path in plaintext_files(database, backups_dir):
        encrypt_in_place(path, key)
        done.append(path)
    return done
