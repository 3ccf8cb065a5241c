"""A layout that holds (issue 19, point 2): at 1024x640, with long conversation titles, long
model names and long file names, no page widens the window, the sidebar keeps its width and
nothing is cut off.

GUI thread only, over the real window and real services (the ``window`` fixture).
"""

from __future__ import annotations

from PySide6.QtCore import QPoint, QRect
from PySide6.QtWidgets import QAbstractScrollArea, QWidget

from ui.main_window import PAGES
from ui.sidebar import SIDEBAR_MIN_WIDTH

WIDTH, HEIGHT = 1024, 640
LONG_TITLE = ("A conversation about the long and winding road of naming things well, "
              "which goes on and on without a single place to break a line nicely, "
              "until it is exactly two hundred characters long" + "." * 200)[:200]
LONG_MODEL_NAME = "an-extremely-long-community-fine-tune-of-a-small-model-with-every-detail-in-its-name-q4_k_m"
LONG_FILE_NAME = ("quarterly-report-of-the-committee-for-the-naming-of-files-that-never-end-"
                  "draft-version-seventeen-final-final-really-final.md")


def _fill_with_long_content(qtbot, window, services, tmp_path) -> None:
    """Long titles through the store, a long model name through the library, long file
    names through the Documents page's own display of indexing progress and its file list."""
    from assistant.documents.collections import Progress
    from tests.engine.gguf_corpus import write_valid_gguf

    assert len(LONG_TITLE) == 200
    conversations = [services.conversations.create(f"{LONG_TITLE[:-1]}{n}") for n in range(3)]
    services.conversations.add_message(conversations[0].id, "user", "Hello")
    services.library.add(write_valid_gguf(tmp_path / f"{LONG_MODEL_NAME}.gguf", name=LONG_MODEL_NAME))
    window.sidebar.refresh()
    qtbot.waitUntil(lambda: window.sidebar.list.count() == 3, timeout=10000)
    window.chat.refresh_models()
    window.models.refresh()
    window.open_conversation(conversations[0].id)
    qtbot.waitUntil(lambda: window.chat.conversation_id == conversations[0].id, timeout=10000)
    qtbot.waitUntil(lambda: any(window.chat.model_combo.itemText(i) == LONG_MODEL_NAME
                                for i in range(window.chat.model_combo.count())), timeout=10000)
    qtbot.waitUntil(lambda: window.documents is not None, timeout=30000)
    path = str(tmp_path / LONG_FILE_NAME)
    window.documents._on_progress(Progress("file", 1, 2, path, totals={"chunks": 3}))
    window.documents._show_files([{"status": "indexed", "title": "", "path": path, "collection": "default",
                                   "chunks": 3, "error": ""},
                                  {"status": "error", "title": "", "path": path, "collection": "default",
                                   "chunks": 0, "error": f"{LONG_FILE_NAME} could not be read: {LONG_FILE_NAME}"}])


def _clip_rect(widget: QWidget, window: QWidget) -> QRect:
    """The part of the window a widget may occupy: the window, or the viewport of the scroll
    area it sits in (a scrolled widget may extend past the viewport vertically, never across)."""
    ancestor = widget.parentWidget()
    while ancestor is not None and ancestor is not window:
        owner = ancestor.parentWidget()
        if isinstance(owner, QAbstractScrollArea) and owner.viewport() is ancestor:
            top_left = ancestor.mapTo(window, QPoint(0, 0))
            rect = QRect(top_left, ancestor.size())
            return QRect(rect.left(), -10**6, rect.width(), 2 * 10**6)
        ancestor = owner
    return window.rect()


def _cut_off_widgets(window: QWidget, page: QWidget) -> list[str]:
    problems = []
    for widget in page.findChildren(QWidget):
        if not widget.isVisible() or widget.isWindow() or widget.width() <= 0:
            continue
        rect = QRect(widget.mapTo(window, QPoint(0, 0)), widget.size())
        clip = _clip_rect(widget, window)
        if not clip.contains(rect):
            name = widget.accessibleName() or widget.objectName() or type(widget).__name__
            problems.append(f"{type(widget).__name__} {name!r}: {rect.getRect()} outside {clip.getRect()}")
    return problems


def _widest_minimums(page: QWidget, limit: int) -> list[str]:
    """The widgets whose own minimum is wider than ``limit``, innermost first: who to blame."""
    found = []
    for widget in page.findChildren(QWidget):
        if widget.isWindow():
            continue
        width = max(widget.minimumSizeHint().width(), widget.minimumWidth())
        if width > limit:
            name = widget.accessibleName() or widget.objectName()
            found.append((width, f"{type(widget).__name__} {name!r} needs {width} px"))
    return [text for _width, text in sorted(found)[:6]]


def _layout_problems(qtbot, window, keys) -> list[str]:
    """Each page in turn at 1024x640: what widens the window, crushes the sidebar or is cut off."""
    report = []
    for key in keys:
        window.resize(WIDTH, HEIGHT)
        window.show_page(key)
        qtbot.wait(10)  # a turn of the event loop: layouts settle, the window resizes if it must
        page = window.stack.currentWidget()
        hint = page.minimumSizeHint()
        available = WIDTH - window.nav.width()
        if hint.width() > available:
            report.append(f"{key}: the page needs {hint.width()} px of {available}: "
                          + "; ".join(_widest_minimums(page, available // 2)))
        if (window.width(), window.height()) != (WIDTH, HEIGHT):
            report.append(f"{key}: the window became {window.width()}x{window.height()}")
        minimum = window.minimumSizeHint()
        if minimum.width() > WIDTH or minimum.height() > HEIGHT:
            report.append(f"{key}: the window's minimum is {minimum.toTuple()}")
        report += [f"{key}: {problem}" for problem in _cut_off_widgets(window, page)]
    return report


def test_every_page_fits_1024x640_with_long_titles_models_and_file_names(qtbot, window, services, tmp_path):
    window.resize(1180, 760)
    qtbot.wait(10)
    sidebar_width = window.sidebar.width()
    assert sidebar_width >= SIDEBAR_MIN_WIDTH
    _fill_with_long_content(qtbot, window, services, tmp_path)
    report = _layout_problems(qtbot, window, [key for key, _l, _c in PAGES if key != "models"])
    assert not report, "\n".join(report)

    # The chat page: the sidebar kept its width, the long title is shown elided (whole in the tooltip).
    window.show_page("chat")
    qtbot.wait(10)
    assert window.sidebar.width() == sidebar_width
    title = window.chat.title_label
    assert title.text() == services.conversations.get(window.chat.conversation_id).title
    assert title.is_elided() and title.toolTip() == title.text()
    assert window.sidebar.list.horizontalScrollBar().maximum() == 0  # elided, never scrolled sideways
    assert window.chat.model_combo.width() < 400
    # Back to a wide window: the sidebar still keeps its width, the chat takes the rest.
    window.resize(1400, 800)
    qtbot.wait(10)
    assert window.sidebar.width() == sidebar_width


def test_the_models_page_fits_1024x640_with_a_long_model_name(qtbot, window, services, tmp_path):
    _fill_with_long_content(qtbot, window, services, tmp_path)
    qtbot.waitUntil(lambda: window.models.list.count() > 0, timeout=30000)
    report = _layout_problems(qtbot, window, ["models"])
    assert not report, "\n".join(report)
