"""Help has About, the user guide and the privacy promises (issue 19, point 10), read from
files that an installed app and the bundle ship too."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from PySide6.QtWidgets import QMenu

import resources
from ui.help_dialogs import AboutDialog, DocumentDialog, app_version

ROOT = Path(__file__).resolve().parents[2]


def test_help_menu_opens_about_the_user_guide_and_the_privacy_promises(qtbot, window):
    help_menu = next(menu for menu in window.menuBar().findChildren(QMenu) if menu.title() == "&Help")
    names = [action.text() for action in help_menu.actions() if action.text()]
    assert names == ["Keyboard shortcuts", "User guide", "Privacy promises", "About Local Assistant"]

    window.actions_by_name["about"].trigger()
    about = window.help_dialogs["about"]
    assert isinstance(about, AboutDialog) and about.isVisible()
    assert "Local Assistant" in about.text() and f"Version {app_version()}" in about.text()
    assert app_version() != "unknown"  # the checkout is installed (editable) in the test environment
    assert "leaves this computer" in about.text()
    about.reject()

    window.actions_by_name["user_guide"].trigger()
    guide = window.help_dialogs["user_guide"]
    assert isinstance(guide, DocumentDialog) and guide.isVisible() and guide.browser.isReadOnly()
    text = guide.text()
    for heading in ("Local Assistant: user guide", "Installing", "Chat", "Documents", "Troubleshooting"):
        assert heading in text
    assert "## " not in text  # rendered, not shown as Markdown source
    # The guide's pictures load from beside it.
    picture = guide.browser.document().resource(3, "images/chat.png")  # QTextDocument.ImageResource
    assert picture is not None and not picture.isNull()
    guide.reject()

    window.actions_by_name["privacy"].trigger()
    privacy = window.help_dialogs["privacy"]
    assert privacy.isVisible() and privacy.browser.isReadOnly()
    assert "Nothing leaves the machine" in privacy.text() and "Your data stays where you put it" in privacy.text()
    privacy.reject()


def test_help_files_are_found_in_the_checkout_and_shipped_in_the_wheel_and_the_bundle(tmp_path):
    for name, source in resources.HELP_SOURCES.items():
        assert resources.help_file(name) == ROOT / source  # a checkout: the repository's own files
    # The wheel: setup.py's build_py copies them into resources/help/.
    result = subprocess.run([sys.executable, "setup.py", "-q", "build_py", "--build-lib", str(tmp_path)],
                            cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    shipped = tmp_path / "resources" / "help"
    for name, source in resources.HELP_SOURCES.items():
        assert (shipped / name).read_bytes() == (ROOT / source).read_bytes()
    assert (shipped / "images" / "chat.png").is_file()
    # The bundle: the PyInstaller recipe takes them to the same place.
    from tests.test_packaging import _run_spec

    datas = _run_spec()["Analysis"][1]["datas"]
    for source in resources.HELP_SOURCES.values():
        assert (str(ROOT / source), "resources/help") in datas
    assert (str(ROOT / resources.HELP_IMAGES), "resources/help/images") in datas


def test_an_installed_app_reads_the_shipped_copy(tmp_path, monkeypatch):
    shipped = tmp_path / "help"
    shipped.mkdir()
    (shipped / "PRIVACY.md").write_text("# Privacy\n\nShipped copy.\n", encoding="utf-8")
    monkeypatch.setattr(resources, "HELP_DIR", shipped)
    assert resources.help_file("PRIVACY.md") == shipped / "PRIVACY.md"
    assert resources.help_file("user-guide.md") == ROOT / "docs" / "user-guide.md"
