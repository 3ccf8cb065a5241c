"""Light and dark themes: explicit palettes, a small style sheet, the app font size.

"system" (the default) follows the desktop through ``QStyleHints.colorScheme()`` and keeps
following it while the app runs. Everything here runs on the GUI thread; the style sheets
are a few kilobytes read from ``resources/styles`` once.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtGui import QColor, QFont, QGuiApplication, QPalette
from PySide6.QtWidgets import QApplication

THEMES = ("system", "light", "dark")
THEME_LABELS = {"system": "Follow the system", "light": "Light", "dark": "Dark"}

_STYLES = Path(__file__).resolve().parent.parent / "resources" / "styles"

#: Colours beyond the palette's roles, used by the Markdown renderer and the banners.
COLORS = {
    "light": {
        "window": "#f6f7f9",
        "base": "#ffffff",
        "alt_base": "#eef1f5",
        "text": "#1d2026",
        "muted": "#5f6672",
        "accent": "#2f6fdb",
        "accent_text": "#ffffff",
        "button": "#ffffff",
        "border": "#cfd4dc",
        "code_bg": "#f0f2f5",
        "code_border": "#d9dde3",
        "user_bubble": "#e6effc",
        "assistant_bubble": "#ffffff",
        "warning_bg": "#fff4d6",
        "warning_text": "#5b4300",
        "error_bg": "#fde7e7",
        "error_text": "#7a1010",
        "highlight_hit": "#fff1a8",
        "link": "#1f5fbf",
        # The keyboard focus ring: the accent, and on the accent-filled buttons the text colour.
        "focus": "#2f6fdb",
        "focus_on_accent": "#1d2026",
        # An incognito chat: a strip of deep violet (white text, 10:1) and a violet tint on
        # its header and composer, unlike any other state of the window.
        "incognito_bg": "#46386b",
        "incognito_text": "#ffffff",
        "incognito_tint": "#ece7f7",
    },
    "dark": {
        "window": "#1e2127",
        "base": "#16181d",
        "alt_base": "#262a31",
        "text": "#e4e7ec",
        "muted": "#9aa3b0",
        "accent": "#5b9cff",
        "accent_text": "#0d1117",
        "button": "#2b3038",
        "border": "#3a404a",
        "code_bg": "#262a31",
        "code_border": "#363c46",
        "user_bubble": "#24344d",
        "assistant_bubble": "#1b1e24",
        "warning_bg": "#4a3b10",
        "warning_text": "#ffe6a3",
        "error_bg": "#4d1c1c",
        "error_text": "#ffd0d0",
        "highlight_hit": "#5a4d12",
        "link": "#8ab8ff",
        "focus": "#5b9cff",
        "focus_on_accent": "#e4e7ec",
        "incognito_bg": "#5a4a8c",
        "incognito_text": "#ffffff",
        "incognito_tint": "#2a2439",
    },
}


def system_scheme() -> str:
    """'light' or 'dark' as the desktop prefers; 'light' when it does not say (offscreen, old desktops)."""
    app = QGuiApplication.instance()
    if app is None:
        return "light"
    scheme = app.styleHints().colorScheme()
    return "dark" if scheme == Qt.ColorScheme.Dark else "light"


def resolve(setting: str) -> str:
    return setting if setting in ("light", "dark") else system_scheme()


def palette_for(scheme: str) -> QPalette:
    c = COLORS[scheme]
    palette = QPalette()
    roles = {
        QPalette.ColorRole.Window: c["window"],
        QPalette.ColorRole.WindowText: c["text"],
        QPalette.ColorRole.Base: c["base"],
        QPalette.ColorRole.AlternateBase: c["alt_base"],
        QPalette.ColorRole.Text: c["text"],
        QPalette.ColorRole.Button: c["button"],
        QPalette.ColorRole.ButtonText: c["text"],
        QPalette.ColorRole.ToolTipBase: c["base"],
        QPalette.ColorRole.ToolTipText: c["text"],
        QPalette.ColorRole.PlaceholderText: c["muted"],
        QPalette.ColorRole.Highlight: c["accent"],
        QPalette.ColorRole.HighlightedText: c["accent_text"],
        QPalette.ColorRole.Link: c["link"],
        QPalette.ColorRole.LinkVisited: c["link"],
        QPalette.ColorRole.BrightText: "#ff5555",
        QPalette.ColorRole.Mid: c["border"],
        QPalette.ColorRole.Midlight: c["alt_base"],
        QPalette.ColorRole.Light: c["base"] if scheme == "light" else c["button"],
        QPalette.ColorRole.Dark: c["border"],
        QPalette.ColorRole.Shadow: "#000000",
    }
    for role, colour in roles.items():
        palette.setColor(role, QColor(colour))
    for role in (QPalette.ColorRole.WindowText, QPalette.ColorRole.Text, QPalette.ColorRole.ButtonText):
        palette.setColor(QPalette.ColorGroup.Disabled, role, QColor(c["muted"]))
    return palette


@lru_cache(maxsize=4)
def style_sheet(scheme: str) -> str:
    """The shared sheet plus the scheme's own; ``@name@`` stands for a colour of :data:`COLORS`."""
    text = (_STYLES / "base.qss").read_text(encoding="utf-8")
    own = _STYLES / f"{scheme}.qss"
    if own.is_file():
        text += "\n" + own.read_text(encoding="utf-8")
    for name, colour in COLORS[scheme].items():
        text = text.replace(f"@{name}@", colour)
    return text


class ThemeController(QObject):
    """Applies a theme setting and a font size to the application; GUI thread only."""

    sig_theme_changed = Signal(str)  # the scheme now showing: 'light' or 'dark'

    def __init__(self, app: QApplication, parent: QObject | None = None):
        super().__init__(parent)
        self.app = app
        self.setting = "system"
        self.scheme = ""
        self.font_size = 0
        # Kept to undo everything (tests share one QApplication; a setting of 0 restores it).
        self._original_font = QFont(app.font())
        self._original_palette = QPalette(app.palette())
        self._original_sheet = app.styleSheet()
        app.styleHints().colorSchemeChanged.connect(self._on_system_scheme_changed)

    def apply(self, setting: str | None = None, font_size: int | None = None) -> str:
        if setting is not None:
            self.setting = setting if setting in THEMES else "system"
        if font_size is not None:
            self.font_size = int(font_size)
            font = QFont(self._original_font)
            if self.font_size > 0:
                font.setPointSize(self.font_size)
            self.app.setFont(font)
        scheme = resolve(self.setting)
        self.app.setPalette(palette_for(scheme))
        # Re-applied with the font too: style sheets cache fonts per widget.
        self.app.setStyleSheet(style_sheet(scheme))
        if scheme != self.scheme:
            self.scheme = scheme
            self.sig_theme_changed.emit(scheme)
        return scheme

    def colors(self) -> dict:
        return COLORS[self.scheme or resolve(self.setting)]

    def _on_system_scheme_changed(self, _scheme) -> None:
        if self.setting == "system":
            self.apply()

    def restore(self) -> None:
        """Put the application back as it was before this controller touched it."""
        try:
            self.app.styleHints().colorSchemeChanged.disconnect(self._on_system_scheme_changed)
        except (RuntimeError, TypeError):
            pass
        self.app.setStyleSheet(self._original_sheet)
        self.app.setPalette(self._original_palette)
        self.app.setFont(self._original_font)
