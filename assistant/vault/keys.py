"""Where the database key is kept: the OS keyring, or wrapped by the user's passphrase.

- **Keyring** (the default wherever one works): the random 256-bit key itself is stored with
  ``keyring`` (Secret Service on Linux, Keychain on macOS, Credential Manager on Windows),
  as Signal Desktop keeps its SQLCipher key. Nothing password-equivalent is on the disk.
- **Passphrase** (no keyring, or the user's choice): the key is encrypted with AES-256-GCM
  under a key stretched from the passphrase with Argon2id (RFC 9106's low-memory profile:
  64 MiB, 3 passes), and only that wrapped key, its salt and nonce are written to
  ``vault.json``. A wrong passphrase fails GCM's tag check: one clear error, nothing changed.
- **Recovery key**: the database key itself, shown once as 13 groups of base32 letters. It
  opens the data when the keyring entry is gone or the passphrase is forgotten.

Libraries: ``keyring`` (the maintained cross-platform keyring API), ``argon2-cffi`` (the
reference Argon2 implementation), ``cryptography``'s AESGCM (OpenSSL). No home-made crypto.

Any thread; the keyring call may block briefly (D-Bus), so the window calls it off the GUI thread.
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
from dataclasses import dataclass
from pathlib import Path

from assistant.errors import StoreError
from assistant.vault.cipher import KEY_BYTES

#: The keyring "service" every entry of this app is filed under.
KEYRING_SERVICE = "local-assistant"
#: Bound into every wrapped key, so a wrapped key of another purpose or format cannot be swapped in.
_WRAP_CONTEXT = b"local-assistant database key v1"


class KeyringUnavailableError(StoreError):
    """No working OS keyring (no Secret Service running, a locked or refused keyring)."""


class WrongPassphraseError(StoreError):
    """The passphrase does not unwrap the key; nothing was changed."""


class BadRecoveryKeyError(StoreError):
    """The text typed as a recovery key is not one (wrong length or letters)."""


# ----- the OS keyring ---------------------------------------------------------------------------
def _keyring():
    import keyring

    return keyring


def keyring_available() -> bool:
    """True when an OS keyring backend is usable (not keyring's "fail" or plaintext backends)."""
    try:
        backend = _keyring().get_keyring()
    except Exception:
        return False
    name = type(backend).__module__ + "." + type(backend).__name__
    # keyring.backends.fail.Keyring has priority 0 and raises on every call; chainer with no
    # usable member behaves the same. Those mean "no keyring here".
    return getattr(backend, "priority", 0) > 0 and not name.startswith("keyring.backends.fail")


def keyring_account(data_dir: Path, slot: str = "current") -> str:
    """One keyring entry per data folder (several installs, portable copies, tests coexist)."""
    return f"database-key:{slot}:{Path(data_dir).resolve()}"


def keyring_read(account: str) -> bytes | None:
    """The key under ``account``, or None when there is no such entry."""
    try:
        text = _keyring().get_password(KEYRING_SERVICE, account)
    except Exception as exc:
        raise KeyringUnavailableError(f"The system keyring could not be read ({exc}).") from None
    if not text:
        return None
    try:
        key = bytes.fromhex(text)
    except ValueError:
        return None
    return key if len(key) == KEY_BYTES else None


def keyring_write(account: str, key: bytes) -> None:
    try:
        _keyring().set_password(KEYRING_SERVICE, account, key.hex())
    except Exception as exc:
        raise KeyringUnavailableError(f"The system keyring could not store the key ({exc}).") from None


def keyring_delete(account: str) -> None:
    try:
        _keyring().delete_password(KEYRING_SERVICE, account)
    except Exception:
        pass  # already gone (PasswordDeleteError) or no keyring: nothing left to remove


# ----- the passphrase ---------------------------------------------------------------------------
def _stretch(passphrase: str, salt: bytes, params: dict) -> bytes:
    from argon2.low_level import Type, hash_secret_raw

    return hash_secret_raw(passphrase.encode("utf-8"), salt, time_cost=int(params["time_cost"]),
                           memory_cost=int(params["memory_kib"]), parallelism=int(params["parallelism"]),
                           hash_len=KEY_BYTES, type=Type.ID)


def wrap_key(key: bytes, passphrase: str) -> dict:
    """The database key encrypted under ``passphrase``: a JSON-ready dict (no secret in it)."""
    from argon2.profiles import RFC_9106_LOW_MEMORY
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    if not passphrase:
        raise WrongPassphraseError("The passphrase cannot be empty.")
    params = {"kdf": "argon2id", "time_cost": RFC_9106_LOW_MEMORY.time_cost,
              "memory_kib": RFC_9106_LOW_MEMORY.memory_cost, "parallelism": RFC_9106_LOW_MEMORY.parallelism}
    salt, nonce = secrets.token_bytes(16), secrets.token_bytes(12)
    sealed = AESGCM(_stretch(passphrase, salt, params)).encrypt(nonce, key, _WRAP_CONTEXT)
    return {**params, "salt": base64.b64encode(salt).decode(), "nonce": base64.b64encode(nonce).decode(),
            "wrapped_key": base64.b64encode(sealed).decode()}


def unwrap_key(wrapped: dict, passphrase: str) -> bytes:
    """The database key from :func:`wrap_key`'s dict; :class:`WrongPassphraseError` if it does not open."""
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    try:
        salt = base64.b64decode(wrapped["salt"])
        nonce = base64.b64decode(wrapped["nonce"])
        sealed = base64.b64decode(wrapped["wrapped_key"])
        key = AESGCM(_stretch(passphrase, salt, wrapped)).decrypt(nonce, sealed, _WRAP_CONTEXT)
    except InvalidTag:
        raise WrongPassphraseError("That passphrase is not the one that locks this data. Nothing was changed; "
                                   "try again, or use your recovery key.") from None
    except (KeyError, ValueError, binascii.Error) as exc:
        raise StoreError(f"The key file is damaged ({exc}); open the data with your recovery key.") from None
    return key


# ----- the recovery key -------------------------------------------------------------------------
def format_recovery_key(key: bytes) -> str:
    """The key as the user writes it down: base32 (no 0/1/8 look-alikes), groups of four."""
    text = base64.b32encode(key).decode().rstrip("=")
    return "-".join(text[i:i + 4] for i in range(0, len(text), 4))


def parse_recovery_key(text: str) -> bytes:
    """The key from what the user typed or saved: case, spaces, dashes and line breaks ignored."""
    letters = "".join(ch for ch in text.upper() if ch.isalnum())
    letters = letters.replace("0", "O").replace("1", "I").replace("8", "B")  # common misreadings
    padded = letters + "=" * (-len(letters) % 8)
    try:
        key = base64.b32decode(padded)
    except (binascii.Error, ValueError):
        key = b""
    if len(key) != KEY_BYTES:
        raise BadRecoveryKeyError("That is not a recovery key: it has 13 groups of four letters and digits "
                                  "(2–7), as shown when the data was first locked.")
    return key


# ----- vault.json -------------------------------------------------------------------------------
@dataclass
class KeyFile:
    """``vault.json`` in the data folder: how the key is kept. Holds no secret: in keyring mode
    only the mode; in passphrase mode the wrapped key (useless without the passphrase)."""

    path: Path
    protection: str = ""            # "keyring" | "passphrase"; "" before set-up
    wrapped: dict | None = None     # passphrase mode: the current key, wrapped
    pending_wrapped: dict | None = None  # passphrase mode: a key being rotated in
    #: False until a person has seen the recovery key (a first start from a script shows it to
    #: nobody, so the next start in the window or a terminal shows it then).
    recovery_shown: bool = False

    @classmethod
    def load(cls, path: Path) -> "KeyFile":
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError:
            return cls(path=Path(path))
        except (OSError, ValueError) as exc:
            raise StoreError(f"The key file {path} cannot be read ({exc}); open the data with your recovery key.") from None
        return cls(path=Path(path), protection=str(data.get("protection", "")), wrapped=data.get("wrapped"),
                   pending_wrapped=data.get("pending_wrapped"), recovery_shown=bool(data.get("recovery_shown", True)))

    def save(self) -> None:
        from engine.atomic import atomic_write_text

        data = {"format": 1, "protection": self.protection, "wrapped": self.wrapped,
                "pending_wrapped": self.pending_wrapped, "recovery_shown": self.recovery_shown}
        atomic_write_text(self.path, json.dumps(data, indent=1) + "\n", permissions=0o600)
