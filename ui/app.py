"""Starts the desktop window: ``run()`` for the ``assistant`` command, ``create_window()`` for tests.

What happens on which thread, in order:

1. main thread: the privacy guard, the QApplication, the saved theme (``appearance.json``, the
   one unencrypted setting; "system" follows the desktop), the window (empty panes, engine
   status "not running"), ``show()``;
2. main thread, event loop: the first paint. Nothing before it unlocks or opens the store, the
   model files or the engine, so the window appears fast;
3. :class:`ui.unlock.UnlockFlow`: with a keyring nothing is asked; otherwise a passphrase
   dialog (or the recovery key dialog) on the main thread; then on a pool thread
   :func:`assistant.app.build_services` (unlocks, encrypts plaintext data of an earlier
   version, opens the store, syncs the default model pack, which joins Gemma's parts on the
   very first start); a new recovery key is shown once;
4. main thread: :meth:`MainWindow.set_services` fills the panes, then a pool thread starts
   the engine worker, whose status the window shows as it changes;
5. at exit: the window stops its reply and waits for its jobs, then closes the services it
   built (and the engine worker) and removes its lock marker.

Steps 3 and 4 are :meth:`MainWindow.open_library`; the window's lock (Ctrl+L, auto-lock) closes
the services and runs them again on unlock (:mod:`ui.lock`).
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Callable, Sequence

import assistant  # noqa: F401  (installs the privacy guard before anything else is imported)

from PySide6.QtWidgets import QApplication

from ui.main_window import MainWindow
from ui.theme import ThemeController

if TYPE_CHECKING:
    from assistant.app import Services

#: The reverse-DNS id of the desktop entry, AppStream metainfo and icon (packaging/).
DESKTOP_ID = "io.github.local_assistant.LocalAssistant"

#: Called with a milestone name ("first_paint", "services_ready", "services_failed") and the window.
Milestone = Callable[[str, MainWindow], None]


def application(argv: list[str] | None = None) -> QApplication:
    """The QApplication (created once per process); Fusion so that our palettes look the same everywhere."""
    app = QApplication.instance()
    if app is None:
        app = QApplication(list(argv) if argv is not None else sys.argv[:1])
        app.setStyle("Fusion")
    app.setApplicationName("Local Assistant")
    app.setApplicationDisplayName("Local Assistant")
    app.setOrganizationName("local-assistant")
    # The desktop entry's name (packaging/): lets Wayland and task bars match the window to
    # its entry and icon.
    app.setDesktopFileName(DESKTOP_ID)
    return app


def create_window(services: "Services | None" = None, theme: ThemeController | None = None) -> MainWindow:
    """A main window (not shown); with ``services`` its panes are filled at once.

    The caller keeps ownership of ``services`` and closes them after ``window.shutdown()``.
    """
    app = application()
    if theme is None:
        theme = ThemeController(app)
        theme.apply("system", 0)
    window = MainWindow(theme=theme)
    if services is not None:
        window.set_services(services)
    return window


def run(argv: list[str] | None = None, *, on_milestone: Milestone | None = None,
        open_files: Sequence[str] = ()) -> int:
    """Show the window, build the services after its first paint, run until it closes.

    ``open_files`` (.gguf paths, "Open with") are imported once the library is open. If a
    window of the same library is already running, they are handed to it, it comes to the
    front, and this returns 0 at once (:mod:`ui.single_instance`).
    """
    app = application(argv)
    from assistant.config import default_paths
    from ui.single_instance import SingleInstance, close_on_signals, serve_window

    instance = SingleInstance(default_paths().data_dir)
    if instance.pass_to_running(list(open_files)):
        print("Local Assistant is already open: its window was brought to the front"
              + (" and imports the files." if open_files else "."), file=sys.stderr)
        return 0
    theme = ThemeController(app)
    # The saved theme before the first paint (not once the library is open, ~2 s later: the
    # light theme flashed first); the store applies the same setting again when it is open.
    from assistant.settings import saved_appearance

    theme.apply(*saved_appearance(default_paths().data_dir))
    window = MainWindow(theme=theme)

    def milestone(name: str) -> None:
        if on_milestone is not None:
            on_milestone(name, window)

    window.sig_services_ready.connect(lambda: milestone("services_ready"))
    window.sig_services_failed.connect(lambda: milestone("services_failed"))

    # After the first paint: unlock (silent with a keyring, a dialog for a passphrase), then the
    # store and the library on the pool (the slow part of starting).
    def painted() -> None:
        milestone("first_paint")
        window.open_library(default_paths())

    window.sig_window_painted.connect(painted)
    serve_window(instance, window)
    window.drop_importer.import_files(list(open_files))
    restore_signals = close_on_signals(window)
    window.show()
    try:
        code = app.exec()
    finally:
        restore_signals()
        instance.close()
        window.shutdown()  # closes the services it built
    return int(code)


if __name__ == "__main__":
    raise SystemExit(run())
