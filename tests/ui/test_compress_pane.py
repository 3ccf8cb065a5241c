"""The Compress pane: a real quantization lab job (small settings) and adding a result to the library."""

from __future__ import annotations

from pathlib import Path

import pytest

from ui.compress_pane import GOALS, CompressPane, recommend

PEPS = Path(__file__).resolve().parents[3] / "shared" / "data" / "documents" / "typing-peps"


@pytest.fixture
def pane(qtbot, services):
    widget = CompressPane(services)
    qtbot.addWidget(widget)
    widget.show()
    yield widget
    assert widget.shutdown()


def test_controls_have_names(pane):
    from PySide6.QtWidgets import QComboBox, QPushButton

    for control in pane.findChildren(QPushButton) + pane.findChildren(QComboBox):
        assert control.accessibleName(), control
    assert pane.model_combo.count() >= 1 and [pane.goal_combo.itemText(i) for i in range(3)] == list(GOALS)


def test_run_without_text_is_a_clear_message(pane):
    pane.run_lab()
    assert "held-out text" in pane.status.text()


def test_lab_table_chart_recommendation_and_library(qtbot, pane, services):
    held_out = PEPS / "pep-0646.rst"
    assert held_out.is_file(), f"the shared corpus is missing: {held_out}"
    smollm2 = [i for i in range(pane.model_combo.count()) if "smollm2" in pane.model_combo.itemData(i).lower()]
    assert smollm2, "the default SmolLM2 model is not in the library"
    pane.model_combo.setCurrentIndex(smollm2[0])
    pane.set_text_files([str(held_out)])
    # Small figures: a shared 2-core CPU; benchmarks/quantization_lab.py measures properly.
    pane.lab_settings = {"max_eval_tokens": 64, "ctx": 64, "speed_tokens": 4, "speed_repeats": 1, "threads": 1}
    with qtbot.waitSignal(pane.sig_lab_finished, timeout=900000) as blocker:
        pane.run_lab()
    rows = blocker.args[0]["rows"]
    assert pane.table.rowCount() == len(rows) == 6 and pane.chart.rows == rows
    assert pane.table.item(0, 0).text() == "F16"
    # The goal picks a row: "Smaller" is the smallest file within 5% of F16's perplexity.
    pane.goal_combo.setCurrentText("Smaller")
    best = recommend(rows, "Smaller")
    assert best is not None and pane.selected_row()["label"] == best
    qtbot.waitUntil(lambda: pane.run_button.isEnabled(), timeout=30000)
    with qtbot.waitSignal(pane.sig_model_added, timeout=120000) as added:
        pane.add_selected()
    assert Path(added.args[0].path).name == Path(pane.selected_row()["path"]).name
    assert any(Path(m.path).name == Path(added.args[0].path).name for m in services.library.list())
