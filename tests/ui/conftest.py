"""UI fixtures: the real window over real services (``services`` in tests/conftest.py), and a clean end."""

from __future__ import annotations

import gc
import os
import shutil
from pathlib import Path

import pytest

from PySide6.QtCore import QCoreApplication, QEvent



@pytest.fixture(autouse=True)
def delete_widgets_between_tests(qapp):
    """After each test, delete what it left for deletion, then collect Python's garbage.

    A Python-owned widget that is only reachable through reference cycles is freed whenever
    the cyclic collector next runs; if that is in the middle of the next test's theme change,
    while Qt walks every widget, the process crashes. Here it happens at a quiet moment.
    """
    yield
    QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
    gc.collect()
    QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)


@pytest.fixture
def jobs(qapp):
    """The window's one worker pool, as the window would pass it; shut down (and waited for) last."""
    from ui.jobs import Jobs

    adapter = Jobs()
    yield adapter
    assert adapter.shutdown()


@pytest.fixture
def theme(qapp):
    from ui.theme import ThemeController

    controller = ThemeController(qapp)
    controller.apply("system", 0)
    yield controller
    controller.restore()


@pytest.fixture
def window(qtbot, qapp, services, theme):
    """The real main window with real services, shown (offscreen), closed and waited for at the end."""
    from ui.app import create_window

    win = create_window(services, theme=theme)
    win.show()
    qtbot.waitExposed(win)
    # The panes fill from jobs; a test starts when the chat can send (not when the engine is
    # ready: the tests that chat wait for their reply, however long loading takes).
    qtbot.waitUntil(lambda: win.chat.ready, timeout=60000)
    yield win
    win.shutdown()
    win.close()
    # Deleted now, by Qt (see delete_widgets_between_tests for why not "whenever").
    win.deleteLater()
    QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
    del win
    gc.collect()
    qapp.processEvents()


def wait_idle(qtbot, win, timeout: int = 120000) -> None:
    """Wait until the chat pane has finished its reply (stored as complete or interrupted)."""
    qtbot.waitUntil(lambda: not win.chat.busy, timeout=timeout)


def link_joined_models(template: Path, data_dir: Path) -> None:
    """For a child process that syncs the default pack at start (``ui.app.run``): give it the
    template's joined files as hard links, so that it does not join Gemma's 250 MB again."""
    target = data_dir / "models"
    target.mkdir(parents=True, exist_ok=True)
    for source in sorted((template / "models").iterdir()):  # the model, then its .sha256 stamp
        link = target / source.name
        if not link.exists():
            try:
                os.link(source, link)
            except OSError:
                shutil.copy2(source, link)
