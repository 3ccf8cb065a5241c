"""Settings → Backups: the backups of the database, newest first, "Back up now" and "Restore…"
(issue 24); and the pool-thread work of restoring, used here and by the window's banner for a
damaged database (:meth:`ui.main_window.MainWindow.restore_newest_backup`).

The restore itself is the window's (:meth:`ui.main_window.MainWindow.restore_backup`): the reply
is stopped and the panes are rebuilt around it; this section asks which backup and confirms in
words. GUI thread only, except the functions that say otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QMessageBox,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

if TYPE_CHECKING:
    from assistant.app import Services
    from assistant.backups import RestoreResult
    from assistant.config import AppPaths
    from ui.jobs import Job, Jobs

NOTE = ("A backup is made automatically each day the app is used and before each update of the "
        "database, and the last 7 are kept. Backups are encrypted with the same key as the database.")


@dataclass(frozen=True)
class BackupRow:
    path: Path
    made: datetime  # local time
    size: int

    @property
    def when(self) -> str:
        return self.made.strftime("%Y-%m-%d %H:%M")


# ----- pool-thread work ---------------------------------------------------------------------------
def backup_rows(backups_dir: Path) -> list[BackupRow]:
    """Pool thread: the backups, newest first, with when each was made and its size."""
    from assistant.backups import list_backups

    rows = []
    for path in reversed(list_backups(backups_dir)):
        try:
            stat = path.stat()
        except OSError:
            continue  # removed meanwhile (the oldest, by a new backup)
        rows.append(BackupRow(path, datetime.fromtimestamp(stat.st_mtime), stat.st_size))
    return rows


def newest_backup_row(backups_dir: Path) -> BackupRow | None:
    """Pool thread: the newest backup, or None when there is none."""
    rows = backup_rows(backups_dir)
    return rows[0] if rows else None


def back_up_now(services: "Services") -> Path:
    """Pool thread: one backup now (the oldest beyond the last 7 is removed)."""
    return services.backups.backup()


def restore_in_place(services: "Services", backup: Path, stopped: Iterable["Job"],
                     wait_s: float = 60.0) -> "RestoreResult":
    """Pool thread: wait for the window's stopped work, put ``backup`` in place of the open
    database (checked first; the replaced file is kept) and reload what was read from it."""
    import time

    deadline = time.monotonic() + wait_s
    for job in stopped:
        job.done.wait(max(0.0, deadline - time.monotonic()))
    result = services.backups.restore(backup)
    services.reload_after_restore()
    return result


def restore_damaged_database(paths: "AppPaths", holder: dict) -> tuple["RestoreResult", "Services"]:
    """Pool thread: the database could not be opened (damaged): put the newest backup in its
    place, keeping the damaged file, and open the library again. The key is the one the unlock
    just proved (``holder["unlocked"]``, see :func:`ui.unlock.build_unlocked`), else the keyring's."""
    from assistant.app import build_services, vault_for
    from assistant.backups import restore_database_file

    unlocked = holder.get("unlocked") or vault_for(paths).unlock(None)
    result = restore_database_file(paths.database, None, paths.backups_dir, unlocked.key)
    services = build_services(paths, unlocked=unlocked)
    holder.pop("unlocked", None)  # the services hold the key now
    holder["services"] = services  # the window closes it, even if it is gone by the time this returns
    return result, services


def restored_message(result: "RestoreResult", made: str) -> str:
    kept = (f" The database it replaced is kept as {result.previous_kept_as}."
            if result.previous_kept_as else "")
    return f"Restored the backup made {made}.{kept}"


