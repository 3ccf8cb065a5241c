"""Encryption at rest (issue 24), with the real SQLCipher library and real files.

What SECURITY.md promises, each proven here: no marker the user wrote is readable in any file of
the data folder; a deleted message cannot be read back even with the key (pages are decrypted
independently of SQLCipher, with ``cryptography``, and searched); the migration of plaintext data
survives SIGKILL at random points; a wrong passphrase, a missing keyring, a deleted keyring
entry and a copied database each behave as documented; a locked app's CLI refuses.
"""

from __future__ import annotations

import hashlib
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from assistant.app import build_services
from assistant.config import AppPaths
from assistant.history.conversations import Conversations
from assistant.store import CorruptDatabaseError, Store
from assistant.vault import keys
from assistant.vault.cipher import PLAINTEXT_HEADER, connect, dbapi, is_plaintext_database
from assistant.vault.migrate import ENCRYPTING_SUFFIX, PLAINTEXT_OLD_SUFFIX, encrypt_plaintext_data
from assistant.vault.vault import KeyMissingError, PassphraseNeededError, Vault
from tests.keyring_for_tests import TEST_DATABASE_KEY

ROOT = Path(__file__).resolve().parents[2]
PAGE = 4096      # SQLCipher 4's default page size
RESERVE = 48     # per page: a 16-byte IV, then a 32-byte HMAC-SHA256 (assistant/vault/cipher.py)


# ----- reading the file as an attacker with the key would -----------------------------------------
def _decrypt_page(page: bytes, number: int, key: bytes) -> bytes:
    """One SQLCipher 4 page decrypted with AES-256-CBC (raw key, no KDF): page 1 starts with
    the file's 16-byte salt, which is not encrypted."""
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    start = 16 if number == 1 else 0
    iv = page[PAGE - RESERVE: PAGE - RESERVE + 16]
    decryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).decryptor()
    return decryptor.update(page[start: PAGE - RESERVE]) + decryptor.finalize()


def readable_with_key(path: Path, key: bytes) -> bytes:
    """Every page of the database and of its WAL, decrypted: what someone holding the key could
    read from the bytes, including pages SQLite no longer uses (freelist, old WAL frames)."""
    out = []
    raw = path.read_bytes()
    for index in range(len(raw) // PAGE):
        out.append(_decrypt_page(raw[index * PAGE:(index + 1) * PAGE], index + 1, key))
    wal = Path(f"{path}-wal")
    if wal.exists():
        data = wal.read_bytes()
        offset = 32
        while offset + 24 + PAGE <= len(data):
            number = int.from_bytes(data[offset:offset + 4], "big")
            out.append(_decrypt_page(data[offset + 24: offset + 24 + PAGE], number, key))
            offset += 24 + PAGE
    return b"".join(out)


def files_containing(folder: Path, marker: bytes, skip: tuple[str, ...] = ()) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file() and not any(part in skip for part in p.parts)
            and marker in p.read_bytes()]


@pytest.fixture
def paths(data_dir) -> AppPaths:
    return AppPaths(data_dir).ensure()


# ----- the everyday case ------------------------------------------------------------------------
def test_a_new_install_is_encrypted_with_a_key_in_the_keyring_and_a_recovery_key_shown_once(paths):
    services = build_services(paths, sync_pack=False)
    try:
        recovery = services.forget_recovery_key()
        assert recovery and services.forget_recovery_key() is None  # handed over once, then gone
        Conversations(services.store).add_message(Conversations(services.store).create("t").id, "user", "hello")
    finally:
        services.close()
    head = paths.database.read_bytes()[:16]
    assert head != PLAINTEXT_HEADER
    vault = Vault(paths.data_dir, paths.database)
    assert vault.protection() == "keyring" and not vault.needs_passphrase()
    assert b"wrapped_key" not in (paths.data_dir / "vault.json").read_bytes()  # no key material on disk
    assert keys.parse_recovery_key(recovery) == vault.unlock().key


