"""The Models page says how each model fits this machine, and asks before a model that does not fit
is chosen for a task (issue 20)."""

from __future__ import annotations

import json

from PySide6.QtCore import Qt

from assistant.models import fit
from engine.settings import physical_cores
from tests.engine.gguf_corpus import write_valid_gguf


def _seed_bandwidth(services) -> None:
    """This machine's bandwidth as if measured before (the measuring has its own tests)."""
    (services.paths.data_dir / fit.BANDWIDTH_FILE).write_text(json.dumps(
        {"bytes_per_s": 20e9, "cpu_model": fit.cpu_model(), "threads": physical_cores(),
         "measured_at": "2026-01-01T00:00:00+00:00"}))


def _row_text(pane, model_id: str) -> str:
    """The model's row in the list ("" until the list shows it)."""
    rows = [r for r in range(pane.list.count()) if pane.list.item(r).data(Qt.ItemDataRole.UserRole) == model_id]
    return pane.list.item(rows[0]).text() if rows else ""


def test_each_model_row_shows_its_fit_and_speed(qtbot, window, services):
    _seed_bandwidth(services)
    window.show_page("models")
    pane = window.models
    qtbot.waitUntil(lambda: pane.list.count() == 3 and bool(pane.fits), timeout=30000)
    text = _row_text(pane, "smollm2-135m-instruct")
    label = text.split("\n")[1].split(" · ")[-2]
    assert label in (fit.RUNS_WELL, fit.TIGHT), text
    assert text.endswith("tokens/s")
    pane.list.setCurrentRow(0)
    model = pane.selected_model()
    if model.is_gguf:
        assert "needs about" in pane.fields["fit"].text() and "tokens of context" in pane.fields["fit"].text()
    assert "tokens/s" not in _row_text(pane, "all-minilm-l6-v2"), "the embedding model is not decoded with"


def test_choosing_a_model_too_large_for_a_task_asks_first_with_the_numbers(qtbot, window, services, tmp_path):
    _seed_bandwidth(services)
    # Its header claims a context of four billion tokens: imported at a short context, it is too
    # large at the configured one on any machine.
    path = write_valid_gguf(tmp_path / "endless.gguf", name="Endless", context_length=2**32 - 1)
    record = services.library.add(path, n_ctx=256)
    services.settings.engine.n_ctx = 2**32 - 1
    window.show_page("models")
    pane = window.models
    pane.refresh()
    # The list and the fits come from two jobs: the row shows the label once both are in.
    qtbot.waitUntil(lambda: fit.TOO_LARGE in _row_text(pane, record.id), timeout=30000)

    combo = pane.route_combos["complete"]
    combo.setCurrentIndex(combo.findData(record.id))
    qtbot.waitUntil(lambda: pane.active_dialog is not None, timeout=10000)
    box = pane.active_dialog
    warning = box.informativeText()
    assert "needs about" in warning and "is free now" in warning and "tokens would fit" in warning
    box.button(box.StandardButton.Cancel).click()
    qtbot.waitUntil(lambda: combo.currentData() is None, timeout=5000)
    assert "complete" not in services.library.routes()

    # Asked again, the user goes on anyway.
    combo.setCurrentIndex(combo.findData(record.id))
    qtbot.waitUntil(lambda: pane.active_dialog is not None, timeout=10000)
    go_on = next(b for b in pane.active_dialog.buttons() if b.text() == "Use it anyway")
    go_on.click()
    qtbot.waitUntil(lambda: services.library.routes().get("complete") == record.id, timeout=10000)