# ----- the section ----------------------------------------------------------------------------------
class BackupsSection(QGroupBox):
    """The list of backups, "Back up now", "Restore…". ``sig_restore_requested(path, when)`` is
    sent once the user has confirmed; the window restores and rebuilds the panes."""

    sig_restore_requested = Signal(object, str)  # the backup's Path, when it was made (words)

    def __init__(self, parent: QWidget | None = None):
        super().__init__("Backups", parent)
        self.setAccessibleName("Backups")
        self.services: Services | None = None
        self.jobs: Jobs | None = None
        self.rows: list[BackupRow] = []
        #: Asks "Restore this backup?"; a test replaces it to answer without a dialog.
        self.confirm: Callable[[BackupRow], bool] = self._confirm
        layout = QVBoxLayout(self)
        note = QLabel(NOTE, self)
        note.setObjectName("MutedLabel")
        note.setWordWrap(True)
        layout.addWidget(note)
        self.list = QListWidget(self)
        self.list.setAccessibleName("Backups, newest first")
        self.list.setMaximumHeight(150)
        self.list.currentRowChanged.connect(lambda _row: self._update_buttons())
        layout.addWidget(self.list)
        row = QHBoxLayout()
        self.back_up_button = QPushButton("Back up now", self)
        self.back_up_button.setAccessibleName("Back up now")
        self.back_up_button.clicked.connect(self.back_up)
        self.restore_button = QPushButton("Restore…", self)
        self.restore_button.setAccessibleName("Restore the chosen backup")
        self.restore_button.setToolTip("Replace your conversations, documents and settings with the chosen backup. "
                                       "The current database is kept in the backups folder.")
        self.restore_button.clicked.connect(self.restore)
        row.addWidget(self.back_up_button)
        row.addWidget(self.restore_button)
        row.addStretch(1)
        layout.addLayout(row)
        self.status = QLabel("", self)
        self.status.setObjectName("MutedLabel")
        self.status.setAccessibleName("Backups status")
        self.status.setWordWrap(True)
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout.addWidget(self.status)
        self._update_buttons()

    def set_services(self, services: "Services", jobs: "Jobs") -> None:
        self.services, self.jobs = services, jobs
        self.refresh()

    def refresh(self) -> None:
        if self.services is None or self.jobs is None:
            return
        self.jobs.run(backup_rows, self.services.paths.backups_dir, on_done=self._fill, on_error=self._failed)

    def _fill(self, rows: list[BackupRow]) -> None:
        from engine.units import human_size

        self.rows = rows
        self.list.clear()
        for row in rows:
            item = QListWidgetItem(f"{row.when}    {human_size(row.size)}")
            item.setToolTip(str(row.path))
            self.list.addItem(item)
        if not rows:
            item = QListWidgetItem("No backup yet.")
            item.setFlags(Qt.ItemFlag.NoItemFlags)
            self.list.addItem(item)
        else:
            self.list.setCurrentRow(0)
        self._update_buttons()

    def _update_buttons(self) -> None:
        busy = self.services is None
        self.back_up_button.setEnabled(not busy)
        self.restore_button.setEnabled(not busy and self.chosen() is not None)

    def chosen(self) -> BackupRow | None:
        index = self.list.currentRow()
        return self.rows[index] if 0 <= index < len(self.rows) else None

    def back_up(self) -> None:
        if self.services is None or self.jobs is None:
            return
        self.back_up_button.setEnabled(False)
        self.status.setText("Backing up…")
        self.jobs.run(back_up_now, self.services, on_done=self._backed_up, on_error=self._failed)

    def _backed_up(self, path: Path) -> None:
        self.status.setText(f"Backed up to {path}.")
        self.refresh()

    def restore(self) -> None:
        row = self.chosen()
        if row is None or self.services is None:
            return
        if self.confirm(row):
            self.status.setText(f"Restoring the backup made {row.when}…")
            self.sig_restore_requested.emit(row.path, row.when)

    def _confirm(self, row: BackupRow) -> bool:
        box = QMessageBox(QMessageBox.Icon.Question, "Restore this backup?",
                          f"Replace your conversations, documents and settings with the backup made {row.when}?\n\n"
                          "What you wrote or added since then is not in it. The current database is kept in the "
                          "backups folder, so nothing is thrown away. A reply being written is stopped first.",
                          QMessageBox.StandardButton.Cancel, self)
        restore = box.addButton("Restore", QMessageBox.ButtonRole.AcceptRole)
        box.setDefaultButton(QMessageBox.StandardButton.Cancel)  # Enter must not replace the data
        box.exec()
        return box.clickedButton() is restore

    def show_status(self, text: str) -> None:
        self.status.setText(text)

    def _failed(self, message: str, _exc: Any = None) -> None:
        self.status.setText(message)
        self._update_buttons()
