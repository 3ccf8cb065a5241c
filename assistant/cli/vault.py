"""The command line's side of encryption: getting the key in a terminal, and ``assistant vault ...``.

- :func:`cli_unlock`: the key from the keyring, or a passphrase typed at a prompt (never
  echoed) or given in ``ASSISTANT_PASSPHRASE``; on a new install the recovery key is printed
  once to stderr. Refuses while the window holds the data locked.
- ``assistant vault status``: how the data is protected.
- ``assistant vault recover``: open the data with the recovery key and keep the key again
  (in the keyring, or under a new passphrase).
- ``assistant vault passphrase``: set or change the passphrase (or ``--keyring`` to go back
  to the keyring).
- ``assistant vault rotate-key``: a new key, the file re-keyed in place; prints the new
  recovery key.

CLI main thread.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys

from assistant.config import AppPaths
from assistant.vault.cipher import HMAC_ALGORITHM
from assistant.vault.vault import PASSPHRASE_ENV, LockedError, PassphraseNeededError, Unlocked, Vault, locked_message


def _vault(paths: AppPaths) -> Vault:
    return Vault(paths.data_dir, paths.database)


def _ask(prompt: str) -> str | None:
    """A passphrase from a terminal (not echoed), or None where there is no terminal to ask on."""
    if not sys.stdin.isatty():
        return None
    return getpass.getpass(prompt)


def _ask_new_passphrase() -> str:
    first = _ask("New passphrase (at least 8 characters): ")
    if first is None:
        raise PassphraseNeededError(f"Choose a passphrase in a terminal, or set {PASSPHRASE_ENV}.")
    if _ask("The same passphrase again: ") != first:
        raise PassphraseNeededError("The two passphrases differ; nothing was changed.")
    return first


def print_recovery_key(recovery_key: str) -> None:
    print("Your data is encrypted. Your recovery key (shown only this once; keep it somewhere safe, "
          "away from this computer):\n\n    " + recovery_key + "\n\n"
          "It opens your data if the system keyring entry is lost or you forget your passphrase "
          "(assistant vault recover).", file=sys.stderr)


def cli_unlock(paths: AppPaths) -> Unlocked:
    """The key for a command, with the user asked for a passphrase only where one is needed."""
    from assistant.app import unlock_and_encrypt

    vault = _vault(paths)
    if vault.is_locked():
        raise LockedError(locked_message())
    passphrase = None
    if vault.needs_passphrase():
        passphrase = os.environ.get(PASSPHRASE_ENV) or None
        if passphrase is None:
            if vault.protection() == "passphrase":
                passphrase = _ask("Passphrase: ")
            elif _ask("There is no system keyring here to keep the key of your data in. "
                      "Choose a passphrase to lock it with? [press Enter] ") is not None:
                passphrase = _ask_new_passphrase()
        if passphrase is None:
            if vault.protection() == "passphrase":
                raise PassphraseNeededError(f"Your data is locked with a passphrase: run the command in a "
                                            f"terminal to type it, or set {PASSPHRASE_ENV}.")
            raise PassphraseNeededError(f"There is no system keyring here to keep the key of your data in: run "
                                        f"the command in a terminal to choose a passphrase, or set {PASSPHRASE_ENV}.")
    unlocked = unlock_and_encrypt(paths, passphrase)
    if unlocked.recovery_key and sys.stderr.isatty():
        # Only where a person reads it; from a script it waits for the window or a terminal.
        print_recovery_key(unlocked.recovery_key)
        vault.mark_recovery_key_shown()
    return Unlocked(key=unlocked.key)


def add_vault_commands(subparsers) -> None:
    vault = subparsers.add_parser("vault", help="how your data is encrypted: status, recovery, passphrase, key rotation")
    commands = vault.add_subparsers(dest="vault_command", metavar="COMMAND")
    commands.required = True
    commands.add_parser("status", help="how the data is protected").set_defaults(vault_handler=cmd_status)
    recover = commands.add_parser("recover", help="open the data with its recovery key and keep the key again")
    recover.add_argument("--passphrase", action="store_true", help="keep it under a new passphrase, not the keyring")
    recover.set_defaults(vault_handler=cmd_recover)
    change = commands.add_parser("passphrase", help="set or change the passphrase")
    change.add_argument("--keyring", action="store_true", help="drop the passphrase and keep the key in the keyring")
    change.set_defaults(vault_handler=cmd_passphrase)
    commands.add_parser("rotate-key", help="re-encrypt with a new key; prints the new recovery key").set_defaults(
        vault_handler=cmd_rotate)


def run_vault_command(args: argparse.Namespace, paths: AppPaths) -> int:
    return int(args.vault_handler(args, paths) or 0)


def cmd_status(args: argparse.Namespace, paths: AppPaths) -> int:
    vault = _vault(paths)
    protection = vault.protection() or "not set up yet (the first start sets it up)"
    print(f"Data folder: {paths.data_dir}")
    print(f"Encryption: SQLCipher 4 (AES-256, {HMAC_ALGORITHM.replace('_', '-')} per page); key kept by: {protection}")
    print(f"Locked by the window: {'yes' if vault.is_locked() else 'no'}")
    return 0


def cmd_recover(args: argparse.Namespace, paths: AppPaths) -> int:
    text = _ask("Recovery key: ") if sys.stdin.isatty() else sys.stdin.readline()
    passphrase = _ask_new_passphrase() if args.passphrase else None
    _vault(paths).recover(text or "", passphrase)
    print("Your data is open again; its key is kept " + ("under your new passphrase." if passphrase else
                                                         "in the system keyring."))
    return 0


def cmd_passphrase(args: argparse.Namespace, paths: AppPaths) -> int:
    vault = _vault(paths)
    old = None
    if vault.protection() == "passphrase":
        old = os.environ.get(PASSPHRASE_ENV) or _ask("Current passphrase: ")
        if old is None:
            raise PassphraseNeededError("Type the current passphrase in a terminal to change it.")
    new = None if args.keyring else _ask_new_passphrase()
    vault.change_passphrase(old, new)
    print("The key is now kept " + ("in the system keyring." if new is None else "under the new passphrase."))
    return 0


def cmd_rotate(args: argparse.Namespace, paths: AppPaths) -> int:
    from assistant.store import Store

    unlocked = cli_unlock(paths)
    passphrase = os.environ.get(PASSPHRASE_ENV) or None
    vault = _vault(paths)
    if vault.protection() == "passphrase" and passphrase is None:
        passphrase = _ask("Passphrase: ")
    store = Store(paths.database, key=unlocked.key)
    try:
        fresh = vault.rotate_key(store, passphrase)
    finally:
        store.close()
    from assistant.backups import list_backups

    backups = list_backups(paths.backups_dir)
    failed = vault.rekey_backups(backups, unlocked.key, fresh.key)
    print_recovery_key(fresh.recovery_key or "")
    print(f"{len(backups) - len(failed)} of {len(backups)} backups re-encrypted with the new key"
          + (f"; these could not be and will not restore: {', '.join(str(p) for p in failed)}" if failed else "."),
          file=sys.stderr)
    return 0
