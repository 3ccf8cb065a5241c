"""Composition root: builds the app's services once and hands them to the CLI or the window.

No module-level singletons: whoever starts the app calls :func:`build_services` and passes
the result down. Built on the main thread; the services themselves are thread-safe.
"""

from __future__ import annotations

import os
import sys
import threading
from dataclasses import dataclass, field

from assistant.backups import Backups
from assistant.config import AppPaths, default_paths
from assistant.errors import BackupError, StoreError
from assistant.history.conversations import Conversations
from assistant.history.archive import History
from assistant.models.library import ModelLibrary
from assistant.settings import AppSettings, save_appearance
from assistant.store import Store
from assistant.vault.migrate import encrypt_plaintext_data
from assistant.vault.vault import PASSPHRASE_ENV, LockedError, Unlocked, Vault, locked_message
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
    _closed: bool = field(default=False, repr=False)

    @property
    def engine(self) -> EngineClient:
        """The engine worker starts on first use, so commands that need no model stay fast.
        Any thread; the lock keeps two first callers from starting two workers. After
        :meth:`close` (the window was locked or is closing) a late caller gets an error, not a
        new worker that nobody would ever close."""
        with self._engine_lock:
            if self._closed:
                raise StoreError("Your library was closed (the window was locked or is closing); nothing was done.")
            if self._engine is None:
                # Fast-prompt copies of the weights (engine.fast_prefill) live with the models.
                self.settings.engine.prefill_copies_dir = str(self.paths.models_dir / "fast-prefill")
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

    def reload_after_restore(self) -> None:
        """After :meth:`Backups.restore` put another database under the open store: read the
        settings again, rebuild the documents' vector matrix on next use, and mark a reply that
        was being written when the backup was taken as interrupted. Pool thread."""
        loaded = AppSettings.load(self.store)
        # In place, as apply_settings does: the engine client holds this EngineSettings object.
        for name, value in vars(loaded.engine).items():
            setattr(self.settings.engine, name, value)
        for name, value in vars(loaded).items():
            if name != "engine":
                setattr(self.settings, name, value)
        with self._documents_lock:
            self._documents = None
        self.conversations.recover_interrupted()

    def save_settings(self) -> None:
        self.store.set_setting("app", "AppSettings", self.settings.to_dict())
        save_appearance(self.paths.data_dir, self.settings)

    def close(self) -> None:
        """Close the engine worker and the store; closing again does nothing. Pool thread (the
        window's lock) or the main thread at exit."""
        with self._engine_lock:
            self._closed = True
            engine, self._engine = self._engine, None
        self.unlocked = None  # the key: closed services keep no reference to it
        if engine is not None:
            engine.close()
        self.store.close()


def vault_for(paths: AppPaths) -> Vault:
    return Vault(paths.data_dir, paths.database)


def locked_by_another_process(paths: AppPaths) -> bool:
    """True while a window other than this process holds the data locked (Vault.is_locked)."""
    return vault_for(paths).is_locked(by_another_process=True)


def release_lock_marker(paths: AppPaths) -> None:
    """Remove the lock marker if this process wrote it (Vault.release_own_lock). Any thread but
    the GUI's, except at exit."""
    vault_for(paths).release_own_lock()


def unlock_and_encrypt(paths: AppPaths, passphrase: str | None = None, unlocked: Unlocked | None = None) -> Unlocked:
    """The database key (keyring, or ``passphrase``; a fresh one on a new install), with any
    plaintext left by a version before encryption encrypted first. Refuses while another
    process's window holds the data locked. Worker thread (Argon2, the keyring, the migration).
    On a first start the data folder does not exist yet: it is made here, before the vault writes."""
    paths = paths.ensure()
    vault = vault_for(paths)
    if locked_by_another_process(paths):
        raise LockedError(locked_message())
    if unlocked is None and passphrase is None and vault.needs_passphrase():
        # Scripts and benchmarks on a machine without a keyring (weaker: SECURITY.md says why).
        passphrase = os.environ.get(PASSPHRASE_ENV) or None
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
