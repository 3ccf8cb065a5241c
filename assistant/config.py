"""Where the app keeps its files. Pure functions and a frozen dataclass: any thread.

`ASSISTANT_DATA_DIR` overrides the platform folder (tests, portable installs).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import platformdirs

from assistant import APP_ID


@dataclass(frozen=True)
class AppPaths:
    """Folders of one installation; created on first use."""

    data_dir: Path

    @property
    def database(self) -> Path:
        return self.data_dir / "assistant.sqlite3"

    @property
    def models_dir(self) -> Path:
        return self.data_dir / "models"

    @property
    def backups_dir(self) -> Path:
        return self.data_dir / "backups"

    @property
    def logs_dir(self) -> Path:
        return self.data_dir / "logs"

    @property
    def exports_dir(self) -> Path:
        return self.data_dir / "exports"

    def ensure(self) -> "AppPaths":
        for folder in (self.data_dir, self.models_dir, self.backups_dir, self.logs_dir):
            folder.mkdir(parents=True, exist_ok=True)
        return self


def default_paths() -> AppPaths:
    override = os.environ.get("ASSISTANT_DATA_DIR")
    base = Path(override) if override else Path(platformdirs.user_data_dir(APP_ID, appauthor=False))
    return AppPaths(data_dir=base.expanduser().resolve())
