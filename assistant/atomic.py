"""Atomic file writes: temp file in the same folder, fsync, os.replace. Any thread.

A reader never sees half a file, and a failed write (disk full, permission) leaves the
previous file and no stray temp file behind.
"""

from __future__ import annotations

import errno
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Iterator

from engine.partial_files import fsync_dir  # noqa: F401  (re-exported: history.py uses it)


class WriteFailedError(OSError):
    """A file could not be written; the message says where and why, nothing was changed."""


@contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "w", encoding: str | None = "utf-8") -> Iterator[IO]:
    target = Path(path)
    binary = "b" in mode
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    except OSError as exc:
        raise WriteFailedError(exc.errno, f"Cannot write to {target.parent}: {exc.strerror}") from exc
    except ValueError as exc:  # a NUL byte in the name: no file system accepts it
        raise WriteFailedError(errno.EINVAL, f"{str(target)!r} is not a valid file name") from exc
    try:
        with os.fdopen(fd, mode, encoding=None if binary else encoding) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, target)
        fsync_dir(target.parent)
    except BaseException as exc:
        try:
            os.unlink(tmp_name)
        except FileNotFoundError:
            pass
        if isinstance(exc, OSError) and not isinstance(exc, WriteFailedError):
            raise WriteFailedError(exc.errno, f"Cannot write {target}: {exc.strerror or exc}") from exc
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_write(path, "wb", encoding=None) as handle:
        handle.write(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_write(path, "w") as handle:
        handle.write(text)
