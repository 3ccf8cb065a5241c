"""Settings → Security (issue 24): how the data is protected (the system keyring or a
passphrase, and where the data folder is), changing the passphrase or moving the key between
the keyring and a passphrase, rotating the key (a new recovery key is shown once), the idle time
after which the window locks itself, and "Lock now".

The key work (Argon2, the keyring, re-keying the database) runs on the window's pool through
:class:`assistant.vault.vault.Vault`; the dialogs stay open while it runs, so a wrong passphrase is
one message in the dialog and the user types again. GUI thread only, except the functions that
say otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from assistant.settings import MAX_AUTO_LOCK_MINUTES
from ui.unlock import MIN_PASSPHRASE, RecoveryKeyDialog

if TYPE_CHECKING:
    from assistant.app import Services
    from assistant.config import AppPaths
    from ui.jobs import Jobs


@dataclass(frozen=True)
class SecurityState:
    protection: str  # "keyring" | "passphrase"
    keyring_available: bool
    data_dir: Path


# ----- pool-thread work ---------------------------------------------------------------------------
def security_state(paths: "AppPaths") -> SecurityState:
    """Pool thread (the keyring probe may block on D-Bus)."""
    from assistant.app import vault_for
    from assistant.vault.keys import keyring_available

    return SecurityState(vault_for(paths).protection(), keyring_available(), paths.data_dir)


def change_protection(paths: "AppPaths", old: str | None, new: str | None) -> SecurityState:
    """Pool thread: re-wrap the key (``new=None``: into the keyring); the database is untouched."""
    from assistant.app import vault_for

    vault_for(paths).change_passphrase(old, new)
    return security_state(paths)


def rotate_key(services: "Services", passphrase: str | None) -> tuple[str, str]:
    """Pool thread: re-key the open database and its backups with a new random key; returns the
    new recovery key and a sentence about the backups."""
    from assistant.app import vault_for
    from assistant.vault.vault import Unlocked

    vault = vault_for(services.paths)
    old_key = services.store.key
    fresh = vault.rotate_key(services.store, passphrase)
    services.unlocked = Unlocked(key=fresh.key)
    backups = services.backups.list_backups()
    failed = vault.rekey_backups(backups, old_key, fresh.key)
    if not failed:
        note = f"The {len(backups)} backups were re-encrypted with the new key." if backups else ""
    else:
        note = (f"{len(failed)} of {len(backups)} backups could not be re-encrypted (damaged, or made under an "
                "older key) and will not restore with the new key.")
    return fresh.recovery_key or "", note


# ----- dialogs ----------------------------------------------------------------------------------------
def _password_field(name: str, parent: QWidget) -> QLineEdit:
    field = QLineEdit(parent)
    field.setEchoMode(QLineEdit.EchoMode.Password)
    field.setAccessibleName(name)
    field.setPlaceholderText(name)
    return field


class ChangePassphraseDialog(QDialog):
    """Ask what a change of protection needs: ``mode`` "change" (current, new twice), "set" (from
    the keyring to a passphrase: new twice), "to_keyring" (the current one, to prove it).

    Stays open after OK: the section runs the change and calls :meth:`fail` (a wrong current
    passphrase, said in words) or closes it. ``sig_submitted(old, new)``: None where not asked."""

    sig_submitted = Signal(object, object)

    TITLES = {"change": "Change passphrase", "set": "Protect with a passphrase",
              "to_keyring": "Keep the key in the system keyring"}
    INTROS = {
        "change": "Type your current passphrase, then the new one twice. Only the wrapping of the key "
                  "changes; your recovery key stays the same.",
        "set": "Choose a passphrase. The key of your data leaves the system keyring and is kept encrypted "
               "under the passphrase instead; you type it when the app starts and to unlock it.",
        "to_keyring": "Type your passphrase. The key of your data is then kept in the system keyring, and "
                      "the app opens without asking (anyone who can log in as you can open it too).",
    }

    def __init__(self, mode: str, parent: QWidget | None = None):
        super().__init__(parent)
        self.mode = mode
        self.setWindowTitle(self.TITLES[mode])
        self.setAccessibleName(self.TITLES[mode])
        layout = QVBoxLayout(self)
        intro = QLabel(self.INTROS[mode], self)
        intro.setWordWrap(True)
        layout.addWidget(intro)
        self.error = QLabel("", self)
        self.error.setObjectName("error")
        self.error.setWordWrap(True)
        self.error.hide()
        layout.addWidget(self.error)
        self.current = _password_field("Current passphrase", self)
        self.new = _password_field("New passphrase", self)
        self.again = _password_field("The new passphrase again", self)
        for field, shown in ((self.current, mode in ("change", "to_keyring")),
                             (self.new, mode != "to_keyring"), (self.again, mode != "to_keyring")):
            field.setVisible(shown)
            layout.addWidget(field)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel,
                                        self)
        self.ok = self.buttons.button(QDialogButtonBox.StandardButton.Ok)
        self.ok.setText("Use the keyring" if mode == "to_keyring" else "Change" if mode == "change" else "Protect")
        self.buttons.accepted.connect(self.submit)
        self.buttons.rejected.connect(self.reject)
        layout.addWidget(self.buttons)
        (self.current if self.current.isVisibleTo(self) else self.new).setFocus()

    def submit(self) -> None:
        old = self.current.text() if self.mode in ("change", "to_keyring") else None
        new = None
        if self.mode in ("change", "to_keyring") and not old:
            return self.fail("Type your current passphrase.")
        if self.mode != "to_keyring":
            new = self.new.text()
            if len(new) < MIN_PASSPHRASE:
                return self.fail(f"Choose a passphrase of at least {MIN_PASSPHRASE} characters.")
            if self.again.text() != new:
                return self.fail("The two new passphrases differ.")
        self.set_busy(True)
        self.sig_submitted.emit(old, new)

    def set_busy(self, busy: bool) -> None:
        self.ok.setEnabled(not busy)
        if busy:
            self.error.setText("Working… (the passphrase is stretched on purpose: it takes a moment)")
            self.error.show()

    def fail(self, message: str) -> None:
        self.set_busy(False)
        self.error.setText(message)
        self.error.show()


class RotateKeyDialog(QDialog):
    """Confirm a key rotation in words; with a passphrase, ask it (the new key is wrapped under it).
    Stays open while the rotation runs, like :class:`ChangePassphraseDialog`."""

    sig_submitted = Signal(object)  # the passphrase, or None with the keyring

    def __init__(self, needs_passphrase: bool, parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("Rotate the key")
        self.setAccessibleName("Rotate the key")
        layout = QVBoxLayout(self)
        text = QLabel("Your data is re-encrypted with a new random key. The old key and your old recovery "
                      "key stop opening it, and a new recovery key is shown once: keep it somewhere safe. "
                      "Backups made before stay under the old key; a new backup is made at once.", self)
        text.setWordWrap(True)
        layout.addWidget(text)
        self.error = QLabel("", self)
        self.error.setObjectName("error")
        self.error.setWordWrap(True)
        self.error.hide()
        layout.addWidget(self.error)
        self.needs_passphrase = needs_passphrase
        self.passphrase = _password_field("Passphrase", self)
        self.passphrase.setVisible(needs_passphrase)
        layout.addWidget(self.passphrase)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel,
                                        self)
        self.ok = self.buttons.button(QDialogButtonBox.StandardButton.Ok)
        self.ok.setText("Rotate key")
        self.buttons.accepted.connect(self.submit)
        self.buttons.rejected.connect(self.reject)
        layout.addWidget(self.buttons)

    def submit(self) -> None:
        if self.needs_passphrase and not self.passphrase.text():
            return self.fail("Type your passphrase.")
        self.ok.setEnabled(False)
        self.error.setText("Re-encrypting your data…")
        self.error.show()
        self.sig_submitted.emit(self.passphrase.text() if self.needs_passphrase else None)

    def fail(self, message: str) -> None:
        self.ok.setEnabled(True)
        self.error.setText(message)
        self.error.show()


# ----- the section ------------------------------------------------------------------------------------
class SecuritySection(QGroupBox):
    """``auto_lock`` is one of the Settings page's values (saved with them); the rest acts at once."""

    sig_lock_requested = Signal()

    def __init__(self, parent: QWidget | None = None):
        super().__init__("Security", parent)
        self.setAccessibleName("Security")
        self.services: Services | None = None
        self.jobs: Jobs | None = None
        self.state: SecurityState | None = None
        self.dialog: QDialog | None = None  # the one open (tests reach it here)
        form = QFormLayout(self)
        self.protection = QLabel("", self)
        self.protection.setWordWrap(True)
        self.protection.setAccessibleName("How your data is protected")
        self.protection.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        form.addRow(self.protection)
        self.auto_lock = QSpinBox(self)
        self.auto_lock.setRange(0, MAX_AUTO_LOCK_MINUTES)
        self.auto_lock.setSingleStep(5)
        self.auto_lock.setSuffix(" min")
        self.auto_lock.setSpecialValueText("Never")
        self.auto_lock.setAccessibleName("Lock after this many minutes without use")
        self.auto_lock.setToolTip("No key pressed and no mouse moved in the app for this long: the window locks. "
                                  "A reply being written or a running job holds it off.")
        self.auto_lock.setMinimumWidth(140)
        self.auto_lock.setMaximumWidth(220)
        form.addRow("Lock after", self.auto_lock)
        buttons = QHBoxLayout()
        self.lock_button = QPushButton("Lock now", self)
        self.lock_button.setAccessibleName("Lock now")
        self.lock_button.setToolTip("Close your data and clear it from the window (Ctrl+L).")
        self.lock_button.clicked.connect(self.sig_lock_requested)
        self.passphrase_button = QPushButton("Change passphrase…", self)
        self.passphrase_button.setAccessibleName("Change passphrase")
        self.passphrase_button.clicked.connect(self.change_passphrase)
        self.keyring_button = QPushButton("Keep the key in the keyring…", self)
        self.keyring_button.setAccessibleName("Keep the key in the system keyring instead of a passphrase")
        self.keyring_button.clicked.connect(self.use_keyring)
        self.keyring_button.hide()
        self.rotate_button = QPushButton("Rotate key…", self)
        self.rotate_button.setAccessibleName("Rotate key")
        self.rotate_button.setToolTip("Re-encrypt your data with a new key; a new recovery key is shown once.")
        self.rotate_button.clicked.connect(self.rotate)
        for button in (self.lock_button, self.passphrase_button, self.keyring_button, self.rotate_button):
            buttons.addWidget(button)
        buttons.addStretch(1)
        form.addRow(buttons)
        self.status = QLabel("", self)
        self.status.setObjectName("MutedLabel")
        self.status.setAccessibleName("Security status")
        self.status.setWordWrap(True)
        form.addRow(self.status)
        self._enable(False)

    def _enable(self, enabled: bool) -> None:
        for button in (self.passphrase_button, self.keyring_button, self.rotate_button):
            button.setEnabled(enabled)

    def set_services(self, services: "Services", jobs: "Jobs") -> None:
        self.services, self.jobs = services, jobs
        self.refresh()

    def refresh(self) -> None:
        if self.services is None or self.jobs is None:
            return
        self.jobs.run(security_state, self.services.paths, on_done=self._show_state, on_error=self._failed)

    def _show_state(self, state: SecurityState) -> None:
        self.state = state
        if state.protection == "passphrase":
            how = ("Your data is encrypted, and its key is locked with your passphrase: you type it when the "
                   "app starts and to unlock it.")
            self.passphrase_button.setText("Change passphrase…")
            self.passphrase_button.setAccessibleName("Change passphrase")
        else:
            how = ("Your data is encrypted, and its key is kept in the system keyring: the app opens without "
                   "asking while you are logged in.")
            self.passphrase_button.setText("Protect with a passphrase instead…")
            self.passphrase_button.setAccessibleName("Protect with a passphrase instead of the keyring")
        self.protection.setText(f"{how}\nData folder: {state.data_dir}")
        self.keyring_button.setVisible(state.protection == "passphrase" and state.keyring_available)
        self._enable(True)

    # ----- passphrase -----------------------------------------------------------------------------
    def change_passphrase(self) -> None:
        """"Change passphrase…" (passphrase mode) or "Protect with a passphrase instead…" (keyring)."""
        if self.state is not None:
            self._ask_protection("change" if self.state.protection == "passphrase" else "set")

    def use_keyring(self) -> None:
        self._ask_protection("to_keyring")

    def _ask_protection(self, mode: str) -> ChangePassphraseDialog:
        dialog = ChangePassphraseDialog(mode, self)
        self.dialog = dialog
        dialog.sig_submitted.connect(lambda old, new: self._change(dialog, old, new))
        dialog.open()
        return dialog

    def _change(self, dialog: ChangePassphraseDialog, old: str | None, new: str | None) -> None:
        if self.services is None or self.jobs is None:
            return
        self.jobs.run(change_protection, self.services.paths, old, new,
                      on_done=lambda state: self._changed(dialog, state),
                      on_error=lambda message, _exc: dialog.fail(message))

    def _changed(self, dialog: ChangePassphraseDialog, state: SecurityState) -> None:
        dialog.accept()
        self._show_state(state)
        self.status.setText({"change": "Your passphrase was changed.",
                             "set": "Your data is now locked with your passphrase.",
                             "to_keyring": "The key of your data is now kept in the system keyring."}[dialog.mode])

    # ----- rotation -------------------------------------------------------------------------------
    def rotate(self) -> RotateKeyDialog | None:
        if self.state is None:
            return None
        dialog = RotateKeyDialog(self.state.protection == "passphrase", self)
        self.dialog = dialog
        dialog.sig_submitted.connect(lambda passphrase: self._rotate(dialog, passphrase))
        dialog.open()
        return dialog

    def _rotate(self, dialog: RotateKeyDialog, passphrase: str | None) -> None:
        if self.services is None or self.jobs is None:
            return
        self.jobs.run(rotate_key, self.services, passphrase,
                      on_done=lambda result: self._rotated(dialog, *result),
                      on_error=lambda message, _exc: dialog.fail(message))

    def _rotated(self, dialog: RotateKeyDialog, recovery_key: str, note: str) -> None:
        dialog.accept()
        self.status.setText(f"The key was rotated. {note}")
        self.dialog = RecoveryKeyDialog(recovery_key, parent=self.window())
        self.dialog.open()

    def _failed(self, message: str, _exc: Any = None) -> None:
        self.status.setText(message)
