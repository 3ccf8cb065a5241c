"""The window's unlock at start (issue 24): nothing asked with a keyring, a passphrase chosen where
there is none, a wrong passphrase asked again with the reason, the recovery key shown once."""

from __future__ import annotations

import pytest
from PySide6.QtWidgets import QDialog, QWidget

from assistant.config import AppPaths
from assistant.vault import keys
from ui.unlock import PassphraseDialog, RecoveryKeyDialog, UnlockFlow


@pytest.fixture
def host(qtbot, jobs):
    widget = QWidget()
    widget.jobs = jobs
    qtbot.addWidget(widget)
    return widget


def _flow(host, data_dir, ensure: bool = True):
    outcome: dict = {}
    holder: dict = {}
    paths = AppPaths(data_dir).ensure() if ensure else AppPaths(data_dir)
    flow = UnlockFlow(host, paths, holder,
                      on_ready=lambda services: outcome.setdefault("services", services),
                      on_failed=lambda message: outcome.setdefault("failed", message))
    return flow, outcome


def _close(outcome):
    if "services" in outcome:
        outcome["services"].close()


def test_with_a_keyring_nothing_is_asked_and_the_recovery_key_is_shown_once(qtbot, host, data_dir, tmp_path):
    flow, outcome = _flow(host, data_dir)
    flow.start()
    qtbot.waitUntil(lambda: bool(outcome), timeout=60000)
    try:
        assert "services" in outcome, outcome.get("failed")
        assert isinstance(flow.dialog, RecoveryKeyDialog) and flow.dialog.isVisible()
        shown = flow.dialog.key.text()
        assert keys.parse_recovery_key(shown) == outcome["services"].store.key
        flow.dialog.save_to(tmp_path / "recovery.txt")
        assert shown in (tmp_path / "recovery.txt").read_text(encoding="utf-8")
        flow.dialog.accept()
    finally:
        _close(outcome)
    again, outcome = _flow(host, data_dir)
    again.start()
    qtbot.waitUntil(lambda: bool(outcome), timeout=60000)
    try:
        assert "services" in outcome and again.dialog is None  # second start: no dialog at all
    finally:
        _close(outcome)


def test_a_first_start_makes_the_data_folder_it_does_not_find(qtbot, host, tmp_path):
    # A new user's data folder does not exist yet: the unlock makes it (it once failed with
    # "Cannot write to …/data: No such file or directory" and "The library could not be opened").
    flow, outcome = _flow(host, tmp_path / "new" / "data", ensure=False)
    flow.start()
    qtbot.waitUntil(lambda: bool(outcome), timeout=60000)
    try:
        assert "services" in outcome, outcome.get("failed")
        assert (tmp_path / "new" / "data" / "assistant.sqlite3").is_file()
    finally:
        if isinstance(flow.dialog, RecoveryKeyDialog):
            flow.dialog.accept()
        _close(outcome)


def test_without_a_keyring_a_passphrase_is_chosen_then_asked_again_after_a_wrong_one(qtbot, host, data_dir,
                                                                                      no_keyring):
    flow, outcome = _flow(host, data_dir)
    flow.start()
    qtbot.waitUntil(lambda: isinstance(flow.dialog, PassphraseDialog) and flow.dialog.isVisible(), timeout=30000)
    choose = flow.dialog
    assert choose.again.isVisible() and "no system keyring" in choose.findChildren(type(choose.error))[0].text()
    choose.passphrase.setText("short")
    choose.again.setText("short")
    choose._check()
    assert choose.isVisible() and "at least 8" in choose.error.text()
    choose.passphrase.setText("a long passphrase")
    choose.again.setText("a long passphrase")
    choose._check()
    qtbot.waitUntil(lambda: "services" in outcome or "failed" in outcome, timeout=60000)
    assert "services" in outcome, outcome.get("failed")
    flow.dialog.accept()  # the recovery key
    _close(outcome)

    flow, outcome = _flow(host, data_dir)
    flow.start()
    qtbot.waitUntil(lambda: isinstance(flow.dialog, PassphraseDialog) and flow.dialog.isVisible(), timeout=30000)
    first = flow.dialog
    assert not first.again.isVisible()
    first.passphrase.setText("the wrong passphrase")
    first._check()
    qtbot.waitUntil(lambda: flow.dialog is not first and flow.dialog is not None and flow.dialog.isVisible(),
                    timeout=60000)
    second = flow.dialog
    assert "not the one" in second.error.text() and second.error.isVisible()
    second.passphrase.setText("a long passphrase")
    second._check()
    qtbot.waitUntil(lambda: bool(outcome), timeout=60000)
    try:
        assert "services" in outcome, outcome.get("failed")
    finally:
        _close(outcome)


def test_cancelling_the_passphrase_leaves_the_data_locked_with_a_message(qtbot, host, data_dir, no_keyring):
    flow, outcome = _flow(host, data_dir)
    flow.start()
    qtbot.waitUntil(lambda: isinstance(flow.dialog, PassphraseDialog) and flow.dialog.isVisible(), timeout=30000)
    flow.dialog.done(QDialog.DialogCode.Rejected)
    qtbot.waitUntil(lambda: bool(outcome), timeout=10000)
    assert "locked" in outcome["failed"]
    assert not (data_dir / "assistant.sqlite3").exists()


def test_a_passphrase_from_the_environment_is_used_once_and_a_wrong_one_is_asked_for(qtbot, host, data_dir,
                                                                                     no_keyring, monkeypatch):
    """Scripted runs without a keyring (screenshots, the start-up benchmark) give the passphrase in
    ASSISTANT_PASSPHRASE: nothing is asked. A wrong one falls back to the dialog, with the reason."""
    monkeypatch.setenv("ASSISTANT_PASSPHRASE", "from the environment")
    flow, outcome = _flow(host, data_dir)
    flow.start()
    qtbot.waitUntil(lambda: bool(outcome), timeout=60000)
    try:
        assert "services" in outcome, outcome.get("failed")
        assert not isinstance(flow.dialog, PassphraseDialog)
    finally:
        _close(outcome)
    monkeypatch.setenv("ASSISTANT_PASSPHRASE", "not the right one")
    flow, outcome = _flow(host, data_dir)
    flow.start()
    qtbot.waitUntil(lambda: isinstance(flow.dialog, PassphraseDialog) and flow.dialog.isVisible(), timeout=60000)
    assert "not the one" in flow.dialog.error.text()
    flow.dialog.passphrase.setText("from the environment")
    flow.dialog._check()
    qtbot.waitUntil(lambda: bool(outcome), timeout=60000)
    try:
        assert "services" in outcome, outcome.get("failed")
    finally:
        _close(outcome)
