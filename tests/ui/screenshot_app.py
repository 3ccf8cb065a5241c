"""Child process of test_screenshot.py: the real window, via ``ui.app.run``, under Xvfb.

Usage: python -m tests.ui.screenshot_app OUT.png CONVERSATION_ID [MESSAGE_ID]
Opens the conversation once the services are ready, waits for the engine to be ready (or
a time limit), takes the screen's real pixels and closes the window.
"""

from __future__ import annotations

import sys
import time

from PySide6.QtCore import QTimer
from PySide6.QtGui import QGuiApplication

from ui.app import run

#: Longest wait for the engine to report "ready" before the picture is taken anyway.
ENGINE_WAIT_S = 60.0


def main(argv: list[str]) -> int:
    out, conversation_id = argv[0], argv[1]
    started = time.monotonic()

    def shoot(window) -> None:
        if window.engine_state != "ready" and time.monotonic() - started < ENGINE_WAIT_S:
            QTimer.singleShot(250, window, lambda: shoot(window))
            return
        # A moment for the last layout pass after the engine status changed.
        QGuiApplication.processEvents()
        geometry = window.frameGeometry()
        screen = QGuiApplication.primaryScreen()
        picture = screen.grabWindow(0, geometry.x(), geometry.y(), geometry.width(), geometry.height())
        if not picture.save(out):
            print(f"could not save {out}", file=sys.stderr)
        window.close()

    def milestone(name: str, window) -> None:
        if name == "services_ready":
            window.chat.open_conversation(conversation_id)
            QTimer.singleShot(1500, window, lambda: shoot(window))
        elif name == "services_failed":
            window.close()

    return run(["screenshot"], on_milestone=milestone)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
