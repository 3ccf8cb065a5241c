"""The Models page's Settings… dialog: a model's own settings shown over what applies
without them, saved (and refused in words when the context does not fit), and reset."""

from __future__ import annotations

import pytest
from PySide6.QtCore import Qt

from assistant.models import model_settings
from assistant.models.model_settings import ModelSettings


@pytest.fixture
def pane(qtbot, window):
    window.show_page("models")
    qtbot.waitUntil(lambda: window.models.list.count() == 3, timeout=30000)
    return window.models


def open_for(qtbot, pane, model_id: str):
    row = next(r for r in range(pane.list.count()) if pane.list.item(r).data(Qt.ItemDataRole.UserRole) == model_id)
    pane.list.setCurrentRow(row)
    assert pane.settings_button.isEnabled()
    qtbot.mouseClick(pane.settings_button, Qt.MouseButton.LeftButton)
    dialog = pane.settings_dialog
    assert dialog is not None and dialog.isVisible()
    qtbot.waitUntil(lambda: dialog.view is not None and dialog.save_button.isEnabled(), timeout=30000)
    return dialog


def test_the_dialog_saves_and_resets_a_models_settings(qtbot, pane, services):
    model = services.library.for_task("chat")
    dialog = open_for(qtbot, pane, model.id)
    # Nothing set yet: every field reads "Default", with the value that applies and its source.
    temperature = dialog.spins["temperature"]
    assert temperature.value() == temperature.minimum()
    value, source = model_settings.effective(services, model, ModelSettings())["temperature"]
    assert temperature.text() == f"Default ({value:g}, {source})"
    assert "tokens fit in the memory free now" in dialog.context_hint.text()

    temperature.setValue(0.35)
    dialog.spins["n_ctx"].setValue(2048)
    dialog.spins["max_tokens"].setValue(128)
    dialog.system_prompt.setPlainText("You are a patient teacher.")
    with qtbot.waitSignal(dialog.sig_settings_saved, timeout=30000):
        qtbot.mouseClick(dialog.save_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: pane.settings_dialog is None, timeout=10000)
    assert model_settings.load(services.store, model.id) == ModelSettings(
        n_ctx=2048, temperature=0.35, max_tokens=128, system_prompt="You are a patient teacher.")
    # The fit label follows the model's own context.
    qtbot.waitUntil(lambda: model.id in pane.fits and pane.fits[model.id].n_ctx == 2048, timeout=30000)
    assert "2,048-token context" in pane.fields["fit"].text()

    # Opened again, it shows them; Reset to defaults forgets them and shows the defaults again.
    dialog = open_for(qtbot, pane, model.id)
    assert dialog.spins["temperature"].value() == pytest.approx(0.35)
    assert dialog.spins["n_ctx"].value() == 2048
    assert dialog.system_prompt.toPlainText() == "You are a patient teacher."
    with qtbot.waitSignal(dialog.sig_settings_saved, timeout=30000):
        qtbot.mouseClick(dialog.reset_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: dialog.save_button.isEnabled(), timeout=10000)
    assert model_settings.load(services.store, model.id).is_empty
    assert dialog.spins["temperature"].value() == dialog.spins["temperature"].minimum()
    assert dialog.system_prompt.toPlainText() == "" and "Back to the app's settings" in dialog.status.text()
    dialog.reject()


def test_a_context_that_does_not_fit_is_refused_in_the_dialog(qtbot, pane, services, monkeypatch):
    from engine import library as engine_library

    model = services.library.for_task("chat")
    dialog = open_for(qtbot, pane, model.id)
    monkeypatch.setattr(engine_library, "available_memory", lambda: 400 * 1024 ** 2)  # a crowded machine
    dialog.spins["n_ctx"].setValue(8192)
    qtbot.mouseClick(dialog.save_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: "cannot load with a 8,192-token context" in dialog.status.text(), timeout=30000)
    assert "tokens of context fit" in dialog.status.text()
    assert dialog.isVisible() and dialog.spins["n_ctx"].value() == 8192  # kept open, nothing lost
    assert model_settings.load(services.store, model.id).is_empty
    dialog.reject()
