"""The lock on the user's data: first set-up, unlock, recovery, passphrase change, key rotation,
and the "locked" state the CLI and the API honour.

A :class:`Vault` knows one data folder. It never holds the database open: it hands the key to
whoever opens the :class:`~assistant.store.Store` (the composition root), and proves a key by
opening the file once (:func:`assistant.vault.cipher.connect` with its check).

Rotation is crash-safe in three steps: the new key is first kept as "pending" beside the current
one (keyring slot or ``vault.json``), then the database is re-keyed in one transaction
(``PRAGMA rekey``), then the pending key becomes current. Whatever step a crash interrupts,
one of the two kept keys opens the file, and :meth:`Vault.unlock` finishes the promotion.

Any thread but the GUI's (Argon2 takes a fraction of a second, keyring calls may block).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from assistant.errors import StoreError
from assistant.vault import keys
from assistant.vault.cipher import WrongKeyError, connect, dbapi, is_plaintext_database, key_pragma_value, new_key

#: How the key is kept (no secret in it): see :class:`assistant.vault.keys.KeyFile`.
VAULT_FILE = "vault.json"
#: Present while the window is locked: its pid, so a marker left by a crashed window is ignored.
LOCK_MARKER = "locked"
#: Lets scripts and tests without a terminal give the passphrase (weaker than typing it:
#: other processes of the same user can read a process's environment; SECURITY.md says so).
PASSPHRASE_ENV = "ASSISTANT_PASSPHRASE"


class LockedError(StoreError):
    """The data is locked: the window was locked, or a passphrase is needed and none was given."""


class PassphraseNeededError(LockedError):
    """The key is wrapped by a passphrase (or must be, for want of a keyring) and none was given."""


class KeyMissingError(LockedError):
    """The keyring entry or ``vault.json`` is gone: only the recovery key can open the data now."""


@dataclass(frozen=True)
class Unlocked:
    """The database key; ``recovery_key`` is set only while no person has seen it yet (first
    set-up, a rotation), to be shown once and never stored: whoever shows it calls
    :meth:`Vault.mark_recovery_key_shown`."""

    key: bytes
    recovery_key: str | None = None


class Vault:
    def __init__(self, data_dir: str | os.PathLike, database: str | os.PathLike):
        self.data_dir = Path(data_dir)
        self.database = Path(database)
        self.key_file_path = self.data_dir / VAULT_FILE

    # ----- what state the data is in ------------------------------------------------------------
    def protection(self) -> str:
        """"keyring", "passphrase", or "" before the first set-up."""
        return keys.KeyFile.load(self.key_file_path).protection

    def needs_passphrase(self) -> bool:
        """True when :meth:`unlock` (or the first set-up) needs a passphrase from the user."""
        protection = self.protection()
        if protection == "passphrase":
            return True
        if protection == "keyring":
            return False
        return not keys.keyring_available()

    def needs_recovery(self) -> bool:
        """True when the data is encrypted but its key is no longer kept anywhere (the keyring
        entry or ``vault.json`` was deleted): only the recovery key opens it."""
        kept = keys.KeyFile.load(self.key_file_path)
        if kept.protection == "passphrase":
            return False
        if kept.protection == "keyring":
            return (keys.keyring_read(self._account("current")) is None
                    and keys.keyring_read(self._account("pending")) is None)
        return self._encrypted_database_exists()

    def _encrypted_database_exists(self) -> bool:
        return self.database.is_file() and self.database.stat().st_size > 0 and not is_plaintext_database(self.database)

    def _account(self, slot: str) -> str:
        return keys.keyring_account(self.data_dir, slot)

    # ----- unlock ---------------------------------------------------------------------------------
    def unlock(self, passphrase: str | None = None) -> Unlocked:
        """The database key: from the keyring, or unwrapped with ``passphrase``; on a new install
        (or one from before encryption) a fresh key is made and kept, with its recovery key."""
        kept = keys.KeyFile.load(self.key_file_path)
        if not kept.protection:
            if self._encrypted_database_exists():
                raise KeyMissingError(
                    f"The key file {self.key_file_path} is missing, so the data cannot be opened with the "
                    "keyring or a passphrase. Open it with your recovery key (assistant vault recover).")
            return self._set_up(kept, passphrase)
        if kept.protection == "keyring":
            candidates = [keys.keyring_read(self._account("current")), keys.keyring_read(self._account("pending"))]
            if not any(candidates):
                raise KeyMissingError(
                    "The key of your data is no longer in the system keyring (it was deleted, or this is "
                    "another user account or machine). Open the data with your recovery key "
                    "(assistant vault recover).")
        else:
            if passphrase is None:
                raise PassphraseNeededError("Your data is locked with a passphrase; enter it to unlock.")
            candidates = [keys.unwrap_key(kept.wrapped or {}, passphrase)]
            if kept.pending_wrapped:
                candidates.append(keys.unwrap_key(kept.pending_wrapped, passphrase))
        key = self._working_key([k for k in candidates if k])
        if len(candidates) > 1 and candidates[1] is not None:
            self._promote(kept, key, passphrase)
        return Unlocked(key=key, recovery_key=None if kept.recovery_shown else keys.format_recovery_key(key))

    def _set_up(self, kept: keys.KeyFile, passphrase: str | None) -> Unlocked:
        key = new_key()
        kept.recovery_shown = False
        self._protect(kept, key, passphrase)
        return Unlocked(key=key, recovery_key=keys.format_recovery_key(key))

    def _protect(self, kept: keys.KeyFile, key: bytes, passphrase: str | None) -> None:
        """Keep ``key`` as the current key: wrapped by ``passphrase`` when one is given, else in the keyring."""
        if passphrase:
            kept.protection, kept.wrapped, kept.pending_wrapped = "passphrase", keys.wrap_key(key, passphrase), None
            kept.save()
            keys.keyring_delete(self._account("current"))
            keys.keyring_delete(self._account("pending"))
            return
        if not keys.keyring_available():
            raise PassphraseNeededError(
                "There is no system keyring on this computer to keep the key of your data in, so choose a "
                "passphrase to lock it with.")
        keys.keyring_write(self._account("current"), key)
        keys.keyring_delete(self._account("pending"))
        kept.protection, kept.wrapped, kept.pending_wrapped = "keyring", None, None
        kept.save()

    def _working_key(self, candidates: list[bytes]) -> bytes:
        """The first candidate that opens the database; the first of all when none does (no file
        yet, or a damaged one: the store then says so, with the advice to restore a backup)."""
        if len(candidates) > 1 and self._encrypted_database_exists():
            for key in candidates:
                try:
                    connect(self.database, key).close()
                    return key
                except (WrongKeyError, OSError):
                    continue
        return candidates[0]

    def _promote(self, kept: keys.KeyFile, key: bytes, passphrase: str | None) -> None:
        """Finish a rotation a crash interrupted: keep the key that opens the file as the only one."""
        self._protect(kept, key, passphrase if kept.protection == "passphrase" else None)

    def mark_recovery_key_shown(self) -> None:
        """A person has seen the recovery key (the window's dialog was acknowledged, or it was
        printed to a terminal): it is not offered again."""
        kept = keys.KeyFile.load(self.key_file_path)
        if kept.protection and not kept.recovery_shown:
            kept.recovery_shown = True
            kept.save()

    def recover(self, recovery_key: str, passphrase: str | None = None) -> Unlocked:
        """Open the data with the recovery key and keep the key again (keyring, or ``passphrase``).

        The key is proven on the database first; a wrong one changes nothing."""
        key = keys.parse_recovery_key(recovery_key)
        if self._encrypted_database_exists():
            try:
                connect(self.database, key).close()
            except WrongKeyError:
                raise WrongKeyError("That recovery key does not open this data. Nothing was changed.") from None
        self._protect(keys.KeyFile.load(self.key_file_path), key, passphrase)
        return Unlocked(key=key)

    # ----- changes ----------------------------------------------------------------------------------
    def change_passphrase(self, old: str | None, new: str | None) -> None:
        """Re-wrap the key under ``new`` (``old`` proves the user knows the current one). From
        keyring mode ``old`` is None; ``new=None`` moves the key into the keyring instead.
        The database is not touched: only the wrapping changes, atomically (one file replace)."""
        kept = keys.KeyFile.load(self.key_file_path)
        if kept.protection == "passphrase":
            if old is None:
                raise PassphraseNeededError("Enter the current passphrase to change it.")
            key = keys.unwrap_key(kept.wrapped or {}, old)
        else:
            key = self.unlock().key
        if new is not None and len(new) < 8:
            raise keys.WrongPassphraseError("Choose a passphrase of at least 8 characters.")
        self._protect(kept, key, new)

    def rotate_key(self, store, passphrase: str | None = None) -> Unlocked:
        """A new random key for the open ``store`` (re-keyed in place, one transaction); the old
        key, and the old recovery key, no longer open anything. Returns the new recovery key."""
        kept = keys.KeyFile.load(self.key_file_path)
        self.unlock(passphrase)  # proves the passphrase, finishes an interrupted rotation
        fresh = new_key()
        # 1. keep the new key beside the current one, so a crash at any later point leaves one
        #    kept key that opens the file
        if kept.protection == "passphrase":
            if not passphrase:
                raise PassphraseNeededError("Enter your passphrase to rotate the key.")
            kept.pending_wrapped = keys.wrap_key(fresh, passphrase)
            kept.save()
        else:
            keys.keyring_write(self._account("pending"), fresh)
        # 2. re-key the database in one transaction
        store.rekey(fresh)
        # 3. the new key becomes the only one (its recovery key is printed or shown by the caller)
        kept.recovery_shown = True
        self._protect(kept, fresh, passphrase if kept.protection == "passphrase" else None)
        return Unlocked(key=fresh, recovery_key=keys.format_recovery_key(fresh))

    @staticmethod
    def rekey_backups(backups: Iterable[Path], old_key: bytes, new_key: bytes) -> list[Path]:
        """After a rotation: re-encrypt each backup made under ``old_key`` with ``new_key`` (each in
        one transaction), so every backup still restores and the old key opens nothing any more.
        Returns the backups that could not be re-keyed (damaged, or under yet another key)."""
        failed = []
        for path in backups:
            try:
                conn = connect(path, old_key)
            except (WrongKeyError, dbapi.DatabaseError, OSError):
                failed.append(Path(path))
                continue
            try:
                conn.execute(f"PRAGMA rekey = {key_pragma_value(new_key)}")
            except dbapi.DatabaseError:
                failed.append(Path(path))
            finally:
                conn.close()
        return failed

    # ----- the window's lock, as other processes see it ---------------------------------------------
    def mark_locked(self) -> None:
        """The window was locked: the CLI and the API refuse until it is unlocked."""
        from engine.atomic import atomic_write_text

        atomic_write_text(self.data_dir / LOCK_MARKER, f"{os.getpid()}\n")

    def clear_locked(self) -> None:
        try:
            (self.data_dir / LOCK_MARKER).unlink()
        except FileNotFoundError:
            pass

    def locked_by(self) -> int | None:
        """The process named by the lock marker, or None (no marker, or an unreadable one)."""
        try:
            return int((self.data_dir / LOCK_MARKER).read_text(encoding="utf-8").strip() or 0) or None
        except (OSError, ValueError):
            return None

    def release_own_lock(self) -> None:
        """Remove the marker if this process wrote it (the window unlocked, or closes while
        locked); another live window's marker is left alone."""
        if self.locked_by() == os.getpid():
            self.clear_locked()

    def is_locked(self, by_another_process: bool = False) -> bool:
        """True while a running window holds the data locked (a marker of a dead process is stale).
        ``by_another_process``: the window that locked it unlocks with the same calls the CLI
        makes, so its own marker must not stop it."""
        pid = self.locked_by()
        if pid is None or pid < 0 or (by_another_process and pid == os.getpid()):
            return False
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True  # alive, another user's process
        return True


def locked_message() -> str:
    return ("The assistant is locked. Unlock it in the window (or run the command again after unlocking); "
            "nothing was read or changed.")
