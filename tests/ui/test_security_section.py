"""Settings → Security (issue 24): how the data is protected, changing the passphrase (a wrong
current one is one message and changes nothing), moving the key between the keyring and a
passphrase, and rotating the key (the new recovery key is shown once and the data still opens)."""

from __future__ import annotations

import pytest

from assistant.app import build_services, vault_for
from assistant.config import AppPaths
from assistant.vault import keys
from assistant.vault.cipher import WrongKeyError, connect
from tests.ui.test_lock import _seed_conversation
from ui.security_section import ChangePassphraseDialog, RotateKeyDialog
from ui.unlock import RecoveryKeyDialog


def _security(qtbot, window):
    window.show_page("settings")
    section = window.settings_pane.security
    qtbot.waitUntil(lambda: section.state is not None, timeout=30000)
    return section


def _submit(qtbot, dialog, **fields) -> None:
    for name, text in fields.items():
        getattr(dialog, name).setText(text)
    dialog.submit()


def test_with_a_passphrase_it_is_changed_and_a_wrong_current_one_changes_nothing(qtbot, theme, data_dir,
                                                                                 no_keyring):
    from ui.app import create_window

    paths = AppPaths(data_dir).ensure()
    services = build_services(paths, sync_pack=False, passphrase="first passphrase")
    window = create_window(services, theme=theme)
    window.show()
    try:
        section = _security(qtbot, window)
        assert "locked with your passphrase" in section.protection.text() and str(data_dir) in section.protection.text()
        assert section.passphrase_button.text() == "Change passphrase…"
        assert not section.keyring_button.isVisibleTo(section)  # no keyring here to move the key to

        section.passphrase_button.click()
        dialog = section.dialog
        assert isinstance(dialog, ChangePassphraseDialog) and dialog.isVisible() and dialog.mode == "change"
        _submit(qtbot, dialog, current="first passphrase", new="short", again="short")
        assert "at least 8" in dialog.error.text() and dialog.isVisible()
        _submit(qtbot, dialog, current="not my passphrase", new="second passphrase", again="second passphrase")
        qtbot.waitUntil(lambda: "not the one" in dialog.error.text(), timeout=30000)
        assert dialog.isVisible() and dialog.ok.isEnabled()
        assert vault_for(paths).unlock("first passphrase").key == services.store.key  # nothing changed

        _submit(qtbot, dialog, current="first passphrase")
        qtbot.waitUntil(lambda: not dialog.isVisible(), timeout=30000)
        assert section.status.text() == "Your passphrase was changed."
        assert vault_for(paths).unlock("second passphrase").key == services.store.key
        with pytest.raises(keys.WrongPassphraseError):
            vault_for(paths).unlock("first passphrase")

        # Rotation under a passphrase: asked for it, the new key wrapped under the same one.
        old_key = services.store.key
        rotate = section.rotate()
        assert isinstance(rotate, RotateKeyDialog) and rotate.passphrase.isVisible()
        _submit(qtbot, rotate, passphrase="not my passphrase")
        qtbot.waitUntil(lambda: "not the one" in rotate.error.text(), timeout=30000)
        assert services.store.key == old_key
        _submit(qtbot, rotate, passphrase="second passphrase")
        qtbot.waitUntil(lambda: isinstance(section.dialog, RecoveryKeyDialog) and section.dialog.isVisible(),
                        timeout=60000)
        new_key = keys.parse_recovery_key(section.dialog.key.text())
        assert new_key == services.store.key != old_key
        assert vault_for(paths).unlock("second passphrase").key == new_key
        section.dialog.accept()
    finally:
        window.shutdown()
        window.close()
        services.close()


def test_rotating_the_key_shows_the_new_recovery_key_and_the_data_still_opens(qtbot, window, services):
    conversation_id = _seed_conversation(services, "rotation kept")
    section = _security(qtbot, window)
    assert "system keyring" in section.protection.text()
    assert section.passphrase_button.text() == "Protect with a passphrase instead…"
    old_key = services.store.key
    services.backups.backup()  # made under the old key: re-encrypted by the rotation
    backups = services.backups.list_backups()

    section.rotate_button.click()
    dialog = section.dialog
    assert isinstance(dialog, RotateKeyDialog) and not dialog.passphrase.isVisibleTo(dialog)
    dialog.submit()
    qtbot.waitUntil(lambda: isinstance(section.dialog, RecoveryKeyDialog) and section.dialog.isVisible(),
                    timeout=60000)
    new_key = keys.parse_recovery_key(section.dialog.key.text())
    assert new_key == services.store.key != old_key
    assert f"The {len(backups)} backups were re-encrypted" in section.status.text()
    for backup in backups:
        connect(backup, new_key).close()  # every earlier backup opens with the new key ...
        with pytest.raises(WrongKeyError):
            connect(backup, old_key)  # ... and no longer with the old one
    section.dialog.accept()

    window.lock()
    qtbot.waitUntil(lambda: window.state == "locked", timeout=60000)
    window.unlock()
    qtbot.waitUntil(lambda: window.state == "open", timeout=60000)
    assert window.services.store.key == new_key
    qtbot.waitUntil(lambda: window.sidebar.item_for(conversation_id) is not None, timeout=10000)


def test_the_key_moves_from_the_keyring_to_a_passphrase_and_back(qtbot, window, services):
    paths = services.paths
    section = _security(qtbot, window)
    section.passphrase_button.click()
    dialog = section.dialog
    assert dialog.mode == "set" and not dialog.current.isVisibleTo(dialog)
    _submit(qtbot, dialog, new="a passphrase of mine", again="a passphrase of mine")
    qtbot.waitUntil(lambda: not dialog.isVisible(), timeout=30000)
    assert vault_for(paths).protection() == "passphrase" and "locked with your passphrase" in section.protection.text()
    assert vault_for(paths).unlock("a passphrase of mine").key == services.store.key
    assert section.keyring_button.isVisible()  # the test keyring works

    section.keyring_button.click()
    dialog = section.dialog
    assert dialog.mode == "to_keyring" and not dialog.new.isVisibleTo(dialog)
    _submit(qtbot, dialog, current="a passphrase of mine")
    qtbot.waitUntil(lambda: not dialog.isVisible(), timeout=30000)
    assert vault_for(paths).protection() == "keyring" and vault_for(paths).unlock().key == services.store.key
    assert section.status.text() == "The key of your data is now kept in the system keyring."
