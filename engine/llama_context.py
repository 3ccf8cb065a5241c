"""llama.cpp set-up and teardown, one copy for every caller: the back end (once per process,
its log routed to :mod:`logging`), a model's weights, a context on them, tokenizing, freeing.

Callers: the engine worker's chat model (:mod:`engine.llama_runtime`), its batch context
(:mod:`engine.classify`) and embedder (:mod:`engine.embedder`), and training's measurements
(:mod:`training.evaluate`) and quantizer. Each call runs on the calling thread; a model and
its contexts then belong to that thread (llama.cpp contexts are not thread-safe).

Through llama-cpp-python's ctypes layer (the C API), not ``llama_cpp.Llama``: see
:mod:`engine.llama_runtime` for why.
"""

from __future__ import annotations

import ctypes
import logging
import os
import threading

import llama_cpp

__all__ = ["EngineError", "free_llama", "init_backend", "load_model", "new_context", "tokenize"]

log = logging.getLogger("engine.llama")

_backend_lock = threading.Lock()
_backend_ready = False
_LOG_LEVEL_WARN = 3  # GGML_LOG_LEVEL_WARN


class EngineError(RuntimeError):
    """A failure the user should see as one clear sentence."""


@llama_cpp.llama_log_callback
def _forward_llama_log(level: int, text: bytes, _user_data) -> None:
    # llama.cpp prints every tensor at load; keep warnings and errors for the worker log.
    if level >= _LOG_LEVEL_WARN and level != 5 and text:
        log.warning(text.decode("utf-8", "replace").rstrip())


def init_backend() -> None:
    global _backend_ready
    with _backend_lock:
        if not _backend_ready:
            llama_cpp.llama_log_set(_forward_llama_log, ctypes.c_void_p(0))
            llama_cpp.llama_backend_init()
            _backend_ready = True


def load_model(path: str | os.PathLike, *, use_mmap: bool = True, what: str = "the model", vocab_only: bool = False):
    """Load a GGUF's weights on the CPU; raises :class:`EngineError` naming ``what`` failed.

    ``use_mmap`` False reads the file into memory instead of mapping it; ``vocab_only`` loads
    the tokenizer and metadata without the weights (no context can be made on it)."""
    init_backend()
    params = llama_cpp.llama_model_default_params()
    params.n_gpu_layers = 0
    params.vocab_only = bool(vocab_only)
    if not use_mmap:
        params.load_mode = llama_cpp.LLAMA_LOAD_MODE_NONE
    model = llama_cpp.llama_model_load_from_file(os.fsencode(path), params)
    if not model:
        raise EngineError(f"llama.cpp could not load {what} {os.fspath(path)}; the file may be damaged or of an "
                          "unsupported architecture.")
    return model


def new_context(model, *, n_ctx: int, n_batch: int, n_threads: int, failure: str,
                n_threads_batch: int | None = None, n_seq_max: int | None = None, flash_attn: bool | None = None,
                kv_unified: bool = False, embeddings: bool = False, perf: bool = False):
    """A context on ``model``'s weights; raises :class:`EngineError` with ``failure`` when
    llama.cpp cannot make it (usually memory).

    ``n_batch`` is also the micro-batch. Left at None, ``n_threads_batch`` is ``n_threads``
    and ``n_seq_max`` and ``flash_attn`` keep llama.cpp's defaults. ``kv_unified`` shares one
    KV cache among sequences; ``embeddings`` makes a mean-pooling embedding context; ``perf``
    keeps llama.cpp's timing counters.
    """
    params = llama_cpp.llama_context_default_params()
    params.n_ctx = int(n_ctx)
    params.n_batch = params.n_ubatch = int(n_batch)
    params.n_threads = int(n_threads)
    params.n_threads_batch = int(n_threads_batch or n_threads)
    if n_seq_max is not None:
        params.n_seq_max = int(n_seq_max)
    if flash_attn is not None:
        params.flash_attn_type = (llama_cpp.LLAMA_FLASH_ATTN_TYPE_ENABLED if flash_attn
                                  else llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED)
    if kv_unified:
        params.kv_unified = True
    if embeddings:
        params.embeddings = True
        params.pooling_type = llama_cpp.LLAMA_POOLING_TYPE_MEAN
    params.no_perf = not perf
    ctx = llama_cpp.llama_init_from_model(model, params)
    if not ctx:
        raise EngineError(failure)
    return ctx


def free_llama(*, batch=None, ctx=None, adapter=None, model=None) -> None:
    """Free whichever of these llama.cpp objects are given, each before what it depends on:
    a batch, a context, then a LoRA adapter and the weights. None (never made, or freed
    already) is skipped, so a half-built owner can call it from its error path."""
    if batch is not None:
        llama_cpp.llama_batch_free(batch)
    if ctx:
        llama_cpp.llama_free(ctx)
    if adapter:
        llama_cpp.llama_adapter_lora_free(adapter)
    if model:
        llama_cpp.llama_model_free(model)


def tokenize(vocab, text: str, add_special: bool = True, parse_special: bool = True,
             errors: str = "strict") -> list[int]:
    """``text`` in the vocabulary's tokens (``errors`` as in :meth:`str.encode`)."""
    data = text.encode("utf-8", errors)
    capacity = len(data) + 8
    while True:
        buf = (llama_cpp.llama_token * capacity)()
        n = llama_cpp.llama_tokenize(vocab, data, len(data), buf, capacity, add_special, parse_special)
        if n >= 0:
            return list(buf[:n])
        capacity = -n


def fill_sequence(batch, tokens: list[int], first_pos: int) -> None:
    """Put ``tokens`` into ``batch`` as positions ``first_pos``… of sequence 0, each asking for
    its logit row (scoring a text, verifying a draft). Any thread that owns the batch."""
    for i, token in enumerate(tokens):
        batch.token[i] = token
        batch.pos[i] = first_pos + i
        batch.n_seq_id[i] = 1
        batch.seq_id[i][0] = 0
        batch.logits[i] = 1
    batch.n_tokens = len(tokens)
