"""The main window: navigation, the panes, the engine status, keyboard shortcuts, the lock.

Why one module of ~900 lines: the page table, the shortcut table and the actions built from
them, the page stack, and the lock, which tears the pages down and builds them again, are one
thing to read when adding a page; the dialogs live in :mod:`ui.help_dialogs`, the narrow widgets
in :mod:`ui.compact_widgets`, the lock page and the idle watch in :mod:`ui.lock`.

GUI thread only. The window is built and painted before the services exist (they are built
on a pool thread after the first paint, see :mod:`ui.app` and :meth:`MainWindow.open_library`);
:meth:`MainWindow.set_services` then fills the panes, and fills fresh ones again after each
unlock or restore. Who closes the services: the window's lock closes the ones it shows (that
is what locking is); the ones the window built itself (:meth:`open_library`, an unlock, the
restore of a damaged database) it closes in :meth:`MainWindow.shutdown`; services handed in by
a caller (``create_window(services)``) are the caller's to close after ``shutdown`` (closing
twice does nothing).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QEvent, QObject, QSize, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QCloseEvent, QIcon, QKeySequence
from PySide6.QtWidgets import (
    QApplication,
    QDialog,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QMainWindow,
    QSplitter,
    QStackedWidget,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from ui.chat.pane import ChatPane
from ui.chat.widgets import Banner
from ui.help_dialogs import AboutDialog, DocumentDialog, ShortcutsDialog
from ui.jobs import EngineStatusBridge, Jobs
from ui.lock import IdleWatcher, LockPage
from ui.models_pane import ModelsPane
from ui.settings_pane import SettingsPane
from ui.sidebar import Sidebar

if TYPE_CHECKING:
    from assistant.app import Services
    from assistant.config import AppPaths
    from ui.theme import ThemeController

#: (key, label, what is coming) for each page of the navigation, in order.
PAGES = (
    ("chat", "Chat", ""),
    ("translate", "Translate", ""),
    ("sentiment", "Sentiment", ""),
    ("documents", "Documents", ""),
    ("study", "Study", ""),
    ("train", "Train", ""),
    ("compress", "Compress", ""),
    ("models", "Models", ""),
    ("settings", "Settings", ""),
)

#: Pages whose pane is built once the services exist: key -> the pane's module and class. Each
#: is built as ``Pane(services, jobs)``: every pane's work runs on the window's one Jobs.
SERVICE_PAGES = {
    "translate": ("ui.translate_pane", "TranslatePane"),
    "sentiment": ("ui.sentiment_pane", "SentimentPane"),
    "documents": ("ui.documents_pane", "DocumentsPane"),
    "study": ("ui.study_pane", "StudyPane"),
    "train": ("ui.train_pane", "TrainPane"),
    "compress": ("ui.compress_pane", "CompressPane"),
}

#: The window's own actions' keys, by action name. Ctrl+1 to Ctrl+8 open the first eight pages
#: in the order of the navigation; Settings keeps the desktop's usual Ctrl+,.
ACTION_KEYS = {
    "new_chat": "Ctrl+N",
    # As a browser's private window: the same letter as a new chat, with Shift.
    "new_incognito_chat": "Ctrl+Shift+N",
    "search": "Ctrl+F",
    "composer": "Ctrl+K",
    **{f"page_{key}": f"Ctrl+{number}" for number, (key, _l, _c) in enumerate(PAGES[:8], start=1)},
    "page_settings": "Ctrl+,",
    # As the desktop's own screen lock (Super+L) and browsers' password managers.
    "lock": "Ctrl+L",
    "shortcuts": "F1",
    "quit": "Ctrl+Q",
}

#: What each action does, as its tooltip and the shortcut help say it.
ACTION_HELP = {
    "new_chat": "New chat",
    "new_incognito_chat": "New incognito chat (never saved)",
    "search": "Search all conversations",
    "composer": "Focus the message box",
    **{f"page_{key}": f"Go to {label}" for key, label, _c in PAGES},
    "lock": "Lock now: close your data and clear it from the window",
    "shortcuts": "Keyboard shortcuts",
    "quit": "Quit",
}

#: Every shortcut, as the help (F1) lists it: the window's actions, then the keys the chat,
#: the sidebar and the writing suggestions handle themselves (ui/chat, ui/sidebar.py,
#: ui/suggesting_edit.py).
SHORTCUTS = tuple((ACTION_KEYS[name], ACTION_HELP[name]) for name in ACTION_KEYS if name != "quit") + (
    ("Enter", "Send the message"),
    ("Shift+Enter", "New line in the message"),
    ("Tab", "Accept the grey writing suggestion (typing its next letters keeps the rest; any other key dismisses it)"),
    ("Esc", "Stop the reply (or cancel editing)"),
    ("F2", "Rename the selected conversation"),
    ("Delete", "Delete the selected conversation (Undo offered)"),
    (ACTION_KEYS["quit"], ACTION_HELP["quit"]),
)

#: The actions that stay on while the window is locked: they show nothing of the user's data.
ALWAYS_AVAILABLE_ACTIONS = frozenset({"shortcuts", "user_guide", "privacy", "about", "quit"})

ENGINE_STATES = {
    "stopped": "Engine: not running",
    "starting": "Engine: starting…",
    "loading": "Engine: loading model…",
    "preparing": "Engine: making a faster copy of the model (once)…",
    "ready": "Engine: ready",
    "error": "Engine: error",
}


class ComingSoonPane(QWidget):
    """A page whose feature is not built yet: it says what is coming, and nothing can break."""

    def __init__(self, title: str, text: str, parent: QWidget | None = None):
        super().__init__(parent)
        self.setAccessibleName(title)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(28, 24, 28, 24)
        heading = QLabel(title)
        heading.setObjectName("PaneTitle")
        layout.addWidget(heading)
        body = QLabel(f"{text}\n\nComing soon. Like everything here, it will run on this computer only.")
        body.setObjectName("ComingSoon")
        body.setWordWrap(True)
        body.setAccessibleName(f"{title}: coming soon")
        layout.addWidget(body)
        layout.addStretch(1)


class _FirstPaintWatcher(QObject):
    """Emits once, right after the window's first paint has been handed to the screen."""

    def __init__(self, window: "MainWindow"):
        super().__init__(window)
        self.window = window
        window.installEventFilter(self)

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:  # noqa: N802
        if obj is self.window and event.type() == QEvent.Type.Paint:
            self.window.removeEventFilter(self)
            # Zero-delay: runs after this paint pass (and its flush) completes.
            QTimer.singleShot(0, self.window, self.window._first_painted)
        return False


