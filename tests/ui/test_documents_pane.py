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
    assert "prompt tokens" in pane.budget_label.text()

    pane.only_documents.setChecked(False)
    seen = []  # the answer box while the reply streams
    pane.answer.textChanged.connect(lambda: seen.append(pane.answer.toPlainText()))
    with qtbot.waitSignal(pane.sig_answer_shown, timeout=300_000) as shown:
        pane.ask("How many crates of cloudberry jam are in the Tromso warehouse?")
    answer = shown.args[0]
    assert answer.message.text and answer.message.text in pane.answer.toPlainText()
    assert len([text for text in seen if "The model's answer" in text]) > 1, "the reply is shown as it arrives"
    assert answer.sources and answer.sources[0]["path"].endswith("report.pdf")
    assert "report.pdf, page 2" in pane.answer.toPlainText()
    # The passage's own sentence is quoted above the model's reply.
    quoted = [source for source in answer.sources if source.get("quote")]
    assert len(quoted) == 1 and "4812" in quoted[0]["quote"]
    shown_text = pane.answer.toPlainText()
    assert shown_text.index("From your documents") < shown_text.index("The model's answer") < shown_text.index("Sources")
    assert "prompt tokens" in pane.budget_label.text()
    from PySide6.QtCore import QUrl

    with qtbot.waitSignal(pane.sig_passage_opened, timeout=60_000) as opened:
        pane.answer.anchorClicked.emit(QUrl(f"chunk:{answer.sources[0]['chunk_id']}"))
    assert "4812 crates" in opened.args[0]["text"] and "4812 crates" in pane.passage.toPlainText()
