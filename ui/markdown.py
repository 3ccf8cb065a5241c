"""Markdown for replies: Qt's own CommonMark + GitHub tables, styled for reading.

``QTextDocument.setMarkdown`` does the parsing; this module then gives code blocks and
inline code a monospace font and a tinted background, and tables visible borders, in the
colours of the current theme. Raw HTML in Markdown is not interpreted: a reply is text from
a model, and it must not be able to pull images or other files into the window.

GUI thread only (QTextDocument and QTextBrowser belong to the thread that made them).
"""

from __future__ import annotations

import re

from PySide6.QtCore import QUrl
from PySide6.QtGui import (
    QBrush,
    QColor,
    QFont,
    QFontDatabase,
    QTextBlockFormat,
    QTextCharFormat,
    QTextCursor,
    QTextDocument,
    QTextFormat,
    QTextFrameFormat,
    QTextTable,
    QTextTableFormat,
)
from PySide6.QtWidgets import QTextBrowser

MARKDOWN_FEATURES = QTextDocument.MarkdownFeature(
    QTextDocument.MarkdownFeature.MarkdownDialectGitHub.value | QTextDocument.MarkdownFeature.MarkdownNoHTML.value
)


def monospace_font(size_like: QFont | None = None) -> QFont:
    font = QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont)
    if size_like is not None and size_like.pointSizeF() > 0:
        # Monospace faces look larger than proportional ones at the same size.
        font.setPointSizeF(max(6.0, size_like.pointSizeF() * 0.92))
    return font


def _is_code_block(block) -> bool:
    return block.blockFormat().hasProperty(QTextFormat.Property.BlockCodeLanguage)


_FENCE = re.compile(r"^\s{0,3}(```|~~~)")
_TABLE_ROW = re.compile(r"^\s*\|.*\|\s*$")


def keep_line_breaks(text: str) -> str:
    """Every line break of a reply kept as one (a poem, an address, a list written line by line).

    CommonMark joins the lines of a paragraph into one; a model (or the user) that breaks a line
    means it. Each line that continues on the next becomes a hard break ("  " before the
    newline), except inside code fences, in tables and before blank lines, where Markdown's own
    rules already do the right thing."""
    lines = text.split("\n")
    out = []
    fenced = False
    for i, line in enumerate(lines):
        if _FENCE.match(line):
            fenced = not fenced
            out.append(line)
            continue
        following = lines[i + 1] if i + 1 < len(lines) else ""
        if (not fenced and line.strip() and following.strip() and not _TABLE_ROW.match(line)
                and not _FENCE.match(following) and not line.endswith(("  ", "\\"))):
            line += "  "
        out.append(line)
    return "\n".join(out)


def render(document: QTextDocument, text: str, colors: dict, base_font: QFont | None = None) -> None:
    """Replace ``document``'s content with ``text`` as styled Markdown (line breaks kept)."""
    document.setMarkdown(keep_line_breaks(text), MARKDOWN_FEATURES)
    mono = monospace_font(base_font or document.defaultFont())
    code_bg = QColor(colors["code_bg"])
    families = mono.families() or [mono.family()]

    cursor = QTextCursor(document)
    cursor.beginEditBlock()
    block = document.begin()
    previous_was_code = False
    while block.isValid():
        following = block.next()
        if _is_code_block(block):
            fmt = QTextBlockFormat(block.blockFormat())
            fmt.setBackground(QBrush(code_bg))
            fmt.setLeftMargin(4)
            fmt.setRightMargin(4)
            # A fenced block is several QTextBlocks: space only above the first and below the last.
            fmt.setTopMargin(0 if previous_was_code else 6)
            fmt.setBottomMargin(0 if following.isValid() and _is_code_block(following) else 6)
            fmt.setNonBreakableLines(True)
            cursor.setPosition(block.position())
            cursor.setBlockFormat(fmt)
            char = QTextCharFormat()
            char.setFontFamilies(families)
            char.setFontPointSize(mono.pointSizeF())
            cursor.setPosition(block.position() + max(0, block.length() - 1), QTextCursor.MoveMode.KeepAnchor)
            cursor.mergeCharFormat(char)
            previous_was_code = True
        else:
            previous_was_code = False
            iterator = block.begin()
            while not iterator.atEnd():
                fragment = iterator.fragment()
                if fragment.isValid() and fragment.charFormat().fontFixedPitch():
                    char = QTextCharFormat()
                    char.setFontFamilies(families)
                    char.setBackground(QBrush(code_bg))
                    cursor.setPosition(fragment.position())
                    cursor.setPosition(fragment.position() + fragment.length(), QTextCursor.MoveMode.KeepAnchor)
                    cursor.mergeCharFormat(char)
                iterator += 1
        block = following

    for frame in document.rootFrame().childFrames():
        if isinstance(frame, QTextTable):
            _style_table(frame, colors)
    cursor.endEditBlock()


