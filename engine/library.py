"""Model files: validation, metadata and the memory a model needs. Pure, any thread.

The bounded header check (:mod:`engine.gguf_check`) reads only the GGUF header; llama.cpp
sees a file only after it passed, and only in the engine worker.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from engine.errors import UserError
from engine.gguf_check import GGUFHeader, GGUFPeek, MalformedModelError, check_gguf, summarize
from engine.settings import EngineSettings

# Bytes per KV-cache element: llama.cpp keeps K and V in f16 by default.
_KV_BYTES_PER_VALUE = 2
# When the vocabulary's size is unknown: compute buffers, the vocabulary and the process
# itself as one flat allowance, on the safe side for models with vocabularies up to ~128k.
_OVERHEAD_BYTES = 256 * 1024 * 1024
# llama.cpp reserves its compute buffer for the worst micro-batch: f32 logits for every token
# of it (n_batch x n_vocab x 4 bytes) plus the layers' activations. Loaded with n_batch 512 and
# flash attention, llama.cpp reported 98.25 MiB for SmolLM2 (49,152 tokens, 576 wide) and
# 514.5 MiB for Gemma 3 270M (262,144 tokens, 640 wide): n_batch x (n_vocab + this x n_embd)
# x 4 bytes is a few MiB above both, and the activation term grows with the width as the
# feed-forward tensors do. (Without flash attention the KQ scores add n_batch x n_ctx x heads.)
_ACTIVATION_WIDTHS = 8
# The worker process around the model: Python, llama.cpp's code, its vocabulary tables and
# output buffer, which the compute buffer does not count.
_PROCESS_BYTES = 128 * 1024 * 1024
# llama.cpp pads a context to a multiple of 256 cells; the largest context that fits is
# given in those steps.
CONTEXT_STEP = 256


class ModelTooLargeError(UserError, RuntimeError):
    pass


@dataclass
class ModelInspection:
    path: str
    header: GGUFHeader
    summary: dict
    sha256: str | None


def sha256_file(path: str | os.PathLike, chunk: int = 4 * 1024 * 1024) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def inspect_model(path: str | os.PathLike, with_hash: bool = True) -> ModelInspection:
    """Validate a GGUF file's header and describe it; raises MalformedModelError."""
    resolved = str(Path(path).expanduser())
    if not resolved.lower().endswith(".gguf") and Path(resolved).is_file():
        with open(resolved, "rb") as handle:
            if handle.read(4) != b"GGUF":
                raise MalformedModelError(f"{Path(resolved).name} is not a GGUF model file (models must be .gguf files).")
    header = check_gguf(resolved)
    summary = summarize(header)
    summary["kv_bytes_per_token"] = kv_bytes_per_token(header)
    return ModelInspection(path=resolved, header=header, summary=summary, sha256=sha256_file(resolved) if with_hash else None)


def kv_bytes_per_token(header: GGUFHeader | GGUFPeek) -> int:
    """K and V bytes one token of context costs: 2 x layers x kv_heads x head_dim x 2 bytes.

    Reads only the architecture's keys, which a peek (:func:`engine.gguf_check.peek_gguf`)
    holds as well as a full header."""
    meta = header.metadata
    arch = str(meta.get("general.architecture", ""))

    def number(key: str, default: int = 0) -> int:
        value = meta.get(f"{arch}.{key}", default)
        if isinstance(value, list):  # per-layer counts (some architectures): take the largest
            value = max((int(v) for v in value), default=default)
        try:
            return int(value)
        except (TypeError, ValueError):
            return default

    layers = number("block_count")
    embd = number("embedding_length")
    heads = number("attention.head_count") or 1
    kv_heads = number("attention.head_count_kv") or heads
    key_len = number("attention.key_length") or (embd // heads if heads else 0)
    value_len = number("attention.value_length") or key_len
    return layers * kv_heads * (key_len + value_len) * _KV_BYTES_PER_VALUE


def compute_buffer_bytes(n_vocab: int | None, n_embd: int | None,
                         n_batch: int = EngineSettings.n_batch) -> int:
    """Memory llama.cpp and the worker take beside the weights and the KV cache."""
    if not n_vocab:
        return _OVERHEAD_BYTES
    return int(n_batch) * (int(n_vocab) + _ACTIVATION_WIDTHS * int(n_embd or 0)) * 4 + _PROCESS_BYTES


def memory_needed(file_size: int, kv_per_token: int, n_ctx: int, *, n_vocab: int | None = None,
                  n_embd: int | None = None, n_batch: int = EngineSettings.n_batch) -> int:
    """Bytes a model takes loaded with an ``n_ctx``-token context: weights, KV cache, buffers."""
    return int(file_size) + int(kv_per_token) * int(n_ctx) + compute_buffer_bytes(n_vocab, n_embd, n_batch)


def largest_context(file_size: int, kv_per_token: int, free: int, *, n_vocab: int | None = None,
                    n_embd: int | None = None, n_batch: int = EngineSettings.n_batch,
                    trained: int | None = None) -> int:
    """The longest context whose model fits in ``free`` bytes, in steps of :data:`CONTEXT_STEP`
    and at most ``trained`` (the model's own limit); 0 when not even the shortest one fits."""
    room = int(free) - memory_needed(file_size, 0, 0, n_vocab=n_vocab, n_embd=n_embd, n_batch=n_batch)
    if room < 0:
        return 0
    longest = room // int(kv_per_token) if kv_per_token > 0 else 2**31
    if trained:
        longest = min(longest, int(trained))
    if longest >= CONTEXT_STEP:
        longest -= longest % CONTEXT_STEP
    return longest if longest >= min(CONTEXT_STEP, int(trained or CONTEXT_STEP)) else 0


def available_memory() -> int:
    import psutil

    return int(psutil.virtual_memory().available)


def _gib(n: int) -> str:
    return f"{n / (1024 ** 3):.2f} GiB"


def check_fits(file_size: int, kv_per_token: int, n_ctx: int, name: str, free: int | None = None, *,
               n_vocab: int | None = None, n_embd: int | None = None, n_batch: int = EngineSettings.n_batch,
               trained: int | None = None) -> int:
    """Refuse a model that would not fit in free memory; returns the bytes needed. The message
    names the longest context that would fit, when there is one."""
    shape = {"n_vocab": n_vocab, "n_embd": n_embd, "n_batch": n_batch}
    needed = memory_needed(file_size, kv_per_token, n_ctx, **shape)
    free = available_memory() if free is None else free
    if needed > free:
        longest = largest_context(file_size, kv_per_token, free, trained=trained, **shape)
        shorter = (f"shorten the context length (up to {longest:,} tokens would fit)" if longest
                   else "shorten the context length")
        raise ModelTooLargeError(
            f"{name} needs about {_gib(needed)} of memory (model {_gib(file_size)} plus a {n_ctx}-token context), "
            f"but only {_gib(free)} is free. Close other programs, {shorter}, or pick a smaller model."
        )
    return needed
