"""Encrypted SQLite files: SQLCipher 4 through ``sqlcipher3``, the one database driver of the app.

Every database the app writes is opened here, keyed with a raw random 256-bit key (``x'..'``:
the key is already random, so SQLCipher's passphrase KDF would only slow each open; a user's
passphrase is stretched once by :mod:`assistant.vault.keys` instead). AES-256 in CBC mode with a
per-page random IV and an HMAC per page, so a changed byte on disk is found, not read. The HMAC
is HMAC-SHA256 rather than SQLCipher 4's default HMAC-SHA512: checking the MAC is most of the
cost of reading a page, CPUs with SHA extensions (recent x86 and every ARM64 Mac) compute
SHA-256 in hardware, and ``benchmarks/encryption_overhead.py`` measured searches and single
inserts closer to plaintext with it; a 256-bit MAC is as strong a guard against tampering here.

Why sqlcipher3 (the ``sqlcipher3-wheels`` build, SQLCipher 4 community edition) and not
``apsw-sqlite3mc``: both ship wheels for Linux, macOS and Windows with FTS5, but sqlcipher3
is a DB-API 2.0 module shaped like the standard ``sqlite3``, so ``sqlite-utils`` (the app's
storage layer) works on its connections unchanged, where APSW would need the ``apswutils``
fork of sqlite-utils and a different cursor and transaction model throughout. The speed of
the two is measured by ``benchmarks/encryption_overhead.py`` against plaintext.

:data:`dbapi` is the driver module: code that catches database errors catches
``dbapi.OperationalError`` / ``dbapi.DatabaseError`` (the standard ``sqlite3`` classes are
different classes and would not match).

Pure functions; any thread. A connection is used by one thread at a time (the store's lock).
"""

from __future__ import annotations

import os
import secrets

from sqlcipher3 import dbapi2 as dbapi

from assistant.errors import StoreError
# One shredder for every process: training jobs shred their copies of the user's text with it too,
# and they may import engine/ but not assistant/. Re-exported here for the vault's migration.
from engine.shred import shred_file  # noqa: F401

#: Bytes of a database key (AES-256).
KEY_BYTES = 32
#: The first 16 bytes of every plaintext SQLite file; an encrypted file starts with its salt.
PLAINTEXT_HEADER = b"SQLite format 3\x00"
#: Per page MAC (see the module docstring); set on every connection and as the process's
#: default, so that databases attached for an export or a backup use it too.
HMAC_ALGORITHM = "HMAC_SHA256"


def _set_process_defaults() -> None:
    conn = dbapi.connect(":memory:")
    try:
        conn.execute(f"PRAGMA cipher_default_hmac_algorithm = {HMAC_ALGORITHM}")
    finally:
        conn.close()


_set_process_defaults()


class WrongKeyError(StoreError):
    """The key does not open this database (or the file is not a database at all)."""


def new_key() -> bytes:
    """A fresh random database key from the OS's CSPRNG."""
    return secrets.token_bytes(KEY_BYTES)


def key_pragma_value(key: bytes) -> str:
    """The raw-key form SQLCipher takes for PRAGMA key / rekey / ATTACH ... KEY."""
    if len(key) != KEY_BYTES:
        raise ValueError(f"A database key has {KEY_BYTES} bytes, not {len(key)}.")
    return f"\"x'{key.hex()}'\""


def is_plaintext_database(path: str | os.PathLike) -> bool:
    """True when ``path`` is an unencrypted SQLite file (what versions before encryption wrote)."""
    try:
        with open(path, "rb") as handle:
            return handle.read(len(PLAINTEXT_HEADER)) == PLAINTEXT_HEADER
    except OSError:
        return False


def connect(path: str | os.PathLike, key: bytes, *, check: bool = True) -> "dbapi.Connection":
    """Open ``path`` keyed with ``key`` (autocommit; transactions are explicit).

    With ``check`` the key is proven at once by reading the schema, so a wrong key is one
    :class:`WrongKeyError` here rather than a "file is not a database" at the first query.
    A missing file is created (encrypted from its first page).
    """
    conn = dbapi.connect(str(path), check_same_thread=False, isolation_level=None)
    try:
        # SQLCipher logs a failed HMAC check to stderr by default; a wrong key is reported to
        # the user in words instead, and logs must never carry anything about the data.
        conn.execute("PRAGMA cipher_log_level = NONE")
        conn.execute(f"PRAGMA key = {key_pragma_value(key)}")
        conn.execute(f"PRAGMA cipher_hmac_algorithm = {HMAC_ALGORITHM}")
        if check:
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except dbapi.DatabaseError as exc:
        conn.close()
        if getattr(exc, "sqlite_errorcode", None) == getattr(dbapi, "SQLITE_NOTADB", 26):
            raise WrongKeyError(
                f"The key does not open {path}: it was encrypted with another key, or it is not a "
                "database of this app.") from None
        raise
    except BaseException:
        conn.close()
        raise
    return conn


def harden(conn: "dbapi.Connection") -> None:
    """Per-connection settings that keep deleted text off the disk (see SECURITY.md):
    ``secure_delete`` overwrites freed pages with zeros, and temporary tables and indices
    (sorts, FTS merges) stay in memory rather than in unencrypted temp files."""
    conn.execute("PRAGMA secure_delete = ON")
    conn.execute("PRAGMA temp_store = MEMORY")


def export_encrypted(source: "dbapi.Connection", target: str | os.PathLike, key: bytes) -> None:
    """Write the whole database of ``source`` (plaintext or encrypted) into the new file
    ``target`` encrypted with ``key``, schema version included (``sqlcipher_export``)."""
    version = source.execute("PRAGMA user_version").fetchone()[0]
    source.execute(f"ATTACH DATABASE ? AS export_target KEY {key_pragma_value(key)}", (str(target),))
    try:
        source.execute("SELECT sqlcipher_export('export_target')")
        source.execute(f"PRAGMA export_target.user_version = {int(version)}")
    finally:
        source.execute("DETACH DATABASE export_target")
