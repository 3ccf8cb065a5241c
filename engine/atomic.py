"""Atomic file writes: a temporary file in the same folder, fsync, ``os.replace``. Any thread,
any process.

A reader never sees half a file: it finds the previous file or the new one, whole. A failed
write (disk full, permission, a crash of the writer's own code) leaves the previous file and
no temporary file behind. The temporary file is named by :mod:`engine.partial_files`
(``.<name>.<pid>.<random>.part``), so what a *killed* writer leaves is removed by
:func:`engine.partial_files.sweep_stale_partials`.

Below assistant/ and training/ (both import engine/), so every process writes files one way:

* :func:`atomic_path` -- the primitive: yields the temporary *path* for a writer that opens
  the file itself (llama.cpp's quantizer, the GGUF writers, a download); raises plain
  :class:`OSError`, so each caller words failures in its own terms.
* :func:`atomic_write`, :func:`atomic_write_text`, :func:`atomic_write_bytes`,
  :func:`write_json_atomic` -- a file handle or whole contents; failures are one
  :class:`WriteFailedError` whose message says where and why.
* :func:`atomic_dir` -- a whole folder (an adapter, a saved model, a checkpoint).

Files are created private (0600, as ``mkstemp`` makes them) unless ``permissions`` says
otherwise: settings and tokens stay private; models and results the user may share pass
``0o644``.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import IO, Any, Iterator

from engine.errors import UserError
from engine.partial_files import fsync_dir, partial_path

__all__ = [
    "WriteFailedError",
    "atomic_dir",
    "atomic_path",
    "atomic_write",
    "atomic_write_bytes",
    "atomic_write_text",
    "fsync_dir",
    "write_json_atomic",
]


class WriteFailedError(UserError, OSError):
    """A file could not be written; the message says where and why, nothing was changed."""


def _fsync_file(path: Path) -> None:
    with open(path, "rb+") as handle:
        os.fsync(handle.fileno())


@contextmanager
def atomic_path(path: str | os.PathLike, *, permissions: int | None = None,
                make_parents: bool = False) -> Iterator[Path]:
    """Yield a new, empty temporary file next to ``path`` for the caller to fill.

    When the block ends without an error the file is fsynced, given ``permissions`` (None
    keeps it private), renamed onto ``path`` and the folder entry made durable. On any
    error it is removed and ``path`` is untouched. Errors propagate unchanged.
    ``make_parents`` creates the missing folders above ``path`` first.
    """
    target = Path(path)
    if make_parents:
        target.parent.mkdir(parents=True, exist_ok=True)
    tmp = partial_path(target)
    try:
        yield tmp
        _fsync_file(tmp)
        if permissions is not None:
            os.chmod(tmp, permissions)
        os.replace(tmp, target)
        fsync_dir(target.parent)
    finally:
        tmp.unlink(missing_ok=True)  # gone already once renamed


@contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "w", encoding: str | None = "utf-8", *,
                 permissions: int | None = None) -> Iterator[IO]:
    """Yield a file handle (``mode`` "w" or "wb") whose contents replace ``path`` when the
    block ends without an error. Any :class:`OSError` becomes one :class:`WriteFailedError`."""
    target = Path(path)
    try:
        with ExitStack() as stack:
            try:
                tmp = stack.enter_context(atomic_path(target, permissions=permissions))
            except OSError as exc:
                raise WriteFailedError(exc.errno, f"Cannot write to {target.parent}: {exc.strerror}") from exc
            except ValueError as exc:  # a NUL byte in the name: no file system accepts it
                raise WriteFailedError(errno.EINVAL, f"{str(target)!r} is not a valid file name") from exc
            binary = "b" in mode
            with open(tmp, mode, encoding=None if binary else encoding) as handle:
                yield handle
    except WriteFailedError:
        raise
    except OSError as exc:
        raise WriteFailedError(exc.errno, f"Cannot write {target}: {exc.strerror or exc}") from exc


def atomic_write_bytes(path: str | os.PathLike, data: bytes, *, permissions: int | None = None) -> None:
    with atomic_write(path, "wb", encoding=None, permissions=permissions) as handle:
        handle.write(data)


def atomic_write_text(path: str | os.PathLike, text: str, *, permissions: int | None = None) -> None:
    with atomic_write(path, "w", permissions=permissions) as handle:
        handle.write(text)


def write_json_atomic(path: str | os.PathLike, data: Any, *, permissions: int | None = None) -> None:
    """``data`` as indented JSON; values JSON does not know (paths, dates) are written as text."""
    atomic_write_text(path, json.dumps(data, indent=2, default=str), permissions=permissions)


@contextmanager
def atomic_dir(path: str | os.PathLike, *, replace: bool = True) -> Iterator[Path]:
    """Yield a new, empty temporary folder next to ``path`` for the caller to fill.

    When the block ends without an error every file in it is fsynced, a folder already at
    ``path`` is removed and the new one renamed into place (a reader may find no folder
    between those two steps, never a half-written one). With ``replace`` False a folder
    already there (another process's, finished first) is kept and the rename raises
    :class:`OSError`. On any error the temporary folder is removed and ``path`` is untouched.
    """
    target = Path(path)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        yield tmp
        for item in tmp.rglob("*"):
            if item.is_file():
                _fsync_file(item)
        if replace and target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
        fsync_dir(target.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
