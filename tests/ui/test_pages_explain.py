"""The Train and Compress pages explain themselves (issue 19, point 5): Train before any run
says what a run gives, with one button that starts one; Compress says what "vs F16",
"agreement" and the held-out text are, next to the figures and on each column.

GUI thread, over real services and the window's one pool (``jobs``).
"""

from __future__ import annotations

from ui.compress_pane import COLUMN_HELP, COLUMNS, EMPTY_STATE_TEXT as COMPRESS_EMPTY, CompressPane
from ui.train_pane import EMPTY_STATE_TEXT as TRAIN_EMPTY, TrainPane


def test_train_before_any_run_shows_one_sentence_and_a_button_that_starts_a_run(qtbot, services, jobs):
    pane = TrainPane(services, jobs)
    qtbot.addWidget(pane)
    pane.show()
    qtbot.waitUntil(lambda: pane.empty_state.isVisible(), timeout=30_000)
    assert pane.empty_label.text() == TRAIN_EMPTY and not pane.chart.isVisible()
    # Nothing is indexed, so the start it triggers says what is missing (the page's own check).
    pane.empty_start_button.click()
    assert "document collection" in pane.status.text()
    assert not pane.busy
    assert pane.shutdown()


def test_compress_says_what_each_figure_means(qtbot, services, jobs):
    pane = CompressPane(services, jobs)
    qtbot.addWidget(pane)
    pane.show()
    assert pane.status.text() == COMPRESS_EMPTY
    caption = pane.figures_help
    assert caption.isVisible()
    for words in ("vs F16", "full-precision", "Agreement", "same next word", "Held-out text", "not trained on"):
        assert words in caption.text(), words
    for column, name in enumerate(COLUMNS):
        assert pane.table.horizontalHeaderItem(column).toolTip() == COLUMN_HELP[name]
    assert "x1.020 is 2 %" in COLUMN_HELP["vs F16"]
    assert "not trained on" in pane.text_button.toolTip()
    assert pane.shutdown()
