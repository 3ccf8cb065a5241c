"""The window's lock (issue 24): the page shown while locked, the idle watch behind auto-lock,
and the pool-thread work of locking (closing the data) and unlocking.

What locking does, and why in this order (:meth:`ui.main_window.MainWindow.lock`):

1. GUI thread, at once: the API server answers 423 from here on; the reply stops, an incognito
   chat is forgotten, every pane's work is cancelled and its callbacks dropped, the panes are
   torn down and replaced by fresh empty ones behind this page. Nothing the user wrote is on
   the screen any more, and no widget holds it.
2. Pool thread (:func:`close_for_lock`): the marker that makes the command line and other API
   servers refuse is written; the stopped work is waited for (a stopped reply is still being
   saved), the API server lets go of the services; the store and the engine worker are closed.
   The engine worker goes too: it keeps the last prompt's tokens for reuse, which are the
   user's words.
3. Unlocking runs :class:`ui.unlock.UnlockFlow` again (nothing asked with a keyring, the
   passphrase otherwise), builds new services, fills the fresh panes, then removes the marker.

GUI thread only, except the functions that say otherwise.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Callable, Iterable

from PySide6.QtCore import QEvent, QObject, Qt, QThread, QTimer, Signal
from PySide6.QtWidgets import QApplication, QLabel, QPushButton, QVBoxLayout, QWidget

if TYPE_CHECKING:
    from assistant.api.server import ServerSwitch
    from assistant.app import Services
    from assistant.config import AppPaths
    from ui.jobs import Job

#: How long locking waits for stopped work to end before closing the data under it (a job that
#: ignores cancelling, such as hashing a large model file, then fails instead of writing).
STOPPED_WORK_WAIT_S = 60.0

#: The events that count as the user being at the app. Mouse moves over a window count too (a
#: user reading a reply often moves the mouse and nothing else).
INPUT_EVENTS = frozenset({
    QEvent.Type.KeyPress, QEvent.Type.MouseButtonPress, QEvent.Type.MouseButtonDblClick,
    QEvent.Type.MouseMove, QEvent.Type.HoverMove, QEvent.Type.Wheel, QEvent.Type.TouchBegin,
    QEvent.Type.TouchUpdate, QEvent.Type.InputMethod,
})


class LockPage(QWidget):
    """"Locked" and one Unlock button that has the focus, so Enter (or Space) unlocks."""

    sig_unlock_requested = Signal()

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("LockPage")
        self.setAccessibleName("Locked")
        layout = QVBoxLayout(self)
        layout.addStretch(1)
        self.title = QLabel("Locked", self)
        self.title.setObjectName("PaneTitle")
        self.title.setAlignment(Qt.AlignmentFlag.AlignCenter)
        layout.addWidget(self.title)
        self.text = QLabel("Your conversations and documents are closed and encrypted. Unlock to open them "
                           "again.", self)
        self.text.setWordWrap(True)
        self.text.setAlignment(Qt.AlignmentFlag.AlignCenter)
        layout.addWidget(self.text)
        self.unlock_button = QPushButton("Unlock", self)
        self.unlock_button.setAccessibleName("Unlock")
        self.unlock_button.setDefault(True)
        self.unlock_button.setMinimumWidth(160)
        self.unlock_button.clicked.connect(self.sig_unlock_requested)
        layout.addWidget(self.unlock_button, 0, Qt.AlignmentFlag.AlignHCenter)
        self.status = QLabel("", self)
        self.status.setAccessibleName("Lock status")
        self.status.setObjectName("MutedLabel")
        self.status.setWordWrap(True)
        self.status.setAlignment(Qt.AlignmentFlag.AlignCenter)
        layout.addWidget(self.status)
        layout.addStretch(2)
        self.hide()

    def show_locking(self) -> None:
        self.unlock_button.setEnabled(False)
        self.status.setText("Locking: finishing what was running and closing your data…")

    def show_locked(self, message: str = "") -> None:
        self.unlock_button.setEnabled(True)
        self.unlock_button.setText("Unlock")
        self.status.setText(message)
        self.unlock_button.setFocus(Qt.FocusReason.OtherFocusReason)
        # Again once a closing dialog has handed the focus back to whatever had it before.
        QTimer.singleShot(0, self, lambda: self.unlock_button.setFocus(Qt.FocusReason.OtherFocusReason))

    def show_unlocking(self) -> None:
        self.unlock_button.setEnabled(False)
        self.status.setText("Unlocking…")


class IdleWatcher(QObject):
    """Emits :attr:`sig_idle` after ``idle_s`` seconds with no keyboard or mouse input to any
    window of the app (an application-wide event filter notes the time of each input; one timer
    checks at the deadline). ``is_busy()`` True at the deadline counts as activity: a reply being
    written or a job the user waits for is not stopped by a lock they did not ask for."""

    sig_idle = Signal()

    def __init__(self, parent: QObject, is_busy: Callable[[], bool]):
        super().__init__(parent)
        self.is_busy = is_busy
        self.idle_s = 0.0
        self.last_input = time.monotonic()
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.timeout.connect(self._check)
        app = QApplication.instance()
        assert app is not None
        # Parented to the window: Qt drops the filter when the window is deleted.
        app.installEventFilter(self)

    def set_idle_seconds(self, seconds: float) -> None:
        """0 turns auto-lock off; any other value starts the watch afresh."""
        self.idle_s = max(0.0, float(seconds))
        self.restart()

    def restart(self) -> None:
        self.last_input = time.monotonic()
        if self.idle_s > 0:
            self._timer.start(int(self.idle_s * 1000))
        else:
            self._timer.stop()

    def stop(self) -> None:
        self._timer.stop()

    @property
    def active(self) -> bool:
        return self._timer.isActive()

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:  # noqa: N802 (Qt's name)
        if event.type() in INPUT_EVENTS:
            self.last_input = time.monotonic()
        return False

    def _check(self) -> None:
        remaining = self.idle_s - (time.monotonic() - self.last_input)
        if remaining > 0:
            self._timer.start(max(1, int(remaining * 1000)))
            return
        # A dialog or menu running its own event loop (a file chooser, a question) must not
        # have the panes under it torn down; that is the user in the middle of something too.
        if self.is_busy() or QThread.currentThread().loopLevel() > 1:
            self.restart()
            return
        self.sig_idle.emit()


# ----- pool-thread work ---------------------------------------------------------------------------
def close_for_lock(services: "Services", paths: "AppPaths", api_switch: "ServerSwitch | None",
                   stopped: Iterable["Job"], wait_s: float = STOPPED_WORK_WAIT_S) -> str:
    """Pool thread: mark the data locked for other processes, wait for the stopped work, let the
    API server go of the services, close them. Returns "" or a sentence about what went wrong
    (the data is closed either way)."""
    from assistant.app import vault_for

    problems = []
    try:
        vault_for(paths).mark_locked()
    except OSError as exc:
        problems.append(f"The command line could not be told that the window is locked ({exc.strerror or exc}).")
    deadline = time.monotonic() + wait_s
    for job in stopped:
        job.done.wait(max(0.0, deadline - time.monotonic()))
    if api_switch is not None and not api_switch.drain(max(1.0, deadline - time.monotonic())):
        problems.append("A request to the local API server was still running and was stopped.")
    services.close()
    return " ".join(problems)