def test_no_marker_is_readable_in_any_file_of_the_data_folder(services, tmp_path):
    """Chat, documents, a search, a backup and an export, each with a marker; then every byte
    of the data folder (database, WAL, shared memory, backups, logs, settings files) is searched.
    Only the explicit plaintext export may hold it."""
    from assistant.chat.session import ChatSession
    from assistant.tasks.sentiment import SentimentAnalyzer

    marker = "zq" + hashlib.sha256(str(tmp_path).encode()).hexdigest()[:16]
    conversations = Conversations(services.store)
    conversation = conversations.create(f"Title {marker}")
    conversations.add_message(conversation.id, "user", f"My secret is {marker}.")
    conversations.add_message(conversation.id, "assistant", f"I will keep {marker} safe.")
    # A real turn through the engine (its log included in the search below).
    list(ChatSession(services).turn(f"Please repeat this word: {marker}"))
    # A sentiment batch.
    analyzer = SentimentAnalyzer.from_services(services)
    list(analyzer.classify_stream([(0, f"I loved the {marker} film."), (1, f"The {marker} was awful.")]))
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "diary.md").write_text(f"# Diary\n\nToday I wrote {marker} in my diary. " * 20, encoding="utf-8")
    documents, retriever = services.documents_core()
    for _ in documents.add_paths([notes], "personal"):
        pass
    assert any(marker in hit.text for hit in retriever.search(f"what did I write {marker}", k=3))
    assert services.history.search(marker)
    services.backups.backup()
    exported = tmp_path / "all.md"  # where the user chose to export
    services.history.export(exported, "md")
    services.save_settings()
    found = files_containing(services.paths.data_dir, marker.encode(), skip=("exports",))
    assert found == [], f"plaintext {marker} found in {found}"
    assert marker.encode() in exported.read_bytes()  # the explicit export is plaintext, as it says


def test_emptied_trash_leaves_no_readable_trace_even_with_the_key(services):
    store, conversations = services.store, Conversations(services.store)
    kept, gone = "keptmarker" + "k" * 8, "gonemarker" + "g" * 8
    conversations.add_message(conversations.create("stays").id, "user", f"this stays {kept}")
    doomed = conversations.create("goes")
    for i in range(30):  # enough text to fill several pages and FTS segments
        conversations.add_message(doomed.id, "user", f"message {i} says {gone} and more words {i}")
    readable = readable_with_key(store.path, store.key)
    assert gone.encode() in readable and kept.encode() in readable  # the reader works
    conversations.delete(doomed.id)
    assert conversations.empty_trash() == 1
    readable = readable_with_key(store.path, store.key)
    assert kept.encode() in readable
    assert gone.encode() not in readable
    assert not Path(f"{store.path}-wal").exists() or Path(f"{store.path}-wal").stat().st_size == 0


def test_a_removed_collection_leaves_no_readable_trace_even_with_the_key(services, tmp_path):
    store = services.store
    gone = "removedpassage" + "r" * 8
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "secret.md").write_text(f"# Notes\n\nThe code word is {gone}. " * 40, encoding="utf-8")
    documents, _retriever = services.documents_core()
    list(documents.add_paths([folder], "to-remove"))
    assert gone.encode() in readable_with_key(store.path, store.key)  # indexed, and the reader finds it
    documents.remove("to-remove")
    assert gone.encode() not in readable_with_key(store.path, store.key)


# ----- migration of plaintext data ------------------------------------------------------------------
def _plaintext_database(path: Path, messages: int, marker: str) -> None:
    """A database as the versions before encryption wrote it: built by the store, then exported
    without a key."""
    crafted = path.with_name("crafted.sqlite3")
    store = Store(crafted, key=TEST_DATABASE_KEY)
    conversations = Conversations(store)
    conversation = conversations.create("old chat")
    with store.transaction() as conn:
        for i in range(messages):
            conn.execute("INSERT INTO messages (id, conversation_id, role, text, created_at, updated_at) "
                         "VALUES (?, ?, 'user', ?, ?, ?)", (f"m{i}", conversation.id, f"{marker} number {i}", i, i))
    store.close()
    conn = connect(crafted, TEST_DATABASE_KEY)
    conn.execute("ATTACH DATABASE ? AS plain KEY ''", (str(path),))
    conn.execute("SELECT sqlcipher_export('plain')")
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    conn.execute(f"PRAGMA plain.user_version = {version}")
    conn.execute("DETACH DATABASE plain")
    conn.close()
    for suffix in ("", "-wal", "-shm"):
        Path(f"{crafted}{suffix}").unlink(missing_ok=True)


