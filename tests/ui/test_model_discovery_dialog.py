"""Models → "Find models on this computer": the list, Link, and a linked model whose file goes missing."""

from __future__ import annotations

from PySide6.QtCore import Qt

from tests.assistant import test_model_discovery as trees

# The default model written as a split one, shared with the core's tests (home is suite-wide).
smollm2_split = trees.smollm2_split
SPLIT_NAME, _place = trees.SPLIT_NAME, trees._place


def test_find_link_and_a_missing_file(qtbot, window, home, smollm2_split):
    folder = home / ".lmstudio" / "models" / "HuggingFaceTB" / "SmolLM2-GGUF"
    for part in smollm2_split:
        _place(part, folder / part.name)
    window.show_page("models")
    pane = window.models
    qtbot.waitUntil(lambda: pane.list.count() == 3, timeout=30000)
    pane.discover_button.click()
    dialog = pane.discovery_dialog
    assert dialog.isVisible()
    qtbot.waitUntil(lambda: dialog.view is not None and not dialog.busy, timeout=30000)
    assert dialog.table.topLevelItemCount() == 1
    row = dialog.table.topLevelItem(0)
    assert row.text(0) == "LM Studio" and "(3 parts)" in row.text(2)
    assert row.text(1) == f"HuggingFaceTB/SmolLM2-GGUF/{SPLIT_NAME.format(1)}"
    # How it fits here: a 92 MiB model fits any machine that runs the suite; the speed depends on it.
    assert row.text(dialog.FIT_COLUMN).split(" · ")[0] in ("runs well", "tight")
    assert row.text(dialog.FIT_COLUMN).endswith("tokens/s") and "needs about" in row.toolTip(dialog.FIT_COLUMN)
    button = dialog.table.itemWidget(row, dialog.LINK_COLUMN)
    with qtbot.waitSignal(dialog.sig_link_finished, timeout=60000) as linked:
        button.click()
    assert linked.args == [1, 0]
    assert button.text() == "Linked" and not button.isEnabled()
    qtbot.waitUntil(lambda: pane.list.count() == 4, timeout=10000)
    dialog.accept()
    qtbot.waitUntil(lambda: pane.discovery_dialog is None, timeout=5000)

    # LM Studio deletes a part: the model shows as missing with Locate… and Remove from the list.
    (folder / SPLIT_NAME.format(2)).unlink()
    pane.refresh()
    qtbot.waitUntil(lambda: any("missing" in pane.list.item(r).text() for r in range(pane.list.count())), timeout=10000)
    row = next(r for r in range(pane.list.count()) if "missing" in pane.list.item(r).text())
    assert "LM Studio" in pane.list.item(row).text()
    pane.list.setCurrentRow(row)
    assert not pane.missing_box.isHidden() and "is missing" in pane.missing_label.text()
    assert pane.fields["source"].text().startswith("Linked from LM Studio")
    assert pane.locate_button.isEnabled()
    model_id = pane.list.item(row).data(Qt.ItemDataRole.UserRole)
    pane.forget_button.click()
    qtbot.waitUntil(lambda: pane.list.count() == 3, timeout=10000)
    assert model_id not in {m.id for m in window.services.library.list()}
    assert (folder / SPLIT_NAME.format(1)).is_file(), "removing from the list leaves the files alone"
