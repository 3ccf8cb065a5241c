"""Text as written (issue 19, point 3): reST markup of a source is cleaned before it is shown, on
the Documents page, in the chat's source viewer and by the core the CLI prints from; Markdown
renders the same way on the chat and the Documents page (one renderer, ui/markdown.py)."""

from __future__ import annotations

import re

import pytest

from assistant.chat.sources import open_source
from ui.chat.message_view import MessageView
from ui.chat.widgets import SourceDialog
from ui.documents_pane import DocumentsPane
from ui.markdown import show_passage
from ui.theme import COLORS

REST = """Generic aliases
===============

Write ``Union[X, Y]`` as described in :pep:`484`; see `the typing docs <https://docs.python.org/3/library/typing.html>`_.

- the first item
- the second item with ``code``

.. note::
   A directive body that is not text to read.
"""


@pytest.fixture()
def pane(qtbot, services):
    import shiboken6

    from ui.jobs import Jobs

    jobs = Jobs()
    widget = DocumentsPane(services, jobs, sync_interval_ms=0)
    yield widget
    widget.shutdown()
    assert jobs.shutdown()
    shiboken6.delete(widget)
    shiboken6.delete(jobs)


def blocks(document) -> list[tuple[str, bool]]:
    """Each paragraph of a rendered document: its text and whether it is a list item."""
    out, block = [], document.begin()
    while block.isValid():
        out.append((block.text(), block.textList() is not None))
        block = block.next()
    return out


def assert_clean(text: str) -> None:
    assert "``" not in text and ":pep:" not in text and "`_" not in text and "<https" not in text, text
    assert ".. note" not in text and "directive body" not in text, text
    assert not re.search(r"^\s*={3,}\s*$", text, re.M), text
    assert "Union[X, Y]" in text and "PEP 484" in text and "the typing docs" in text, text


def test_rest_in_a_source_is_shown_clean_on_the_documents_page_and_in_the_chat(qtbot, pane, services, tmp_path):
    path = tmp_path / "generics.rst"
    path.write_text(REST, encoding="utf-8")
    documents, _retriever = services.documents_core()
    list(documents.add_paths([str(path)], "notes"))
    with services.store.reading() as conn:
        chunk_ids = [row[0] for row in conn.execute("SELECT n FROM doc_chunks ORDER BY n")]
    chunk_id = next(n for n in chunk_ids if "Union" in documents.chunk(n)["text"])
    assert "``Union[X, Y]``" in documents.chunk(chunk_id)["text"]  # the index keeps the file's own text

    source = open_source(services, chunk_id)  # what the chat and the CLI show
    assert_clean(source["passage"])
    with qtbot.waitSignal(pane.sig_passage_opened, timeout=60_000):
        pane.open_passage(chunk_id)
    assert_clean(pane.passage.toPlainText())
    dialog = SourceDialog()
    qtbot.addWidget(dialog)
    dialog.show_source(source)
    assert_clean(dialog.passage.toPlainText())
    # "- " items are a list on both, not one run-together paragraph.
    for browser in (pane.passage, dialog.passage):
        items = [text for text, item in blocks(browser.document()) if item]
        assert items == ["the first item", "the second item with code"], blocks(browser.document())


def test_markdown_lists_and_line_breaks_render_the_same_in_the_chat_and_on_the_documents_page(qtbot, pane):
    text = "Roses are red,\nviolets are blue.\n\n- **one**\n- `two`\n\nThe end."
    view = MessageView("assistant", COLORS["light"])
    qtbot.addWidget(view)
    view.set_text(text)
    show_passage(pane.passage, text, colors=COLORS["light"])
    chat, page = blocks(view.body.document()), blocks(pane.passage.document())
    assert chat == page
    assert chat[:2] == [("Roses are red,", False), ("violets are blue.", False)]  # the line break is kept
    assert [t for t, item in chat if item] == ["one", "two"]
