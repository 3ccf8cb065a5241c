"""The Documents pane with the real core: add a folder, progress, answers streamed from a
ChatSession that writes nothing, sources that open."""

from __future__ import annotations

import re

import pytest

pytest.importorskip("PySide6")

from assistant.documents.grounded import DONT_KNOW  # noqa: E402
from tests.assistant import test_ingest as docfiles  # noqa: E402
from ui.documents_pane import DocumentsPane  # noqa: E402


@pytest.fixture()
def pane(qtbot, services):
    import shiboken6

    from ui.jobs import Jobs

    jobs = Jobs()  # the window's one pool, as the window passes it
    widget = DocumentsPane(services, jobs, sync_interval_ms=0)
    yield widget
    widget.shutdown()
    assert jobs.shutdown()
    shiboken6.delete(widget)
    # Deleting the pool ends its (idle) threads.
    shiboken6.delete(jobs)


def test_add_folder_ask_and_open_a_source(pane, qtbot, tmp_path):
    folder = tmp_path / "docs"
    docfiles.write_all_good(folder)
    (folder / "empty.txt").write_bytes(b"")
    with qtbot.waitSignal(pane.sig_documents_changed, timeout=300_000,
                          check_params_cb=lambda: pane.files.count() == 7 and not pane._busy):
        pane.add_paths([str(folder)])
    progress = pane.progress_events
    assert progress[0].kind == "start" and progress[-1].kind == "done"
    assert pane.progress.value() == pane.progress.maximum() == 7
    assert "1 failed" in pane.progress_label.text()
    # Counts read as words: "1 passage", "3 passages".
    assert re.search(r"\b(1 passage\b|\d+ passages)", pane.progress_label.text())
    texts = [pane.files.item(i).text() for i in range(pane.files.count())]
    assert any("the file is empty" in t for t in texts)
    assert all(re.search(r", (1 passage|\d+ passages)\)$", t) for t in texts if "empty" not in t), texts

    pane.only_documents.setChecked(True)
    with qtbot.waitSignal(pane.sig_answer_shown, timeout=300_000) as shown:
        pane.ask("What is the airspeed velocity of an unladen swallow?")
    refused = shown.args[0]
    assert refused.message.text == DONT_KNOW and DONT_KNOW in pane.answer.toPlainText()
    assert not refused.sources and "Sources" not in pane.answer.toPlainText()
    assert "tokens of room" in pane.budget_label.text()

    pane.only_documents.setChecked(False)
    seen = []  # the answer box while the reply streams
    pane.answer.textChanged.connect(lambda: seen.append(pane.answer.toPlainText()))
    with qtbot.waitSignal(pane.sig_answer_shown, timeout=300_000) as shown:
        pane.ask("How many crates of cloudberry jam are in the Tromso warehouse?")
    answer = shown.args[0]
    # The sentence that answers shows with its citation before the model has finished, and the
    # model's words do not show while they are unchecked.
    assert any("From your documents" in text and "4812" in text and "The model is writing" in text
               for text in seen[:-1]), seen[-3:]
    assert not any(answer.message.text in text for text in seen[:-1])
    assert answer.sources and answer.sources[0]["path"].endswith("report.pdf")
    assert "report.pdf, page 2" in pane.answer.toPlainText()
    quoted = [source for source in answer.sources if source.get("quote")]
    assert len(quoted) == 1 and "4812" in quoted[0]["quote"] and isinstance(quoted[0]["agrees"], bool)
    shown_text = pane.answer.toPlainText()
    if quoted[0]["agrees"]:
        assert shown_text.index("From your documents") < shown_text.index("The model's answer") \
            < shown_text.index("Sources")
        assert answer.message.text in shown_text
    else:
        assert shown_text.index("From your documents") < shown_text.index("Show the model's attempt") \
            < shown_text.index("Sources")
    assert "tokens of room" in pane.budget_label.text()
    from PySide6.QtCore import QUrl

    with qtbot.waitSignal(pane.sig_passage_opened, timeout=60_000) as opened:
        pane.answer.anchorClicked.emit(QUrl(f"chunk:{answer.sources[0]['chunk_id']}"))
    assert "4812 crates" in opened.args[0]["text"] and "4812 crates" in pane.passage.toPlainText()


def _source(number: int, quote: str | None = None, agrees: bool | None = None) -> dict:
    source = {"number": number, "chunk_id": 40 + number, "path": f"/notes/n{number}.md", "file": f"n{number}.md",
              "location": "Kestrel > Errors", "passage": "E3 means the machine is overheating. Unplug it."}
    if quote:
        source["quote"] = quote
    if agrees is not None:
        source["agrees"] = agrees
    return source


def test_the_answer_shows_first_and_the_model_wording_only_when_it_agrees(pane, qtbot):
    """The display of each verdict, from the session's events (the core decides, the page shows)."""
    from types import SimpleNamespace

    from PySide6.QtCore import QUrl

    from assistant.chat.events import ReplyDone, Token, TurnPrepared

    sentence = "E3 means the machine is overheating."
    session = object()  # the page only checks that events come from the question it asked
    pane._session = session
    pane._on_answer_event(session, TurnPrepared(None, None, sources=(_source(1, sentence), _source(2))))
    pane._on_answer_event(session, Token("E3 is a water error"))
    text = pane.answer.toPlainText()
    assert text.index("From your documents") < text.index("The model is writing") < text.index("Sources")
    assert sentence in text and "n1.md, Kestrel > Errors" in text and "water error" not in text

    # The model contradicts the source: hidden behind the link, which shows and hides it.
    reply = SimpleNamespace(text="E3 is a water error.")
    pane._on_answer_event(session, ReplyDone(reply, {}, (_source(1, sentence, agrees=False), _source(2))))
    text = pane.answer.toPlainText()
    assert sentence in text and "Show the model's attempt" in text and "water error" not in text
    pane.answer.anchorClicked.emit(QUrl("attempt:show"))
    text = pane.answer.toPlainText()
    assert text.index(sentence) < text.index("E3 is a water error.") and "Hide the model's attempt" in text
    pane.answer.anchorClicked.emit(QUrl("attempt:hide"))
    assert "water error" not in pane.answer.toPlainText()

    # The model agrees: its wording beside the answer, no link, its Markdown rendered as the chat
    # renders it (emphasis without its stars, a list, a line break kept).
    pane._on_answer_event(session, ReplyDone(SimpleNamespace(text="**Overheating.** Do this:\n\n- unplug it\n"
                                                                  "- let it cool\n\nThen\nrestart."), {},
                                             (_source(1, sentence, agrees=True),)))
    text = pane.answer.toPlainText()
    assert text.index(sentence) < text.index("The model's answer:\nOverheating. Do this:") and "attempt" not in text
    assert "**" not in text and "- unplug" not in text and "Then\nrestart." in text
    document = pane.answer.document()
    bold = document.find("Overheating. Do this:")  # the model's line, not the extractive one
    bold.setPosition(bold.selectionStart() + 1)
    assert bold.charFormat().fontWeight() >= 700
    listed = document.find("unplug it")
    assert listed.block().textList() is not None and listed.block().textList().count() == 2

    # No sentence answers: the page says so, and the model's guess stays behind the link.
    pane._on_answer_event(session, ReplyDone(SimpleNamespace(text="It is 42."), {}, (_source(1), _source(2))))
    text = pane.answer.toPlainText()
    assert text.startswith("I couldn't find this in your documents.") and "42" not in text
    assert "Show the model's attempt" in text
