"""Overwrite-then-delete for files that held the user's text: the plaintext database a migration
replaced, the copy of the documents a training job read, a sentiment student's labelled texts.

Below assistant/ and training/ (every process imports engine/), so the app, the vault's migration
and a training job at its end remove such files one way. Any thread, any process.

What overwriting promises is written in SECURITY.md: on a disk that writes in place (most hard
disks, most file systems without copy-on-write) the old bytes are gone; an SSD's wear levelling
or a copy-on-write file system may keep old blocks that no program can reach, which is why the
database is encrypted in the first place and why a training job keeps its copies only while it
may still need them.
"""

from __future__ import annotations

import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

__all__ = ["shred_file", "shred_tree", "shredding_replaced"]

#: Zeros written per call: large enough to be quick, small enough to cost no memory to speak of.
_CHUNK = 1 << 20


def _zero(handle, size: int) -> None:
    """Write ``size`` zeros from the start of the open binary ``handle`` and flush them to the disk."""
    chunk = b"\x00" * min(size, _CHUNK)
    handle.seek(0)
    left = size
    while left > 0:
        left -= handle.write(chunk[: min(left, len(chunk))])
    handle.flush()
    os.fsync(handle.fileno())


def shred_file(path: str | os.PathLike) -> None:
    """Overwrite a file with zeros, flush it to the disk, then delete it; a missing file is fine
    (another process may have removed it first)."""
    target = Path(path)
    try:
        handle = open(target, "r+b", buffering=0)
    except FileNotFoundError:
        return
    with handle:
        _zero(handle, os.fstat(handle.fileno()).st_size)
    target.unlink(missing_ok=True)


@contextmanager
def shredding_replaced(path: str | os.PathLike) -> Iterator[None]:
    """Around an atomic replacement of ``path`` (a new file renamed over it): the old file is held
    open through the block, then its contents are overwritten with zeros. A reader finds a whole
    file at every moment, and the old bytes do not stay behind in freed blocks. A missing file is
    fine; if the block fails, the old file is left as it was."""
    try:
        handle = open(path, "r+b", buffering=0)
    except FileNotFoundError:
        yield
        return
    with handle:
        yield
        _zero(handle, os.fstat(handle.fileno()).st_size)


def shred_tree(folder: str | os.PathLike) -> None:
    """Shred every regular file below ``folder``, then remove the folder; a missing one is fine.

    Links are removed, never followed: what they point at is not this folder's to erase."""
    root = Path(folder)
    if not root.is_dir():
        return
    for path in sorted(root.rglob("*")):
        if path.is_file() and not path.is_symlink():
            shred_file(path)
    shutil.rmtree(root, ignore_errors=True)