class ServicePage(QWidget):
    """A page whose pane needs the services: a short notice until they exist, then the pane.

    GUI thread only. The window paints before the library is open (see :mod:`ui.app`), so
    these panes are built in :meth:`MainWindow.set_services`, not in the constructor.
    """

    def __init__(self, title: str, parent: QWidget | None = None):
        super().__init__(parent)
        self.setAccessibleName(f"{title} page")
        self.pane: QWidget | None = None
        self._layout = QVBoxLayout(self)
        self._layout.setContentsMargins(0, 0, 0, 0)
        self.notice = QLabel(f"{title}: opening your library…", self)
        self.notice.setAccessibleName(f"{title} status")
        self.notice.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self._layout.addWidget(self.notice)

    def set_pane(self, pane: QWidget) -> None:
        self.notice.hide()
        self._layout.addWidget(pane)
        self.pane = pane

    def shutdown(self) -> None:
        """Stop the pane's work and wait for it (GUI thread, at close)."""
        if self.pane is not None and hasattr(self.pane, "shutdown"):
            self.pane.shutdown()


class PageStack(QStackedWidget):
    """The pages, sized by the page showing only.

    QStackedWidget asks for the largest minimum of all its pages, so one wide page (a long
    file name on a page the user is not even looking at) would hold the whole window wide.
    GUI thread only.
    """

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.currentChanged.connect(lambda _index: self.updateGeometry())

    def sizeHint(self) -> QSize:  # noqa: N802 (Qt's name)
        page = self.currentWidget()
        return page.sizeHint() if page is not None else super().sizeHint()

    def minimumSizeHint(self) -> QSize:  # noqa: N802 (Qt's name)
        page = self.currentWidget()
        return page.minimumSizeHint().expandedTo(page.minimumSize()) if page is not None else super().minimumSizeHint()


