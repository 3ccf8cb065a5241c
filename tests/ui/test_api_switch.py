"""The Settings switch starts and stops the local API server; URL and token are shown and copied."""
import openai
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QLineEdit


def test_settings_switch_serves_the_api_and_shows_url_and_token(qtbot, window, services):
    pane = window.settings_pane
    qtbot.waitUntil(pane.isEnabled, timeout=30000)
    qtbot.waitUntil(lambda: bool(pane.api_token.text()), timeout=30000)
    assert not pane.api_enabled.isChecked() and not services.settings.api_server_enabled
    assert pane.api_token.echoMode() == QLineEdit.EchoMode.Password
    pane.api_port.setValue(18642)
    pane.api_port.editingFinished.emit()
    pane.api_enabled.setChecked(True)
    qtbot.waitUntil(lambda: pane.api_status.text().startswith("On"), timeout=30000)
    assert pane.api_url.text() == "http://127.0.0.1:18642/v1"
    pane.api_copy_token.click()
    assert QGuiApplication.clipboard().text() == pane.api_token.text()
    with openai.OpenAI(base_url=pane.api_url.text(), api_key=pane.api_token.text(), max_retries=0) as client:
        assert "smollm2-135m-instruct" in {m.id for m in client.models.list().data}
    stored = services.store.get_setting("app", "AppSettings", {})
    assert stored["api_server_enabled"] is True and stored["api_server_port"] == 18642
    pane.api_enabled.setChecked(False)
    qtbot.waitUntil(lambda: pane.api_status.text() == "Off.", timeout=30000)
    assert not pane.api_switch.running
    pane.api_enabled.setChecked(True)
    qtbot.waitUntil(lambda: pane.api_status.text().startswith("On"), timeout=30000)
    # Closing the window stops it (the fixture checks no thread is left).
