"""Encryption at rest: the cipher (SQLCipher via sqlcipher3), where the key is kept (OS keyring or
a passphrase, plus a recovery key), the lock, and the migration of plaintext data.

The modules: :mod:`~assistant.vault.cipher` (connections, export, shredding),
:mod:`~assistant.vault.keys` (keyring, Argon2id + AES-GCM wrapping, recovery key format),
:mod:`~assistant.vault.vault` (set-up, unlock, recovery, passphrase change, key rotation, lock
marker) and :mod:`~assistant.vault.migrate` (plaintext files encrypted crash-safely).
SECURITY.md gives the threat model and names the test behind each promise.
"""
