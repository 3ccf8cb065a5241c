"""The window's side of encryption: asking for the passphrase, choosing one where there is no
keyring, opening the data with the recovery key, and showing a new recovery key once.

The key work (Argon2, the keyring, opening the database) runs on the window's pool through
``assistant.app.build_services``; these dialogs only collect what the user types, on the GUI
thread, after the first paint (the window never waits on an unlock to appear).
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtGui import QFont, QGuiApplication
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QLabel,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

#: The shortest passphrase accepted when one is chosen (the vault says the same).
MIN_PASSPHRASE = 8


class PassphraseDialog(QDialog):
    """Unlock with the passphrase, or (``choose=True``) choose one because there is no keyring.

    ``message`` is shown above the field (the reason of a previous failure, in words). The
    "Use recovery key…" button ends the dialog with :attr:`wants_recovery` set."""

    def __init__(self, choose: bool, message: str = "", parent: QWidget | None = None):
        super().__init__(parent)
        self.wants_recovery = False
        self.setWindowTitle("Choose a passphrase" if choose else "Unlock your data")
        self.setAccessibleName(self.windowTitle())
        layout = QVBoxLayout(self)
        intro = ("There is no system keyring on this computer to keep the key of your data in. Choose a "
                 "passphrase: it encrypts your conversations, documents and settings, and you type it each "
                 "time the app starts.") if choose else "Your conversations and documents are locked with a passphrase."
        text = QLabel(intro, self)
        text.setWordWrap(True)
        layout.addWidget(text)
        self.error = QLabel(message, self)
        self.error.setWordWrap(True)
        self.error.setObjectName("error")
        self.error.setVisible(bool(message))
        layout.addWidget(self.error)
        self.passphrase = QLineEdit(self)
        self.passphrase.setEchoMode(QLineEdit.EchoMode.Password)
        self.passphrase.setAccessibleName("Passphrase")
        self.passphrase.setPlaceholderText("Passphrase")
        layout.addWidget(self.passphrase)
        self.again = QLineEdit(self)
        self.again.setEchoMode(QLineEdit.EchoMode.Password)
        self.again.setAccessibleName("Passphrase again")
        self.again.setPlaceholderText("The same passphrase again")
        self.again.setVisible(choose)
        layout.addWidget(self.again)
        self.choose = choose
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel, self)
        buttons.button(QDialogButtonBox.StandardButton.Ok).setText("Choose" if choose else "Unlock")
        if not choose:
            recover = QPushButton("Use recovery key…", self)
            recover.setAccessibleName("Use recovery key")
            recover.clicked.connect(self._use_recovery)
            buttons.addButton(recover, QDialogButtonBox.ButtonRole.ActionRole)
        buttons.accepted.connect(self._check)
        buttons.rejected.connect(self.reject)
        layout.addWidget(buttons)
        self.passphrase.setFocus()

    def _use_recovery(self) -> None:
        self.wants_recovery = True
        self.reject()

    def _check(self) -> None:
        text = self.passphrase.text()
        if self.choose and len(text) < MIN_PASSPHRASE:
            return self._say(f"Choose a passphrase of at least {MIN_PASSPHRASE} characters.")
        if self.choose and self.again.text() != text:
            return self._say("The two passphrases differ.")
        if not text:
            return self._say("Type your passphrase.")
        self.accept()

    def _say(self, message: str) -> None:
        self.error.setText(message)
        self.error.show()

    def value(self) -> str:
        return self.passphrase.text()


class RecoveryKeyDialog(QDialog):
    """The recovery key, shown once: copy it or save it to a file the user picks."""

    def __init__(self, recovery_key: str, parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("Your recovery key")
        self.setAccessibleName("Your recovery key")
        self.saved_to: Path | None = None
        layout = QVBoxLayout(self)
        text = QLabel("Your data is encrypted. This recovery key opens it if the system keyring loses its "
                      "entry or you forget your passphrase. It is shown only this once: copy it or save it "
                      "somewhere safe, away from this computer.", self)
        text.setWordWrap(True)
        layout.addWidget(text)
        self.key = QLineEdit(recovery_key, self)
        self.key.setReadOnly(True)
        self.key.setAccessibleName("Recovery key")
        mono = QFont("monospace")
        mono.setStyleHint(QFont.StyleHint.Monospace)
        self.key.setFont(mono)
        self.key.setMinimumWidth(self.key.fontMetrics().horizontalAdvance(recovery_key) + 24)
        layout.addWidget(self.key)
        buttons = QDialogButtonBox(self)
        copy = buttons.addButton("Copy", QDialogButtonBox.ButtonRole.ActionRole)
        copy.clicked.connect(lambda: QGuiApplication.clipboard().setText(recovery_key))
        save = buttons.addButton("Save to a file…", QDialogButtonBox.ButtonRole.ActionRole)
        save.clicked.connect(self._save)
        done = buttons.addButton("I have kept it", QDialogButtonBox.ButtonRole.AcceptRole)
        done.clicked.connect(self.accept)
        layout.addWidget(buttons)
        self._recovery_key = recovery_key

    def _save(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Save the recovery key", "local-assistant-recovery-key.txt",
                                              "Text files (*.txt)")
        if path:
            self.save_to(Path(path))

    def save_to(self, path: Path) -> None:
        path.write_text("Local Assistant recovery key\n\n" + self._recovery_key + "\n", encoding="utf-8")
        self.saved_to = path


class RecoverDialog(QDialog):
    """Type (or paste) the recovery key; the key is kept again in the keyring (or under a new
    passphrase where there is none: the caller asks for one next)."""

    def __init__(self, message: str = "", parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("Open with the recovery key")
        self.setAccessibleName(self.windowTitle())
        layout = QVBoxLayout(self)
        text = QLabel(message or "Type the recovery key that was shown when your data was first encrypted "
                                 "(13 groups of four letters and digits).", self)
        text.setWordWrap(True)
        layout.addWidget(text)
        self.field = QLineEdit(self)
        self.field.setAccessibleName("Recovery key")
        layout.addWidget(self.field)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel, self)
        buttons.button(QDialogButtonBox.StandardButton.Ok).setText("Open")
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout.addWidget(buttons)

    def value(self) -> str:
        return self.field.text()


# ----- the start-up flow ------------------------------------------------------------------------------
def vault_state(paths, use_environment: bool = True) -> str:
    """Pool thread: what the unlock needs, "recover" | "unlock" | "choose" | "keyring" (the
    keyring probe may block on D-Bus, so it never runs on the GUI thread). With
    ``ASSISTANT_PASSPHRASE`` set (scripted runs on a machine without a keyring: screenshots, the
    start-up benchmark) nothing is asked, once: a wrong one is asked for in the dialog."""
    import os

    from assistant.app import locked_by_another_process, vault_for
    from assistant.vault.vault import PASSPHRASE_ENV

    vault = vault_for(paths)
    if locked_by_another_process(paths):
        return "unlock"  # another window of this library holds it locked: unlock asks again
    if vault.needs_recovery():
        return "recover"
    if vault.needs_passphrase():
        if use_environment and os.environ.get(PASSPHRASE_ENV):
            return "keyring"  # nothing to ask: build_services takes it from the environment
        return "unlock" if vault.protection() == "passphrase" else "choose"
    return "keyring"


def build_unlocked(holder: dict, paths, passphrase: str | None, recovery_key: str | None) -> "object":
    """Pool thread: recover (when a recovery key was typed), unlock, migrate, open the store.

    The key is kept in ``holder["unlocked"]`` until the store has opened: if it cannot (a damaged
    database), the newest backup, encrypted with that key, can replace it without asking the user
    again. Once open, the services hold the key and the holder lets go of it."""
    from assistant.app import build_services, unlock_and_encrypt, vault_for

    if recovery_key is not None:
        vault_for(paths).recover(recovery_key, passphrase)
        passphrase = passphrase if vault_for(paths).protection() == "passphrase" else None
    holder["unlocked"] = unlock_and_encrypt(paths, passphrase)
    services = build_services(paths, unlocked=holder.pop("unlocked"))
    holder["services"] = services  # closed by the caller even if the window is gone by now
    return services


class UnlockFlow:
    """GUI thread: ask only what is needed (nothing with a keyring), build the services on the
    pool, ask again after a wrong passphrase, offer the recovery key when the key is gone, and
    show a new recovery key once. ``on_ready(services)`` / ``on_failed(message)`` end it."""

    def __init__(self, window, paths, holder: dict, on_ready, on_failed,
                 stay_locked_message: str = "Your data stays locked. Restart the app to unlock it."):
        self.window, self.paths, self.holder = window, paths, holder
        self.on_ready, self.on_failed = on_ready, on_failed
        self.stay_locked_message = stay_locked_message
        self.dialog: QDialog | None = None
        #: What ended the flow in failure (None when the user cancelled): the window offers the
        #: newest backup for a :class:`~assistant.errors.CorruptDatabaseError`.
        self.error: BaseException | None = None

    def start(self, message: str = "", use_environment: bool = True) -> None:
        self.window.jobs.run(vault_state, self.paths, use_environment,
                             on_done=lambda state: self._ask(state, message), on_error=self._report)

    def _ask(self, state: str, message: str) -> None:
        if state == "keyring":
            return self._build(None, None)
        if state == "recover":
            return self._ask_recovery(message)
        dialog = PassphraseDialog(choose=state == "choose", message=message, parent=self.window)
        self._show(dialog, lambda ok: self._build(dialog.value(), None) if ok else
                   (self._ask_recovery("") if dialog.wants_recovery else self._stay_locked()))

    def _ask_recovery(self, message: str) -> None:
        dialog = RecoverDialog(message, parent=self.window)
        self._show(dialog, lambda ok: self._recovered(dialog.value()) if ok else self._stay_locked())

    def _recovered(self, recovery_key: str) -> None:
        def with_keyring(available: bool) -> None:
            if available:
                return self._build(None, recovery_key)
            dialog = PassphraseDialog(choose=True, parent=self.window)
            self._show(dialog, lambda ok: self._build(dialog.value(), recovery_key) if ok else self._stay_locked())

        from assistant.vault.keys import keyring_available

        self.window.jobs.run(keyring_available, on_done=with_keyring, on_error=lambda text, _exc: with_keyring(False))

    def _show(self, dialog: QDialog, then) -> None:
        self.dialog = dialog
        dialog.finished.connect(lambda result: then(result == QDialog.DialogCode.Accepted))
        dialog.open()

    def _build(self, passphrase: str | None, recovery_key: str | None) -> None:
        self.window.jobs.run(build_unlocked, self.holder, self.paths, passphrase, recovery_key,
                             on_done=self._ready, on_error=self._failed)

    def _failed(self, message: str, exc: BaseException) -> None:
        from assistant.vault.keys import BadRecoveryKeyError, WrongPassphraseError
        from assistant.vault.vault import KeyMissingError
        from assistant.vault.cipher import WrongKeyError

        if isinstance(exc, (WrongPassphraseError,)):
            return self.start(message, use_environment=False)  # a wrong one from the environment: ask
        if isinstance(exc, (KeyMissingError, BadRecoveryKeyError, WrongKeyError)):
            return self._ask_recovery(message)
        self._report(message, exc)

    def _report(self, message: str, exc: BaseException) -> None:
        self.error = exc
        self.on_failed(message)

    def _stay_locked(self) -> None:
        self.error = None
        self.on_failed(self.stay_locked_message)

    def _ready(self, services) -> None:
        self.on_ready(services)
        recovery = services.forget_recovery_key()
        if recovery:
            from assistant.app import vault_for

            self.dialog = RecoveryKeyDialog(recovery, parent=self.window)
            # Seen only once the user says so; closed otherwise, it is offered at the next start.
            self.dialog.accepted.connect(lambda: vault_for(self.paths).mark_recovery_key_shown())
            self.dialog.open()
