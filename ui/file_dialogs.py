"""Where the window's Open and Save dialogs start: beside the file being worked on, else in the
user's home folder; never the process's working folder (wherever the app was launched from).

Qt-free path logic, so that a test can check the folder a dialog would be given without
opening a native dialog. GUI thread (it only looks at the disk to see whether a folder exists).
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["start_folder", "beside"]


def start_folder(near: str | Path | None = None) -> str:
    """The folder an Open dialog starts in: that of ``near`` (a file or folder the user chose
    before) when it still exists, else the home folder."""
    if near:
        near = Path(near).expanduser()
        folder = near if near.is_dir() else near.parent
        if folder.is_dir():
            return str(folder)
    return str(Path.home())


def beside(near: str | Path | None, name: str) -> str:
    """The path a Save dialog proposes: ``name`` in :func:`start_folder` of ``near``."""
    return str(Path(start_folder(near)) / name)
