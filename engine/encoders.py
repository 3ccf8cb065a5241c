"""The engine worker's loaded embedding encoders (the documents' MiniLM, sentiment students'
fine-tuned encoders), kept warm in a small least-recently-used cache.

Runs only inside the engine worker process, on its request thread, which owns every
encoder it holds (llama.cpp contexts are not thread-safe). Moving between the documents and
a student's sentiment therefore does not reload either encoder: up to
``EngineSettings.max_loaded_encoders`` stay loaded, fewer when free memory is short (the same
estimate as the chat models', :func:`engine.library.check_fits`), and the least recently
used one is closed first.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from typing import Callable

from engine.library import ModelTooLargeError, check_fits, inspect_model
from engine.settings import EngineSettings

#: Request parameters that shape an encoder's context (see :class:`engine.embedder.Embedder`).
SHAPE_KEYS = ("n_batch", "n_seq_max")


class EncoderCache:
    """Path -> loaded :class:`engine.embedder.Embedder`, least recently used first."""

    def __init__(self, free_memory: Callable[[EngineSettings], int]):
        """``free_memory(settings)`` is the bytes the worker may still use (the worker's own
        measure, so encoders and chat models count against one budget)."""
        self._free_memory = free_memory
        self._encoders: OrderedDict[str, object] = OrderedDict()
        self._shapes: dict[str, dict] = {}
        #: How many times an encoder was loaded from disk (a warm switch does not add to it).
        self.loads = 0

    def loaded(self) -> list[str]:
        """Paths of the loaded encoders, least recently used first."""
        return list(self._encoders)

    def get(self, path: str, params: dict, settings: EngineSettings, on_status: Callable[..., None]):
        """The encoder for ``path``, loaded (with ``on_status("loading"|"ready")``) when it is
        not warm or the request names another context shape. Raises ModelTooLargeError when it
        does not fit even with every other encoder closed, MalformedModelError from the header
        check, and the runtime's EngineError when llama.cpp refuses the file."""
        shape = {k: int(params[k]) for k in SHAPE_KEYS if params.get(k) is not None}
        encoder = self._encoders.get(path)
        if encoder is not None and all(self._shapes[path].get(k) == v for k, v in shape.items()):
            self._encoders.move_to_end(path)
            return encoder
        from engine.embedder import MAX_SEQ_TOKENS, Embedder

        on_status("loading")
        summary = inspect_model(path, with_hash=False).summary  # the bounded header check before llama.cpp
        self.close(path)  # same file, other shape: this copy goes
        while len(self._encoders) >= max(1, int(settings.max_loaded_encoders)):
            self.close(next(iter(self._encoders)))
        n_batch = max(shape.get("n_batch", MAX_SEQ_TOKENS), MAX_SEQ_TOKENS)
        while True:
            try:
                check_fits(summary.get("file_size") or os.path.getsize(path), summary.get("kv_bytes_per_token", 0),
                           n_batch, os.path.basename(path), free=self._free_memory(settings),
                           n_vocab=summary.get("vocab_size"), n_embd=summary.get("embedding_length"),
                           n_batch=n_batch, trained=summary.get("context_length"))
                break
            except ModelTooLargeError:
                if not self._encoders:
                    raise
                self.close(next(iter(self._encoders)))  # memory is the limit: the least recent goes
        threads = int(settings.n_threads_batch or settings.n_threads or 2)
        encoder = Embedder(path, n_threads=threads, **shape)
        self._encoders[path] = encoder
        self._shapes[path] = shape
        self.loads += 1
        on_status("ready")
        return encoder

    def close(self, path: str) -> None:
        encoder = self._encoders.pop(path, None)
        self._shapes.pop(path, None)
        if encoder is not None:
            encoder.close()

    def close_all(self) -> None:
        for path in list(self._encoders):
            self.close(path)
