"""The Help menu's dialogs: keyboard shortcuts, About, and the user guide and the privacy
promises rendered from their Markdown (found by :func:`resources.help_file`, in a checkout,
an installed wheel or the bundle alike).

GUI thread only. The documents are a few kilobytes read when their dialog first opens.
"""

from __future__ import annotations

from importlib import metadata

from PySide6.QtCore import QUrl
from PySide6.QtGui import QKeySequence
from PySide6.QtWidgets import (
    QAbstractItemView,
    QDialog,
    QDialogButtonBox,
    QHeaderView,
    QLabel,
    QTableWidget,
    QTableWidgetItem,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)

import resources

APP_NAME = "Local Assistant"
DISTRIBUTION = "local-assistant"
PRIVACY_LINE = "Nothing you type, import or train leaves this computer: the app never connects to the network."


def app_version() -> str:
    """The installed distribution's version (the bundle carries its metadata too)."""
    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown"


def _close_buttons(dialog: QDialog, what: str) -> QDialogButtonBox:
    buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close, dialog)
    buttons.button(QDialogButtonBox.StandardButton.Close).setAccessibleName(f"Close {what}")
    buttons.rejected.connect(dialog.reject)
    return buttons


class ShortcutsDialog(QDialog):
    """The table of every keyboard shortcut: ``shortcuts`` is (keys, what it does) pairs."""

    def __init__(self, shortcuts, parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("Keyboard shortcuts")
        self.setAccessibleName("Keyboard shortcuts")
        layout = QVBoxLayout(self)
        self.table = table = QTableWidget(len(shortcuts), 2, self)
        table.setAccessibleName("Shortcut list")
        table.setHorizontalHeaderLabels(["Keys", "Action"])
        table.verticalHeader().hide()
        table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        table.horizontalHeader().setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        for row, (keys, action) in enumerate(shortcuts):
            native = QKeySequence(keys).toString(QKeySequence.SequenceFormat.NativeText) or keys
            table.setItem(row, 0, QTableWidgetItem(native))
            table.setItem(row, 1, QTableWidgetItem(action))
        table.resizeColumnToContents(0)
        layout.addWidget(table)
        layout.addWidget(_close_buttons(self, "shortcuts"))
        self.resize(460, 520)


class AboutDialog(QDialog):
    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle(f"About {APP_NAME}")
        self.setAccessibleName(f"About {APP_NAME}")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(24, 20, 24, 16)
        name = QLabel(APP_NAME)
        name.setObjectName("PaneTitle")
        layout.addWidget(name)
        self.version_label = QLabel(f"Version {app_version()}")
        self.version_label.setAccessibleName("Version")
        layout.addWidget(self.version_label)
        self.privacy_label = QLabel(PRIVACY_LINE)
        self.privacy_label.setWordWrap(True)
        self.privacy_label.setAccessibleName("Privacy")
        layout.addWidget(self.privacy_label)
        layout.addWidget(_close_buttons(self, "about"))
        self.setMinimumWidth(380)

    def text(self) -> str:
        return "\n".join(label.text() for label in self.findChildren(QLabel))


class DocumentDialog(QDialog):
    """A shipped Markdown document, read-only; its relative pictures load from beside it.
    Links inside the document jump; links to the web are not followed (the app opens nothing
    on the network, not even the user's browser behind their back)."""

    def __init__(self, title: str, file_name: str, parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle(title)
        self.setAccessibleName(title)
        path = resources.help_file(file_name)
        layout = QVBoxLayout(self)
        self.browser = QTextBrowser(self)
        self.browser.setAccessibleName(title)
        self.browser.setReadOnly(True)
        self.browser.setOpenLinks(False)
        self.browser.anchorClicked.connect(self._open_link)
        # Pictures ("images/chat.png") resolve against the document's folder.
        self.browser.document().setBaseUrl(QUrl.fromLocalFile(str(path.parent) + "/"))
        self.browser.setSearchPaths([str(path.parent)])
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            text = f"# {title}\n\nThe document could not be read ({exc.strerror or exc}): {path}"
        self.browser.setMarkdown(text)
        layout.addWidget(self.browser)
        layout.addWidget(_close_buttons(self, title.lower()))
        self.resize(760, 600)

    def _open_link(self, url: QUrl) -> None:
        if url.hasFragment():
            self.browser.scrollToAnchor(url.fragment())

    def text(self) -> str:
        return self.browser.toPlainText()

