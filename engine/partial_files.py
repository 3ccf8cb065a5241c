"""Names of half-written files, and the sweep that removes those of dead writers.

Every large file the project writes (joined model pack, exported and quantized models,
adapters) is written under a temporary hidden name in its final folder and renamed when
complete, so a reader never sees half a file. A writer killed mid-way (SIGKILL, power cut)
leaves its temporary file behind: up to hundreds of megabytes nobody will ever finish.
The temporary name therefore carries the writer's process id,

    .<final name>.<pid>.<random>.part

and :func:`sweep_stale_partials` deletes the files of processes that are no longer
running. It runs on whatever thread calls it (the library's set-up, a training job's
start); it only touches names of exactly this shape.

Below assistant/ and training/ (both import engine/), so all of them share one naming.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

SUFFIX = ".part"
_PARTIAL = re.compile(r"^\..+\.(?P<pid>\d+)\.[A-Za-z0-9_]+\.part$")


def partial_path(final: str | os.PathLike, tag: str | None = None) -> Path:
    """Create (empty) and return a temporary file next to ``final`` named for this process.

    ``tag`` replaces the random part when the caller needs a predictable name (a staging
    file another step reads); the file is then created fresh, replacing an older one.
    """
    final = Path(final)
    prefix = f".{final.name}.{os.getpid()}."
    if tag is not None:
        if not re.fullmatch(r"[A-Za-z0-9_]+", tag):
            raise ValueError(f"a partial-file tag is letters, digits and _ only, not {tag!r}")
        path = final.with_name(prefix + tag + SUFFIX)
        path.write_bytes(b"")
        return path
    fd, name = tempfile.mkstemp(prefix=prefix, suffix=SUFFIX, dir=final.parent)
    os.close(fd)
    return Path(name)


def writer_pid(path: str | os.PathLike) -> int | None:
    """The process id in a partial file's name, or None when the name is not one of ours."""
    match = _PARTIAL.match(Path(path).name)
    return int(match.group("pid")) if match else None


def _running(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def sweep_stale_partials(folder: str | os.PathLike) -> list[Path]:
    """Delete the partial files in ``folder`` whose writer is no longer running.

    Returns what was removed. A pid reused by an unrelated process keeps its file until the
    next sweep, the safe direction; files of live writers are never touched.
    """
    removed: list[Path] = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        pid = writer_pid(entry.name)
        if pid is None or _running(pid):
            continue
        try:
            if entry.is_file(follow_symlinks=False):
                os.unlink(entry.path)
                removed.append(Path(entry.path))
        except OSError:
            continue  # gone already, or not ours to delete: leave it
    return removed


def fsync_dir(folder: str | os.PathLike) -> None:
    """Make a rename in ``folder`` durable (its entry on disk); some file systems cannot,
    which is no error. Shared by engine/atomic.py and the writers of large files."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