class MainWindow(QMainWindow):
    sig_window_painted = Signal()  # once, after the first paint
    sig_services_ready = Signal()  # the panes are filled (at start, after an unlock or a restore)
    sig_services_failed = Signal()  # the library could not be opened; the banner says why

    def __init__(self, theme: "ThemeController | None" = None, parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("Local Assistant")
        self.setWindowIcon(QIcon(str(Path(__file__).resolve().parent.parent / "resources" / "icons" / "app.svg")))
        self.setAccessibleName("Local Assistant")
        self.theme = theme
        self.services: Services | None = None
        self.jobs = Jobs(self)
        self.painted = False
        self.engine_state = "stopped"
        self.engine_info: dict = {}
        self._generation_model = ""  # file name of the last chat/translation model loaded
        self._encoder_model = ""  # file name of the loaded search/sentiment encoder
        self.status_bridge = EngineStatusBridge(self)
        self.status_bridge.sig_engine_status_changed.connect(self._on_engine_status)
        self.shortcuts_dialog: ShortcutsDialog | None = None
        self.help_dialogs: dict[str, QDialog] = {}
        self.translate = self.sentiment = self.documents = self.train = self.compress = None  # with the services
        self.study = None
        self._shut_down = False
        #: Where the data is (from the services, or :meth:`open_library`): the lock opens it again.
        self.paths: AppPaths | None = None
        #: "opening" (no services yet), "open", "failed" (the library could not be opened),
        #: "locking", "locked", "unlocking", "restoring" (a backup is being put in place).
        self.state = "opening"
        #: The local API server's switch; the window's, so that it outlives the Settings pane
        #: across a lock and answers 423 meanwhile.
        self.api_switch = None
        #: Services the window built itself ("services") and the key they were opened with
        #: ("unlocked"): see :func:`ui.unlock.build_unlocked`. Closed in :meth:`shutdown`.
        self._holder: dict = {}
        self.unlock_flow = None  # the UnlockFlow running or last run (tests reach its dialogs)
        self._newest_backup = None  # offered by the banner when the database is damaged
        self._build()
        self._build_actions()
        from ui import drop_import  # .gguf files dropped anywhere on the window, or opened with the app

        self.drop_importer = drop_import.install(self)
        self.idle_watcher = IdleWatcher(self, self.work_in_progress)
        self.idle_watcher.sig_idle.connect(self.auto_lock)
        self._watcher = _FirstPaintWatcher(self)
        if theme is not None:
            theme.sig_theme_changed.connect(self._on_theme_changed)
            if theme.scheme:
                self._on_theme_changed(theme.scheme)
        self.resize(1180, 760)

    # ----- layout ------------------------------------------------------------------------------
    def _build(self) -> None:
        central = QWidget(self)
        layout = QHBoxLayout(central)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)

        self.nav = QListWidget(central)
        self.nav.setObjectName("NavList")
        self.nav.setAccessibleName("Navigation")
        self.nav.setFixedWidth(150)
        self.nav.setSpacing(0)
        self.nav.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.nav.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAsNeeded)
        self.stack = PageStack(central)
        self.stack.setAccessibleName("Pages")
        for key, label, _coming in PAGES:
            item = QListWidgetItem(label)
            item.setData(Qt.ItemDataRole.UserRole, key)
            item.setSizeHint(QSize(140, 36))
            self.nav.addItem(item)
        self._build_pages()
        self.nav.currentRowChanged.connect(self.stack.setCurrentIndex)
        self.stack.currentChanged.connect(lambda _index: self.put_navigation_before_page())
        self.nav.setCurrentRow(0)

        right = QWidget(central)
        right_layout = QVBoxLayout(right)
        right_layout.setContentsMargins(0, 0, 0, 0)
        right_layout.setSpacing(0)
        self.window_banner = Banner("Window notice", right)
        self.window_banner.sig_action_clicked.connect(self.restore_newest_backup)
        right_layout.addWidget(self.window_banner)
        right_layout.addWidget(self.stack, 1)
        self.lock_page = LockPage(right)
        self.lock_page.sig_unlock_requested.connect(self.unlock)
        right_layout.addWidget(self.lock_page, 1)
        layout.addWidget(self.nav)
        layout.addWidget(right, 1)
        self.setCentralWidget(central)

        self.engine_label = QLabel(ENGINE_STATES["stopped"])
        self.engine_label.setObjectName("EngineStatus")
        self.engine_label.setAccessibleName("Engine status")
        self.engine_label.setProperty("state", "stopped")
        self.library_label = QLabel("Opening your library…")
        self.library_label.setAccessibleName("Library status")
        self.statusBar().addWidget(self.library_label, 1)
        self.statusBar().addPermanentWidget(self.engine_label)
        self.statusBar().setSizeGripEnabled(False)

    def _build_pages(self) -> None:
        """Build every page, empty, into the stack, and wire them to each other. At start, and
        again after a lock or a restore has torn the old ones down (:meth:`_replace_pages`).
        Each set of pages runs its work in its own scope of the pool, ended with them."""
        self.page_jobs = self.jobs.scope()
        self.sidebar = Sidebar()
        self.chat = ChatPane()
        chat_page = QSplitter(Qt.Orientation.Horizontal)
        chat_page.setAccessibleName("Chat page")
        chat_page.setChildrenCollapsible(False)
        chat_page.setHandleWidth(1)
        chat_page.addWidget(self.sidebar)
        chat_page.addWidget(self.chat)
        chat_page.setStretchFactor(0, 0)
        chat_page.setStretchFactor(1, 1)
        # The sidebar keeps its width when the window narrows (stretch 0, a minimum width of
        # its own): only the chat stretches or shrinks.
        chat_page.setSizes([270, 900])
        self.models = ModelsPane()
        self.settings_pane = SettingsPane()
        self.pages: dict[str, QWidget] = {}
        for key, label, coming in PAGES:
            if key == "chat":
                page = chat_page
            elif key == "models":
                page = self.models
            elif key == "settings":
                page = self.settings_pane
            elif key in SERVICE_PAGES:
                page = ServicePage(label)
            else:
                page = ComingSoonPane(label, coming)
            self.pages[key] = page
            self.stack.addWidget(page)

        self.sidebar.sig_new_chat_requested.connect(self.new_chat)
        self.sidebar.sig_new_incognito_chat_requested.connect(self.new_incognito_chat)
        self.chat.sig_incognito_changed.connect(self._on_incognito_changed)
        self.sidebar.sig_conversation_selected.connect(self.open_conversation)
        self.sidebar.sig_hit_activated.connect(self.open_hit)
        self.sidebar.sig_conversation_deleted.connect(self.chat.conversation_deleted)
        self.chat.sig_conversation_changed.connect(self.sidebar.set_current)
        self.chat.sig_conversations_changed.connect(self.sidebar.refresh)
        self.models.sig_library_changed.connect(self.chat.refresh_models)
        self.settings_pane.sig_appearance_changed.connect(self._apply_appearance)
        self.settings_pane.sig_settings_saved.connect(self._on_settings_saved)
        self.settings_pane.sig_lock_requested.connect(self.lock)
        self.settings_pane.sig_restore_requested.connect(self.restore_backup)
        if self.theme is not None and self.theme.scheme:
            from ui.theme import COLORS

            self.chat.set_colors(COLORS[self.theme.scheme])

    def _build_actions(self) -> None:
        menu = self.menuBar()
        menu.setAccessibleName("Menu bar")
        file_menu = menu.addMenu("&File")
        view_menu = menu.addMenu("&View")
        help_menu = menu.addMenu("&Help")
        self.actions_by_name: dict[str, QAction] = {}

        def action(menu_, name: str, text: str, slot) -> QAction:
            act = QAction(text, self)
            if name in ACTION_KEYS:
                act.setShortcut(QKeySequence(ACTION_KEYS[name]))
                act.setToolTip(f"{ACTION_HELP[name]} ({ACTION_KEYS[name]})")
            # Window-wide, whichever pane has the focus.
            act.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
            act.triggered.connect(slot)
            menu_.addAction(act)
            self.actions_by_name[name] = act
            return act

        action(file_menu, "new_chat", "New chat", self.new_chat)
        action(file_menu, "new_incognito_chat", "New incognito chat", self.new_incognito_chat)
        action(file_menu, "search", "Search history…", self.focus_search)
        action(file_menu, "composer", "Write a message", self.focus_composer)
        file_menu.addSeparator()
        action(file_menu, "lock", "Lock now", self.lock)
        file_menu.addSeparator()
        action(file_menu, "quit", "Quit", self.close)
        for key, label, _ in PAGES:
            action(view_menu, f"page_{key}", label, lambda _checked=False, k=key: self.go_to_page(k))
        action(help_menu, "shortcuts", "Keyboard shortcuts", self.show_shortcuts)
        action(help_menu, "user_guide", "User guide", self.show_user_guide)
        action(help_menu, "privacy", "Privacy promises", self.show_privacy)
        help_menu.addSeparator()
        action(help_menu, "about", "About Local Assistant", self.show_about)
        # Qt's own "more menus" button, shown when the window is too narrow for the menu bar.
        for button in menu.findChildren(QToolButton):
            button.setAccessibleName("More menus")

    # ----- services ----------------------------------------------------------------------------
    def set_services(self, services: "Services") -> None:
        """Fill the panes; start the engine worker in the background (its status shows at once).
        Called again, on fresh panes, after each unlock and restore."""
        from assistant.api.server import ServerSwitch

        self.services = services
        self.paths = services.paths
        self.state = "open"
        self.library_label.setText(f"Library: {services.paths.data_dir}")
        if self.theme is not None:
            self.theme.apply(services.settings.theme, services.settings.font_size)
        if self.api_switch is None:
            self.api_switch = ServerSwitch(services)
        else:
            self.api_switch.release(services)
        jobs = self.page_jobs
        self.sidebar.set_services(services, jobs)
        self.chat.set_services(services, jobs)
        self.models.set_services(services, jobs)
        self.settings_pane.set_services(services, jobs, self.api_switch)
        self._build_service_pages(services)
        self._show_pages(True)
        self.put_navigation_before_page()
        self.idle_watcher.set_idle_seconds(60 * int(services.settings.auto_lock_minutes))
        self.jobs.run(_start_engine, services, self.status_bridge.callback,
                      on_error=lambda message, _exc: self._on_engine_status("error", {"message": message}))
        self.sig_services_ready.emit()

    def _build_service_pages(self, services: "Services") -> None:
        import importlib

        for key, (module_name, class_name) in SERVICE_PAGES.items():
            page = self.pages[key]
            pane_class = getattr(importlib.import_module(module_name), class_name)
            page.set_pane(pane_class(services, self.page_jobs))
        self.translate = self.pages["translate"].pane
        self.sentiment = self.pages["sentiment"].pane
        self.documents = self.pages["documents"].pane
        self.documents.sig_documents_changed.connect(self.chat.refresh_collections)
        self.train = self.pages["train"].pane
        self.compress = self.pages["compress"].pane
        # A compressed model put in the library shows on the Models page and in the chat's list.
        self.compress.sig_model_added.connect(lambda _record: self.models.refresh())
        self.compress.sig_model_added.connect(lambda _record: self.chat.refresh_models())
        self.documents.sig_documents_changed.connect(self.train.refresh)
        self.study = self.pages["study"].pane
        self.documents.sig_documents_changed.connect(self.study.refresh)

    def _on_settings_saved(self) -> None:
        enabled = bool(self.services.settings.suggestions_enabled) if self.services else False
        for controller in (self.chat.suggestions, getattr(self.translate, "suggestions", None)):
            if controller is not None:
                controller.set_enabled(enabled)
        if self.services is not None:
            minutes = int(self.services.settings.auto_lock_minutes)
            if self.idle_watcher.idle_s != 60 * minutes:
                self.idle_watcher.set_idle_seconds(60 * minutes)

    def open_library(self, paths: "AppPaths") -> None:
        """Unlock (nothing asked with a keyring, the passphrase otherwise) and build the services
        on the pool, then fill the panes; a failure shows in the banner (with the newest backup
        offered for a damaged database). At start, after the first paint (:func:`ui.app.run`)."""
        from ui.unlock import UnlockFlow

        self.paths = paths
        self.state = "opening"
        self.unlock_flow = UnlockFlow(self, paths, self._holder, on_ready=self.set_services,
                                      on_failed=self._open_failed, stay_locked_message="Your data stays locked.")
        self.unlock_flow.start()

    def _open_failed(self, message: str) -> None:
        error = self.unlock_flow.error if self.unlock_flow is not None else None
        if error is None:
            # The user cancelled the passphrase: the lock page's Unlock asks again (no restart).
            self.state = "locked"
            self._show_pages(False)
            self.lock_page.show_locked(message)
            self.sig_services_failed.emit()
            return
        self.show_services_error(message, error)

    def show_services_error(self, message: str, error: BaseException | None = None) -> None:
        """The library could not be opened (damaged or newer database...): say so, keep running.
        A damaged database (``error`` a CorruptDatabaseError) gets the newest backup offered in
        one click, or the words that there is none."""
        from assistant.errors import CorruptDatabaseError

        self.state = "failed"
        self.library_label.setText("The library could not be opened.")
        self.window_banner.set_action("")
        self.window_banner.show_message(message, "error")
        self.sig_services_failed.emit()
        if isinstance(error, CorruptDatabaseError) and self.paths is not None:
            from ui.backups_section import newest_backup_row

            self.jobs.run(newest_backup_row, self.paths.backups_dir,
                          on_done=lambda row: self._offer_newest_backup(message, row))

    def _offer_newest_backup(self, message: str, row) -> None:
        if self.state != "failed":
            return
        self._newest_backup = row
        if row is None:
            self.window_banner.show_message(f"{message} There is no backup to restore.", "error")
            return
        self.window_banner.show_message(f"{message} The newest backup was made {row.when}.", "error")
        self.window_banner.set_action("Restore the newest backup")

    def restore_newest_backup(self) -> None:
        """The banner's button: put the newest backup in place of the damaged database (which is
        kept), on the pool, and open the library again."""
        if self.state != "failed" or self.paths is None:
            return
        from ui.backups_section import restore_damaged_database

        self.state = "restoring"
        self.window_banner.action_button.setEnabled(False)
        self.window_banner.show_message("Restoring the newest backup…", "info")
        self.jobs.run(restore_damaged_database, self.paths, self._holder,
                      on_done=lambda result: self._damaged_database_restored(*result),
                      on_error=self._damaged_database_restore_failed)

    def _damaged_database_restored(self, result, services: "Services") -> None:
        from ui.backups_section import restored_message

        row = getattr(self, "_newest_backup", None)
        self.window_banner.set_action("")
        self.window_banner.show_message(restored_message(result, row.when if row else f"as {result.backup.name}"),
                                        "info")
        self.set_services(services)

    def _damaged_database_restore_failed(self, message: str, _exc: BaseException) -> None:
        self.state = "failed"
        self.window_banner.show_message(message, "error")
        self.window_banner.set_action("Restore the newest backup")

    def restore_backup(self, backup: Path, when: str = "") -> None:
        """Settings → Backups → Restore…, confirmed: stop the reply and every pane's work, put
        the backup in place on the pool (the replaced database is kept), then fill fresh panes
        from the restored data. Nothing of the old panes can write into the restored file."""
        if self.state != "open" or self.services is None:
            return
        from ui.backups_section import restore_in_place

        services = self.services
        self.state = "restoring"
        self.idle_watcher.stop()
        self._stop_pages_work()
        stopped = self.page_jobs.abandon()
        self._replace_pages()
        self.services = None
        self.show_page("settings")
        self.window_banner.set_action("")
        self.window_banner.show_message(f"Restoring the backup made {when or backup.name}…", "info")
        self.jobs.run(restore_in_place, services, backup, stopped,
                      on_done=lambda result: self._restored(services, result, when),
                      on_error=lambda message, _exc: self._restored(services, None, when, message))

    def _restored(self, services: "Services", result, when: str, failure: str = "") -> None:
        from ui.backups_section import restored_message

        self.window_banner.hide()
        self.set_services(services)
        self.show_page("settings")
        self.settings_pane.backups.show_status(restored_message(result, when or result.backup.name) if result
                                               else failure)

    # ----- the lock -----------------------------------------------------------------------------
    @property
    def locked(self) -> bool:
        return self.state in ("locking", "locked", "unlocking")

    def work_in_progress(self) -> bool:
        """A reply being written, a pane's job or process (training, compression, a sentiment
        lesson) running: auto-lock waits for it to end rather than stop it."""
        if self.state != "open":
            return True  # opening, restoring or already locking: not the moment to lock
        if self.chat.busy or self.jobs.busy:
            return True
        # A question or a recovery key waiting for an answer: the user is in the middle of it.
        if QApplication.activeModalWidget() is not None:
            return True
        return any(bool(getattr(page.pane, "busy", False)) for key, page in self.pages.items()
                   if key in SERVICE_PAGES)

    def auto_lock(self) -> None:
        """The idle time has passed with no input (see :class:`ui.lock.IdleWatcher`)."""
        self.lock()

    def lock(self) -> None:
        """Lock now (Ctrl+L, File menu, Settings): stop the reply, forget an incognito chat, tear
        the panes down (their text leaves the window and memory), show the lock page; then on the
        pool mark the data locked and close the store and the engine (:func:`ui.lock.close_for_lock`)."""
        if self.state != "open" or self.services is None or self.paths is None:
            return
        from ui.lock import close_for_lock

        services = self.services
        self.state = "locking"
        self.idle_watcher.stop()
        if self.api_switch is not None:
            self.api_switch.hold()  # first: the API answers 423 from this moment
        self._stop_pages_work()
        stopped = self.page_jobs.abandon()
        self._close_dialogs()
        self._replace_pages()
        self.services = None
        self._show_pages(False)
        self.lock_page.show_locking()
        self.lock_page.unlock_button.setFocus(Qt.FocusReason.OtherFocusReason)
        self.jobs.run(close_for_lock, services, self.paths, self.api_switch, stopped,
                      on_done=self._locked, on_error=lambda message, _exc: self._locked(message))

    def _locked(self, problem: str) -> None:
        self.state = "locked"
        self._holder.pop("services", None)  # closed by the lock: nothing more to close at exit
        self.engine_state = "stopped"
        self._on_engine_status("stopped", {})
        self.lock_page.show_locked(problem)

    def unlock(self) -> None:
        """The lock page's Unlock: the same unlock as at start (instant with a keyring, the
        passphrase otherwise), new services on the pool, the fresh panes filled, the marker removed."""
        if self.state != "locked" or self.paths is None:
            return
        from ui.unlock import UnlockFlow

        self.state = "unlocking"
        self.lock_page.show_unlocking()
        self.unlock_flow = UnlockFlow(self, self.paths, self._holder, on_ready=self._unlocked,
                                      on_failed=self._unlock_failed,
                                      stay_locked_message="Your data stays locked.")
        self.unlock_flow.start()

    def _unlocked(self, services: "Services") -> None:
        from assistant.app import release_lock_marker

        self.set_services(services)
        self.jobs.run(release_lock_marker, self.paths)

    def _unlock_failed(self, message: str) -> None:
        from assistant.errors import CorruptDatabaseError

        error = self.unlock_flow.error if self.unlock_flow is not None else None
        if isinstance(error, CorruptDatabaseError):
            # Damaged while locked: the window leaves the lock for the banner that offers the
            # newest backup, as at start.
            from assistant.app import release_lock_marker

            self.jobs.run(release_lock_marker, self.paths)
            self._show_pages(True)
            self.show_services_error(message, error)
            return
        self.state = "locked"
        self.lock_page.show_locked(message)

    def _stop_pages_work(self) -> None:
        """Stop what the panes are doing, as at close: the reply (kept, marked interrupted), an
        incognito chat (forgotten), suggestions, the service panes' jobs and processes; a
        settings change waiting to be saved is saved first."""
        self.settings_pane.save_pending()
        self.chat.stop()
        self.chat.forget_incognito()
        self.chat.shutdown_suggestions()
        for key in SERVICE_PAGES:
            self.pages[key].shutdown()

    def _close_dialogs(self) -> None:
        """Dialogs of the window that can show the user's text are closed with it (the pane
        dialogs go with their panes); help and shortcuts stay, they show none."""
        for dialog in self.findChildren(QDialog):
            if dialog.isVisible() and dialog not in (self.shortcuts_dialog, *self.help_dialogs.values()):
                dialog.reject()

    def _replace_pages(self) -> None:
        """Tear every page down and build fresh, empty ones in their place. The old ones leave
        the window's widget tree at once (so nothing of theirs is found or shown), and are
        deleted when control returns to the event loop."""
        current = self.nav.currentRow()
        old = [self.stack.widget(i) for i in range(self.stack.count())]
        for page in old:
            self.stack.removeWidget(page)
            page.hide()
            page.setParent(None)
            page.deleteLater()
        self.translate = self.sentiment = self.documents = self.train = self.compress = self.study = None
        self._build_pages()
        self.drop_importer.watch(self.models)
        self.stack.setCurrentIndex(max(0, current))
        self.setWindowTitle("Local Assistant")

    def _show_pages(self, shown: bool) -> None:
        """The pages and the navigation, or (``shown`` False) the lock page in their place. The
        window's actions that reach the data are off while locked."""
        self.nav.setVisible(shown)
        self.stack.setVisible(shown)
        self.lock_page.setVisible(not shown)
        if not shown:
            self.window_banner.hide()
            self.library_label.setText("Locked.")
        for name, act in self.actions_by_name.items():
            if name not in ALWAYS_AVAILABLE_ACTIONS:
                act.setEnabled(shown)

    def _on_engine_status(self, state: str, info: dict) -> None:
        """GUI thread. The label names the model that writes replies; the encoder used for
        document search and sentiment is named only in the tooltip, so loading it does not
        read as if the chat model had changed."""
        self.engine_state = state
        self.engine_info = dict(info)
        text = ENGINE_STATES.get(state, f"Engine: {state}")
        model = info.get("model")
        name = Path(str(model)).name if model else ""
        is_encoder = info.get("role") == "embedder"
        if state in ("stopped", "error", "starting"):
            self._generation_model = self._encoder_model = ""
        if state == "loading" and model:
            text = "Engine: loading the search model…" if is_encoder else f"Engine: loading {name}…"
        elif state == "ready" and model:
            if is_encoder:
                self._encoder_model = name
            else:
                self._generation_model = name
        if state == "ready":
            if self._generation_model:
                text = f"Engine: ready · {self._generation_model}"
            elif self._encoder_model:
                text = "Engine: ready · search model loaded"
        elif state == "error" and info.get("message"):
            text = f"Engine: {info['message']}"
        tooltip = text
        if state == "ready" and self._encoder_model:
            tooltip = f"{text}\nDocument search and sentiment: {self._encoder_model}"
        self.engine_label.setText(text)
        self.engine_label.setToolTip(tooltip)
        self.engine_label.setProperty("state", state)
        self.engine_label.style().unpolish(self.engine_label)
        self.engine_label.style().polish(self.engine_label)

    # ----- navigation and shortcuts -------------------------------------------------------------
    def show_page(self, key: str) -> None:
        self.nav.setCurrentRow([k for k, _l, _c in PAGES].index(key))

    def go_to_page(self, key: str) -> None:
        """A page chosen from the keyboard (Ctrl+1…Ctrl+8, Ctrl+,): the focus goes to the page
        list, which shows where the user now is; one Tab enters the page."""
        self.show_page(key)
        self.nav.setFocus(Qt.FocusReason.ShortcutFocusReason)

    def put_navigation_before_page(self) -> None:
        """Make the page list the tab stop just before the page's first control (and Shift+Tab
        from there return to it): without this the page list came after the status bar's and
        every other page's controls, 11 Tabs away. Re-run whenever a page shows, because panes
        add controls as they fill."""
        page = self.stack.currentWidget()
        if page is None:
            return
        stops = []
        widget = self.nav.nextInFocusChain()
        while widget is not self.nav and widget is not None:
            if page.isAncestorOf(widget) and widget.focusProxy() is None \
                    and widget.focusPolicy() & Qt.FocusPolicy.TabFocus == Qt.FocusPolicy.TabFocus:
                stops.append(widget)
            widget = widget.nextInFocusChain()
        previous = self.nav
        for stop in stops:
            QWidget.setTabOrder(previous, stop)
            previous = stop

    @property
    def current_page(self) -> str:
        return PAGES[self.nav.currentRow()][0]

    def new_chat(self) -> None:
        self.show_page("chat")
        self.chat.new_conversation()

    def new_incognito_chat(self) -> None:
        """A chat kept in memory only, forgotten when the user leaves it (see ui.chat.pane)."""
        self.show_page("chat")
        self.chat.new_incognito_conversation()

    def _on_incognito_changed(self, incognito: bool) -> None:
        # Marked in the title bar too, which the desktop's window list and task switcher show.
        self.setWindowTitle("Local Assistant — Incognito" if incognito else "Local Assistant")

    def open_conversation(self, conversation_id: str) -> None:
        self.show_page("chat")
        self.chat.open_conversation(conversation_id)

    def open_hit(self, conversation_id: str, message_id: str) -> None:
        self.show_page("chat")
        self.chat.open_conversation(conversation_id, message_id or None)

    def focus_search(self) -> None:
        self.show_page("chat")
        self.sidebar.focus_search()

    def focus_composer(self) -> None:
        self.show_page("chat")
        self.chat.focus_composer()

    def show_shortcuts(self) -> ShortcutsDialog:
        if self.shortcuts_dialog is None:
            self.shortcuts_dialog = ShortcutsDialog(SHORTCUTS, self)
        self.shortcuts_dialog.open()
        return self.shortcuts_dialog

    def _show_help_dialog(self, name: str, make) -> QDialog:
        """Each Help dialog is built once (its document read then) and reopened after."""
        dialog = self.help_dialogs.get(name)
        if dialog is None:
            dialog = self.help_dialogs[name] = make()
        dialog.open()
        return dialog

    def show_about(self) -> AboutDialog:
        return self._show_help_dialog("about", lambda: AboutDialog(self))

    def show_user_guide(self) -> DocumentDialog:
        return self._show_help_dialog("user_guide", lambda: DocumentDialog("User guide", "user-guide.md", self))

    def show_privacy(self) -> DocumentDialog:
        return self._show_help_dialog("privacy", lambda: DocumentDialog("Privacy promises", "PRIVACY.md", self))

    # ----- appearance ---------------------------------------------------------------------------
    def _apply_appearance(self, theme: str, font_size: int) -> None:
        if self.theme is not None:
            self.theme.apply(theme, font_size)

    def _on_theme_changed(self, scheme: str) -> None:
        from ui.theme import COLORS

        self.chat.set_colors(COLORS[scheme])

    # ----- lifetime -----------------------------------------------------------------------------
    def _first_painted(self) -> None:
        if not self.painted:
            self.painted = True
            self.sig_window_painted.emit()

    def shutdown(self) -> None:
        """Stop the reply, save pending settings, wait for every job, stop the API server, close
        the services the window built itself and remove its lock marker; GUI thread, at close."""
        if self._shut_down:
            return
        self._shut_down = True
        self.idle_watcher.stop()
        self.settings_pane.flush()
        self.chat.stop()
        # An incognito chat is gone when the window closes; a reply still ending keeps nothing.
        self.chat.forget_incognito()
        self.chat.shutdown_suggestions()
        for key in SERVICE_PAGES:
            self.pages[key].shutdown()
        # Waits for the stopped reply and the settings save started just above (and a lock,
        # an unlock or a restore in progress).
        self.jobs.shutdown()
        if self.api_switch is not None:
            self.api_switch.close()
        built = self._holder.get("services")
        if built is not None:
            built.close()
        if self.paths is not None:
            from assistant.app import release_lock_marker

            # Closed while locked: the command line must not find a marker of a window that is
            # gone (Vault.is_locked ignores a dead pid's marker too; this leaves none at all).
            release_lock_marker(self.paths)

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802
        self.shutdown()
        super().closeEvent(event)


def _start_engine(services: "Services", on_status: Any) -> str:
    """Pool thread: start the engine worker (a process spawn) and report its status. Services.engine
    holds its own lock, so two first users never start two workers."""
    engine = services.engine
    engine.on_status = on_status
    # The "starting" report came before we could listen; repeat the state it is in now.
    on_status(engine.state, {})
    return engine.state
