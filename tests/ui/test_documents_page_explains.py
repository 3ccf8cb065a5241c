"""The Documents page explains itself (issue 19, point 5): an empty state with one sentence and
one action, a progress bar that is full only when the last file is done, files listed as they
are indexed, and the passages line of a question worded for people and never left over from
the previous question.

GUI thread, over the real core: indexing embeds through the suite's one engine worker
(``embed`` in tests/conftest.py), put in place of the app's own embedder.
"""

from __future__ import annotations

import pytest
from PySide6.QtWidgets import QFileDialog

from assistant.documents.collections import Progress
from assistant.wording import passages_line
from tests.assistant import test_ingest as docfiles
from ui.documents_pane import EMPTY_STATE_TEXT, DocumentsPane


@pytest.fixture()
def pane(qtbot, services, embed):
    import shiboken6

    from assistant.documents.collections import Documents, default_counter
    from assistant.documents.retrieval import Retriever
    from ui.jobs import Jobs

    services._documents = (Documents(services.store, embed, default_counter(services)), Retriever(services.store, embed))
    jobs = Jobs()
    widget = DocumentsPane(services, jobs, sync_interval_ms=0)
    widget.resize(900, 600)
    widget.show()
    qtbot.waitExposed(widget)
    yield widget
    if widget.file_dialog is not None:
        widget.file_dialog.reject()
    widget.shutdown()
    assert jobs.shutdown()
    shiboken6.delete(widget)
    shiboken6.delete(jobs)


def test_the_empty_page_says_what_it_is_for_and_its_button_opens_the_add_flow(pane, qtbot, monkeypatch, tmp_path):
    qtbot.waitUntil(lambda: pane.empty_state.isVisible(), timeout=30_000)
    assert not pane.files.isVisible()
    assert pane.empty_label.text() == EMPTY_STATE_TEXT
    added = []
    monkeypatch.setattr(pane, "add_paths", added.append)
    pane.empty_add_button.click()
    dialog = pane.file_dialog
    assert dialog is not None and dialog.isVisible()
    assert dialog.fileMode() == QFileDialog.FileMode.Directory
    dialog.fileSelected.emit(str(tmp_path))  # as if the user chose the folder
    assert added == [[str(tmp_path)]]


def test_progress_is_full_only_after_the_last_file_and_files_are_listed_as_indexed(pane, qtbot, tmp_path):
    folder = tmp_path / "docs"
    files = docfiles.write_all_good(folder)
    seen = []  # after the page has shown each event: the bar and the list

    def record(event) -> None:
        listed = {pane.files.item(i).data(256): pane.files.item(i).text() for i in range(pane.files.count())}
        seen.append((event, pane.progress.value(), pane.progress.maximum(), listed, pane.files.isVisible()))

    pane._signals.sig_progress_changed.connect(record)  # after the page's own slot
    with qtbot.waitSignal(pane.sig_documents_changed, timeout=300_000,
                          check_params_cb=lambda: not pane._busy and pane.files.count() == len(files)):
        pane.add_paths([str(folder)])
    assert seen[-1][0].kind == "done" and seen[-1][1] == seen[-1][2] == len(files)
    for event, value, maximum, listed, list_visible in seen[:-1]:
        assert maximum == len(files) and value == event.files_finished
        if event.kind in ("start", "file"):
            assert value < maximum, f"{event.kind} {event.index}/{event.total}: full while a file is being indexed"
        assert list_visible  # no empty state while indexing
        if event.kind == "file":
            assert listed[event.path].startswith("…") and "indexing" in listed[event.path]
        if event.kind == "indexed":
            assert listed[event.path].startswith("✓"), listed[event.path]
    last_file = [entry for entry in seen if entry[0].kind == "file"][-1]
    assert last_file[1] == len(files) - 1
    # Each file was on the list before the job ended (not only after the final re-read).
    indexed_during = {entry[0].path for entry in seen if entry[0].kind == "indexed"}
    assert indexed_during == {str(path) for path in files.values()}
    assert pane.files.isVisible() and not pane.empty_state.isVisible()


def test_files_finished_counts_only_files_that_are_done():
    assert Progress("start", 0, 3).files_finished == 0
    assert Progress("file", 3, 3, "/c.txt").files_finished == 2
    assert Progress("indexed", 3, 3, "/c.txt").files_finished == 3
    assert Progress("error", 2, 3, "/b.txt").files_finished == 2
    assert Progress("cancelled", 2, 3, "/b.txt").files_finished == 1  # stopped inside the file
    assert Progress("cancelled", 2, 3).files_finished == 2  # stopped between files
    assert Progress("done", 3, 3).files_finished == 3


def test_the_passages_line_is_for_people():
    assert passages_line(3, 1240, 3738) == "Used 3 passages (1,240 of 3,738 tokens of room)."
    assert passages_line(1, 80, 500) == "Used 1 passage (80 of 500 tokens of room)."
    assert passages_line(0, 0, 3738).startswith("No passage of your documents matched")


def test_the_previous_questions_passages_line_does_not_stay_while_a_new_one_runs(pane, qtbot):
    pane.budget_label.setText(passages_line(3, 1240, 3738))  # what the previous question left
    pane.only_documents.setChecked(True)  # nothing is indexed: the answer is "I don't know"
    with qtbot.waitSignal(pane.sig_answer_shown, timeout=300_000):
        pane.ask("How many crates of cloudberry jam are in the warehouse?")
        assert "1,240" not in pane.budget_label.text()
        assert "Looking for passages" in pane.budget_label.text()
    assert pane.budget_label.text().startswith("No passage of your documents matched")
