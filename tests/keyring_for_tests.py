"""A keyring backend for the test suite: the OS keyrings (Secret Service, Keychain, Credential
Manager) need a desktop session that CI machines do not have.

It keeps entries in one JSON file named by ``ASSISTANT_TEST_KEYRING_FILE`` (set per test process
by tests/conftest.py and inherited by the app processes the tests start), under an exclusive
``flock`` so that a test and the CLI it runs can both write. It exists only for tests: it keeps
secrets in plaintext, which is exactly what the app must never do with a real user's key.
Selected with ``PYTHON_KEYRING_BACKEND=tests.keyring_for_tests.FileKeyring``.
"""

from __future__ import annotations

import fcntl
import json
import os
from contextlib import contextmanager
from pathlib import Path

from keyring.backend import KeyringBackend
from keyring.errors import PasswordDeleteError


#: A fixed key for tests that open a Store directly, with no vault involved.
TEST_DATABASE_KEY = bytes(range(32))


class FileKeyring(KeyringBackend):
    priority = 1  # type: ignore[assignment]

    @staticmethod
    def _path() -> Path:
        return Path(os.environ["ASSISTANT_TEST_KEYRING_FILE"])

    @contextmanager
    def _entries(self):
        path = self._path()
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path.with_suffix(".lock"), "a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                entries = json.loads(path.read_text()) if path.exists() and path.stat().st_size else {}
                before = dict(entries)
                yield entries
                if entries != before:
                    tmp = path.with_suffix(".tmp")
                    tmp.write_text(json.dumps(entries))
                    os.replace(tmp, path)
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def get_password(self, service, username):
        with self._entries() as entries:
            return entries.get(f"{service}\n{username}")

    def set_password(self, service, username, password):
        with self._entries() as entries:
            entries[f"{service}\n{username}"] = password

    def delete_password(self, service, username):
        with self._entries() as entries:
            if entries.pop(f"{service}\n{username}", None) is None:
                raise PasswordDeleteError("no such entry")


def open_test_db(path, key: bytes = TEST_DATABASE_KEY):
    """A connection to the encrypted database ``path`` (created if missing) with the test key,
    for a test that reads or crafts a database file itself."""
    from assistant.vault.cipher import connect

    return connect(path, key, check=False)


def data_key(data_dir: Path) -> bytes:
    """The database key the app keeps for ``data_dir`` (for a test that opens the store itself)."""
    from assistant.vault.vault import Vault

    return Vault(data_dir, Path(data_dir) / "assistant.sqlite3").unlock().key


def copy_data_key(source_dir: Path, target_dir: Path) -> None:
    """Give the data folder ``target_dir`` the key (and vault.json) of ``source_dir``: what a test
    needs after copying a database file between folders."""
    import shutil

    import keyring
    from assistant.vault.keys import KEYRING_SERVICE, keyring_account
    from assistant.vault.vault import VAULT_FILE

    shutil.copy2(Path(source_dir) / VAULT_FILE, Path(target_dir) / VAULT_FILE)
    key = keyring.get_password(KEYRING_SERVICE, keyring_account(Path(source_dir)))
    keyring.set_password(KEYRING_SERVICE, keyring_account(Path(target_dir)), key)
