"""Composition root: builds the app's services once and hands them to the CLI or the window.

No module-level singletons: whoever starts the app calls :func:`build_services` and passes
the result down. Built on the main thread; the services themselves are thread-safe.
"""

from __future__ import annotations

import sys
import threading
from dataclasses import dataclass, field

from assistant.backups import Backups
from assistant.config import AppPaths, default_paths
from assistant.errors import BackupError
from assistant.history.conversations import Conversations
from assistant.history.archive import History
from assistant.models.library import ModelLibrary
from assistant.settings import AppSettings, save_appearance
from assistant.store import Store
from assistant.vault.migrate import encrypt_plaintext_data
from assistant.vault.vault import LockedError, Unlocked, Vault, locked_message
from engine.client import EngineClient


@dataclass
class Services:
    paths: AppPaths
    store: Store
    library: ModelLibrary
    settings: AppSettings
    conversations: Conversations
    history: History
    backups: Backups
    #: The key the store was opened with; its ``recovery_key`` is set only on the first start
    #: (shown once by the window or the CLI, then dropped with :meth:`forget_recovery_key`).
    unlocked: Unlocked | None = field(default=None, repr=False)
    _engine: EngineClient | None = field(default=None, repr=False)
    _engine_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _documents: tuple | None = field(default=None, repr=False)
    _documents_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def engine(self) -> EngineClient:
        """The engine worker starts on first use, so commands that need no model stay fast.
        Any thread; the lock keeps two first callers from starting two workers."""
        with self._engine_lock:
            if self._engine is None:
                self._engine = EngineClient(self.settings.engine, log_path=self.paths.logs_dir / "engine.log")
                self._engine.start()
            return self._engine

    def restart_engine(self) -> bool:
        """Restart the engine worker with the settings as they are now (threads, context);
        False when none is running (it starts with them on first use). Any thread but the GUI's."""
        with self._engine_lock:
            engine = self._engine
        if engine is None:
            return False
        engine.restart()
        return True

    def documents_core(self):
        """The one (Documents, Retriever) pair of the app, built on first use: the embedding
        model is converted to GGUF once and the retriever keeps its vector matrix in memory,
        so the Documents page, the chat and the CLI share them. Any thread but the GUI's."""
        with self._documents_lock:
            if self._documents is None:
                from assistant.documents.collections import Documents, default_counter, engine_embedder
                from assistant.documents.retrieval import Retriever

                embed = engine_embedder(self)
                self._documents = (Documents(self.store, embed, default_counter(self)), Retriever(self.store, embed))
            return self._documents

    def forget_recovery_key(self) -> str | None:
        """The recovery key made at set-up, handed over once (to be shown) and then forgotten."""
        if self.unlocked is None or self.unlocked.recovery_key is None:
            return None
        shown, self.unlocked = self.unlocked.recovery_key, Unlocked(key=self.unlocked.key)
        return shown

    def save_settings(self) -> None:
        self.store.set_setting("app", "AppSettings", self.settings.to_dict())
        save_appearance(self.paths.data_dir, self.settings)

    def close(self) -> None:
        with self._engine_lock:
            engine, self._engine = self._engine, None
        if engine is not None:
            engine.close()
        self.store.close()


def vault_for(paths: AppPaths) -> Vault:
    return Vault(paths.data_dir, paths.database)


def unlock_and_encrypt(paths: AppPaths, passphrase: str | None = None, unlocked: Unlocked | None = None) -> Unlocked:
    """The database key (keyring, or ``passphrase``; a fresh one on a new install), with any
    plaintext left by a version before encryption encrypted first. Refuses while the window
    holds the data locked. Worker thread (Argon2, the keyring, the migration)."""
    vault = vault_for(paths)
    if vault.is_locked():
        raise LockedError(locked_message())
    unlocked = unlocked or vault.unlock(passphrase)
    encrypt_plaintext_data(paths.database, paths.backups_dir, unlocked.key)
    return unlocked


def build_services(paths: AppPaths | None = None, sync_pack: bool = True, *, passphrase: str | None = None,
                   unlocked: Unlocked | None = None) -> Services:
    """Unlock (see :func:`unlock_and_encrypt`), open the store and build every service.
    ``unlocked`` is passed when the caller already has the key (the window's unlock dialog)."""
    paths = (paths or default_paths()).ensure()
    unlocked = unlock_and_encrypt(paths, passphrase, unlocked)
    store = Store(paths.database, key=unlocked.key,
                  before_migration=lambda opened: Backups(opened, paths.backups_dir).backup())
    library = ModelLibrary(store, paths)
    if sync_pack:
        library.sync_default_pack()
    settings = AppSettings.load(store)
    conversations = Conversations(store)
    # A reply that was streaming when the app died is kept and marked interrupted.
    conversations.recover_interrupted()
    history = History(store)
    backups = Backups(store, paths.backups_dir)
    # At most daily; a failure (disk full) must not keep the app from starting.
    try:
        backups.backup_if_due()
    except BackupError as exc:
        print(f"assistant: the automatic backup was not made: {exc}", file=sys.stderr)
    return Services(paths=paths, store=store, library=library, settings=settings,
                    conversations=conversations, history=history, backups=backups, unlocked=unlocked)