def _message_count(path: Path, key: bytes) -> int:
    conn = connect(path, key)
    try:
        return conn.execute("SELECT count(*) FROM messages").fetchone()[0]
    finally:
        conn.close()


def test_plaintext_data_of_an_earlier_version_is_encrypted_on_first_start(paths):
    marker = "oldplaintextmarker"
    _plaintext_database(paths.database, 40, marker)
    (paths.backups_dir / "assistant-20250101-000000-000000.sqlite3").write_bytes(paths.database.read_bytes())
    assert is_plaintext_database(paths.database)
    services = build_services(paths, sync_pack=False)
    try:
        assert len(services.history.search(marker)) > 0
        backup = services.backups.list_backups()[0]
    finally:
        services.close()
    assert files_containing(paths.data_dir, marker.encode()) == []
    assert not is_plaintext_database(paths.database) and not is_plaintext_database(backup)
    assert not list(paths.data_dir.rglob(f"*{PLAINTEXT_OLD_SUFFIX}")) and not list(paths.data_dir.rglob(f"*{ENCRYPTING_SUFFIX}"))
    key = Vault(paths.data_dir, paths.database).unlock().key
    assert _message_count(backup, key) == 40


MIGRATION_CHILD = """
import sys
sys.path.insert(0, sys.argv[1])
from pathlib import Path
from assistant.vault.migrate import encrypt_plaintext_data
print("start", flush=True)
encrypt_plaintext_data(Path(sys.argv[2]), Path(sys.argv[3]), bytes.fromhex(sys.argv[4]))
print("done", flush=True)
"""


def _migration_kill_rounds(tmp_path: Path, rounds: int) -> None:
    messages = 6000
    rng = random.Random(24)
    for round_ in range(rounds):
        folder = tmp_path / f"round{round_}"
        (folder / "backups").mkdir(parents=True)
        database = folder / "assistant.sqlite3"
        _plaintext_database(database, messages, "killmarker")
        child = subprocess.Popen([sys.executable, "-c", MIGRATION_CHILD, str(ROOT), str(database),
                                  str(folder / "backups"), TEST_DATABASE_KEY.hex()],
                                 stdout=subprocess.PIPE, text=True)
        assert child.stdout.readline().strip() == "start"
        time.sleep(rng.uniform(0.0, 0.6))
        child.send_signal(signal.SIGKILL)
        child.wait()
        # Whatever the moment: one database, plaintext and whole, or encrypted and whole ...
        if is_plaintext_database(database):
            plain = dbapi.connect(str(database))
            assert plain.execute("SELECT count(*) FROM messages").fetchone()[0] == messages
            plain.close()
        else:
            assert _message_count(database, TEST_DATABASE_KEY) == messages
        # ... and the next start finishes the job.
        encrypt_plaintext_data(database, folder / "backups", TEST_DATABASE_KEY)
        assert not is_plaintext_database(database)
        assert _message_count(database, TEST_DATABASE_KEY) == messages
        assert sorted(p.name for p in folder.iterdir() if p.is_file()) == ["assistant.sqlite3"]
        assert files_containing(folder, b"killmarker") == []


def test_a_migration_killed_at_random_points_leaves_one_whole_database(tmp_path):
    _migration_kill_rounds(tmp_path, 3)


@pytest.mark.slow
def test_a_migration_killed_at_random_points_leaves_one_whole_database_soak(tmp_path):
    _migration_kill_rounds(tmp_path, 20)


# ----- the key: passphrase, keyring, recovery, rotation -------------------------------------------------
def test_without_a_keyring_a_passphrase_locks_the_data_and_a_wrong_one_changes_nothing(paths, no_keyring):
    vault = Vault(paths.data_dir, paths.database)
    assert vault.needs_passphrase()
    with pytest.raises(PassphraseNeededError, match="no system keyring"):
        build_services(paths, sync_pack=False)
    services = build_services(paths, sync_pack=False, passphrase="correct horse battery")
    Conversations(services.store).create("under a passphrase")
    services.close()
    before = (paths.data_dir / "vault.json").read_bytes()
    assert b"correct horse" not in before and vault.protection() == "passphrase"
    with pytest.raises(keys.WrongPassphraseError, match="not the one"):
        build_services(paths, sync_pack=False, passphrase="wrong horse battery")
    assert (paths.data_dir / "vault.json").read_bytes() == before
    with pytest.raises(PassphraseNeededError):
        build_services(paths, sync_pack=False)
    vault.change_passphrase("correct horse battery", "a new passphrase")
    with pytest.raises(keys.WrongPassphraseError):
        vault.unlock("correct horse battery")
    services = build_services(paths, sync_pack=False, passphrase="a new passphrase")
    assert [c.title for c in Conversations(services.store).list()] == ["under a passphrase"]
    services.close()


