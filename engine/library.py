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
from engine.gguf_check import GGUFHeader, MalformedModelError, check_gguf, summarize

# Bytes per KV-cache element: llama.cpp keeps K and V in f16 by default.
_KV_BYTES_PER_VALUE = 2
# Compute buffers, the vocabulary and the process itself: measured ~60-150 MiB for the
# default pack; a flat allowance keeps the estimate on the safe side.
_OVERHEAD_BYTES = 256 * 1024 * 1024


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


def kv_bytes_per_token(header: GGUFHeader) -> int:
    """K and V bytes one token of context costs: 2 x layers x kv_heads x head_dim x 2 bytes."""
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


def memory_needed(file_size: int, kv_per_token: int, n_ctx: int) -> int:
    return int(file_size) + int(kv_per_token) * int(n_ctx) + _OVERHEAD_BYTES


def available_memory() -> int:
    import psutil

    return int(psutil.virtual_memory().available)


def _gib(n: int) -> str:
    return f"{n / (1024 ** 3):.2f} GiB"


def check_fits(file_size: int, kv_per_token: int, n_ctx: int, name: str, free: int | None = None) -> int:
    """Refuse a model that would not fit in free memory; returns the bytes needed."""
    needed = memory_needed(file_size, kv_per_token, n_ctx)
    free = available_memory() if free is None else free
    if needed > free:
        raise ModelTooLargeError(
            f"{name} needs about {_gib(needed)} of memory (model {_gib(file_size)} plus a {n_ctx}-token context), "
            f"but only {_gib(free)} is free. Close other programs, shorten the context length, or pick a smaller model."
        )
    return needed