def _style_table(table: QTextTable, colors: dict) -> None:
    fmt = QTextTableFormat(table.format())
    fmt.setBorder(1)
    fmt.setBorderStyle(QTextFrameFormat.BorderStyle.BorderStyle_Solid)
    fmt.setBorderBrush(QBrush(QColor(colors["border"])))
    fmt.setBorderCollapse(True)
    fmt.setCellPadding(4)
    fmt.setCellSpacing(0)
    fmt.setTopMargin(4)
    fmt.setBottomMargin(4)
    table.setFormat(fmt)
    for column in range(table.columns()):
        cell = table.cellAt(0, column)
        char = cell.format()
        char.setBackground(QBrush(QColor(colors["alt_base"])))
        cell.setFormat(char)
        # The importer marks only some header cells bold; make the whole header row bold.
        cursor = cell.firstCursorPosition()
        cursor.setPosition(cell.lastCursorPosition().position(), QTextCursor.MoveMode.KeepAnchor)
        bold = QTextCharFormat()
        bold.setFontWeight(QFont.Weight.Bold)
        cursor.mergeCharFormat(bold)


class SafeTextBrowser(QTextBrowser):
    """A read-only browser that never loads a resource and never follows a link.

    Text shown here comes from models and model files; it must not read files or open
    addresses behind the user's back.
    """

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setOpenLinks(False)
        self.setOpenExternalLinks(False)

    def loadResource(self, type_: int, name: QUrl):  # noqa: N802 (Qt's name)
        return None


_MARKDOWN_PUNCTUATION = re.compile(r"([\\`*_\[\]{}()#+\-.!<>|~])")


def markdown_escape(text: str) -> str:
    """``text`` shown as it is inside Markdown (a file path's underscores are no emphasis)."""
    return _MARKDOWN_PUNCTUATION.sub(r"\\\1", text)


def show_passage(browser: QTextBrowser, passage: str, where: str = "", colors: dict | None = None) -> None:
    """A cited passage of the user's documents, rendered as replies are (the core has cleaned
    its reST/Markdown markup: :func:`assistant.chat.sources.shown_passage`), under a bold line
    saying where it is. ``colors``: the theme's; by default the one matching the browser's palette."""
    if colors is None:
        from ui.theme import COLORS

        colors = COLORS["dark" if browser.palette().base().color().lightness() < 128 else "light"]
    text = (f"**{markdown_escape(where)}**\n\n" if where else "") + passage
    render(browser.document(), text, colors, browser.font())


_BODY = re.compile(r"<body[^>]*>(.*)</body>", re.DOTALL)


def markdown_html(text: str, colors: dict, base_font: QFont | None = None) -> str:
    """``text`` rendered by :func:`render` (the chat bubbles' Markdown, line breaks kept, code
    styled) as an HTML fragment, for a page that composes its view from HTML pieces (the
    Documents answer). GUI thread, like every QTextDocument use here."""
    document = QTextDocument()
    if base_font is not None:
        document.setDefaultFont(base_font)
    render(document, text, colors, base_font)
    found = _BODY.search(document.toHtml())
    return found.group(1).strip() if found else ""


def quote_html(number: int, chunk_id: int, sentence: str) -> str:
    """The "From your documents [n]: “…”" line of a grounded reply; [n] opens the passage."""
    from html import escape

    return (f'<b>From your documents</b> <a href="chunk:{int(chunk_id)}">[{int(number)}]</a>: '
            f"\u201c{escape(sentence)}\u201d")
