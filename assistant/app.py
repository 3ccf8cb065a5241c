"""Composition root: builds the app's services once and hands them to the CLI or the window.

No module-level singletons: whoever starts the app calls :func:`build_services` and passes
the result down. Built on the main thread; the services themselves are thread-safe.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from assistant.backups import Backups
from assistant.config import AppPaths, default_paths
from assistant.history.conversations import Conversations
from assistant.history.archive import History
from assistant.models.library import ModelLibrary
from assistant.settings import AppSettings
from assistant.store import Store
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

    def save_settings(self) -> None:
        self.store.set_setting("app", "AppSettings", self.settings.to_dict())

    def close(self) -> None:
        with self._engine_lock:
            engine, self._engine = self._engine, None
        if engine is not None:
            engine.close()
        self.store.close()


def build_services(paths: AppPaths | None = None, sync_pack: bool = True) -> Services:
    paths = (paths or default_paths()).ensure()
    store = Store(paths.database)
    library = ModelLibrary(store, paths)
    if sync_pack:
        library.sync_default_pack()
    settings = AppSettings.load(store)
    conversations = Conversations(store)
    # A reply that was streaming when the app died is kept and marked interrupted.
    conversations.recover_interrupted()
    history = History(store)
    backups = Backups(store, paths.backups_dir)
    return Services(paths=paths, store=store, library=library, settings=settings,
                    conversations=conversations, history=history, backups=backups)