def test_a_deleted_keyring_entry_is_recovered_with_the_recovery_key(paths):
    services = build_services(paths, sync_pack=False)
    recovery = services.forget_recovery_key()
    Conversations(services.store).create("precious")
    services.close()
    keys.keyring_delete(keys.keyring_account(paths.data_dir))
    vault = Vault(paths.data_dir, paths.database)
    assert vault.needs_recovery()
    with pytest.raises(KeyMissingError, match="recovery key"):
        build_services(paths, sync_pack=False)
    with pytest.raises(keys.BadRecoveryKeyError):
        vault.recover("not a key")
    wrong = keys.format_recovery_key(bytes(32))
    with pytest.raises(Exception, match="does not open"):
        vault.recover(wrong)
    vault.recover(recovery.lower().replace("-", " "))  # as typed, in any case and spacing
    services = build_services(paths, sync_pack=False)
    assert [c.title for c in Conversations(services.store).list()] == ["precious"]
    services.close()


def test_a_database_copied_to_another_machine_cannot_be_read(paths, tmp_path):
    services = build_services(paths, sync_pack=False)
    Conversations(services.store).add_message(Conversations(services.store).create("t").id, "user", "copiedmarker")
    services.backups.backup()
    services.close()
    elsewhere = AppPaths(tmp_path / "other-machine").ensure()
    for source in [paths.database] + list(paths.backups_dir.iterdir()):
        target = elsewhere.database if source == paths.database else elsewhere.backups_dir / source.name
        target.write_bytes(source.read_bytes())
    assert files_containing(elsewhere.data_dir, b"copiedmarker") == []
    # The other machine has no key for it: the file reads as damaged or foreign, nothing opens.
    with pytest.raises(KeyMissingError):
        build_services(elsewhere, sync_pack=False)
    with pytest.raises(CorruptDatabaseError, match="another key"):
        Store(elsewhere.database, key=bytes(32))


def test_rotating_the_key_re_keys_the_database_and_retires_the_old_recovery_key(paths):
    services = build_services(paths, sync_pack=False)
    old_recovery = services.forget_recovery_key()
    Conversations(services.store).create("rotated")
    vault = Vault(paths.data_dir, paths.database)
    backup = services.backups.backup()
    old_key = services.store.key
    fresh = vault.rotate_key(services.store)
    assert vault.rekey_backups([backup], old_key, fresh.key) == []
    connect(backup, fresh.key).close()
    Conversations(services.store).create("after rotation")  # the open store keeps working
    services.close()
    assert fresh.recovery_key and fresh.recovery_key != old_recovery
    with pytest.raises(Exception, match="does not open"):
        vault.recover(old_recovery)
    services = build_services(paths, sync_pack=False)
    assert {c.title for c in Conversations(services.store).list()} == {"rotated", "after rotation"}
    services.close()


# ----- the lock ---------------------------------------------------------------------------------------
def test_a_locked_app_refuses_the_command_line(paths):
    build_services(paths, sync_pack=False).close()
    vault = Vault(paths.data_dir, paths.database)
    vault.mark_locked()  # as the window does on Ctrl+L (its pid: this live process)
    try:
        result = subprocess.run([sys.executable, "-m", "ui.launcher", "history", "list"], cwd=ROOT,
                                capture_output=True, text=True, timeout=120, env=dict(os.environ))
        assert result.returncode == 2 and "locked" in result.stderr and "Traceback" not in result.stderr
    finally:
        vault.clear_locked()
    result = subprocess.run([sys.executable, "-m", "ui.launcher", "history", "list"], cwd=ROOT,
                            capture_output=True, text=True, timeout=120, env=dict(os.environ))
    assert result.returncode == 0, result.stderr
    (paths.data_dir / "locked").write_text("999999999\n")  # a marker left by a window that died
    assert not vault.is_locked()
