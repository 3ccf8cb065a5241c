"""How well a model runs on this machine: "runs well", "tight" or "too large", with the memory it
needs at the chosen context, the longest context that fits and the decode speed to expect.

Qt-free. Everything here runs on a worker thread or the CLI's main thread, never the GUI
thread: a header read is a few KB (:func:`engine.gguf_check.peek_gguf`), and the first
:func:`machine_bandwidth` of a data folder blocks for under a second to measure the memory
(then it reads the cached figure). The memory arithmetic is the engine's own
(:mod:`engine.library`), so a model labelled "too large" is the one the engine refuses.

Decode speed: generating one token reads every weight once (and the KV cache so far), with
little arithmetic per byte, so on a CPU it is bounded by how fast memory streams. Expected
tokens/s = measured bandwidth x :data:`DECODE_EFFICIENCY` / bytes read per token.
"""

from __future__ import annotations

import datetime
import json
import math
import os
import platform
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from assistant.models.discovery import split_parts
from engine.atomic import write_json_atomic
from engine.gguf_check import ArraySummary, peek_gguf
from engine.library import available_memory, kv_bytes_per_token, largest_context, memory_needed
from engine.settings import EngineSettings, physical_cores
from engine.units import human_size

RUNS_WELL = "runs well"
TIGHT = "tight"
TOO_LARGE = "too large"
LABELS = (RUNS_WELL, TIGHT, TOO_LARGE)

# "Runs well" leaves a quarter of the free memory to the rest of the desktop: free memory moves
# as other programs run, and a model that takes nearly all of it pushes them (or itself) into
# swap at the next browser tab. Needing more than this share of it is "tight".
COMFORTABLE_SHARE = 0.75
# Slower than people read is "tight" however well it fits: about 250 words a minute at ~1.3
# tokens a word.
SLOW_TOKENS_PER_S = 5.5
# The share of the measured bandwidth decode reaches: llama.cpp also dequantizes and multiplies
# what it reads (on few cores small models are as much compute- as memory-bound), synchronises
# its threads at every layer and samples each token, so it streams far slower than a bare read.
# Calibrated on the development model only (Gemma 3 270M: `benchmarks/model_fit.py --calibrate`,
# results/model_fit_calibration.json) on a quiet machine: an earlier calibration on a busy one
# measured both the bandwidth and the decode under contention and was discarded; SmolLM2 is
# scored with this value.
DECODE_EFFICIENCY = 0.49
# The speed shown is at the start of a reply to a short question: this many tokens of context
# (a system prompt and a question), whose KV cache attention reads again for every new token.
TYPICAL_CONTEXT_TOKENS = 256

BANDWIDTH_FILE = "machine_bandwidth.json"
# Four times a large (32 MiB) L3 cache: every round's reads come from memory, not cache.
_BANDWIDTH_BUFFER_BYTES = 128 * 1024 * 1024
# The best of a few rounds is the machine's rate; slower rounds met another program's work.
_BANDWIDTH_ROUNDS = 5


@dataclass(frozen=True)
class ModelShape:
    """The header facts the fit needs."""

    file_bytes: int  # every part of a split model: all of it is mapped, and decode reads it
    kv_bytes_per_token: int  # f16 K and V for one token of context, every layer
    n_vocab: int | None = None
    n_embd: int | None = None
    trained_context: int | None = None  # the longest context the model was trained for

    @classmethod
    def from_metadata(cls, metadata: dict, file_bytes: int) -> "ModelShape":
        """From a library record's metadata (engine.gguf_check.summarize plus the KV figure)."""
        def number(key: str) -> int | None:
            value = metadata.get(key)
            return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0 else None

        return cls(int(file_bytes), number("kv_bytes_per_token") or 0, number("vocab_size"),
                   number("embedding_length"), number("context_length"))


def read_shape(path: str | os.PathLike, file_bytes: int | None = None) -> ModelShape:
    """A GGUF file's shape from its first few KB; ``file_bytes`` is the size of all its parts
    (summed here from a split model's part files when not given). Raises MalformedModelError."""
    peek = peek_gguf(path)
    if file_bytes is None:
        file_bytes = sum(p.stat().st_size for p in split_parts(path) if p.is_file())
    meta = peek.metadata
    arch = meta.get("general.architecture")

    def number(key: str) -> int | None:
        value = meta.get(f"{arch}.{key}")
        return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None

    tokens = meta.get("tokenizer.ggml.tokens")
    n_vocab = tokens.length if isinstance(tokens, ArraySummary) else number("vocab_size")
    return ModelShape(int(file_bytes), kv_bytes_per_token(peek), n_vocab, number("embedding_length"),
                      number("context_length"))


@dataclass(frozen=True)
class Fit:
    """What :func:`assess` found for one model on this machine."""

    label: str  # one of LABELS
    n_ctx: int  # the context the memory figure is for
    needed_bytes: int
    free_bytes: int
    largest_context: int  # the longest context that fits in free memory (0: none)
    tokens_per_s: float | None  # expected decode speed; None when the bandwidth is unknown

    @property
    def speed_text(self) -> str:
        return f"~{self.tokens_per_s:.0f} tokens/s" if self.tokens_per_s else "speed unknown"

    @property
    def short_text(self) -> str:
        """'runs well · ~85 tokens/s', for a list row."""
        return f"{self.label} · {self.speed_text}"

    def details(self) -> str:
        """One sentence with the numbers behind the label."""
        fits = (f"fits up to {self.largest_context:,} tokens of context" if self.largest_context
                else "no context fits")
        return (f"{self.label.capitalize()}: needs about {human_size(self.needed_bytes)} at a {self.n_ctx:,}-token "
                f"context, {human_size(self.free_bytes)} is free; {fits}; about {self.speed_text}.")

    def warning(self, name: str) -> str:
        """What to tell someone about to use a model that does not fit."""
        shorter = (f"A context of up to {self.largest_context:,} tokens would fit." if self.largest_context
                   else "It does not fit even with a short context.")
        return (f"{name} needs about {human_size(self.needed_bytes)} of memory with a {self.n_ctx:,}-token context, "
                f"but only {human_size(self.free_bytes)} is free now. {shorter} The engine makes room by closing "
                "the other models it has loaded; if that is not enough, the model will not load. Closing other "
                "programs frees memory too.")


def expected_tokens_per_s(shape: ModelShape, bandwidth: float,
                          context_tokens: int = TYPICAL_CONTEXT_TOKENS) -> float:
    """Decode tokens/s: every weight is read once per token, and attention reads the KV cache
    of the ``context_tokens`` before it. The whole file counts as weights: its metadata is a
    few percent of it, and an untied token-embedding table (read one row per token, not whole)
    is under a tenth of the models that have one."""
    bytes_per_token = shape.file_bytes + shape.kv_bytes_per_token * max(0, int(context_tokens))
    return bandwidth * DECODE_EFFICIENCY / bytes_per_token if bytes_per_token > 0 else 0.0


def assess(shape: ModelShape, n_ctx: int, free_bytes: int, bandwidth: float | None,
           n_batch: int = EngineSettings.n_batch) -> Fit:
    """The label for ``shape`` at ``n_ctx`` tokens (capped at what the model was trained for, as
    the engine caps it) with ``free_bytes`` of free memory. Pure."""
    if shape.trained_context:
        n_ctx = min(int(n_ctx), shape.trained_context)
    buffers = {"n_vocab": shape.n_vocab, "n_embd": shape.n_embd, "n_batch": n_batch}
    needed = memory_needed(shape.file_bytes, shape.kv_bytes_per_token, n_ctx, **buffers)
    longest = largest_context(shape.file_bytes, shape.kv_bytes_per_token, free_bytes,
                              trained=shape.trained_context, **buffers)
    speed = expected_tokens_per_s(shape, bandwidth) if bandwidth else None
    if needed > free_bytes:
        label = TOO_LARGE
    elif needed > free_bytes * COMFORTABLE_SHARE or (speed is not None and speed < SLOW_TOKENS_PER_S):
        label = TIGHT
    else:
        label = RUNS_WELL
    return Fit(label, int(n_ctx), needed, int(free_bytes), longest, speed)


# ----- this machine ---------------------------------------------------------------------
def measure_bandwidth(threads: int | None = None) -> float:
    """Bytes per second ``threads`` threads (the engine's default: one per core) read from
    memory together. Blocks for under a second; never call it on the GUI thread.

    Why this stands for decode: llama.cpp decodes with one thread per core, each streaming its
    share of the weights once per token. An OR over a buffer larger than the caches does the
    same streaming reads with the same threads and even less arithmetic per byte (numpy's
    reductions release the GIL), so it is the ceiling decode approaches.
    """
    import numpy as np

    threads = max(1, int(threads or physical_cores()))
    buffer = np.empty(_BANDWIDTH_BUFFER_BYTES // 8, dtype=np.uint64)
    buffer.fill(1)  # touch every page now: a page's first touch costs a fault, not a read
    shares = np.array_split(buffer, threads)
    best = math.inf
    with ThreadPoolExecutor(threads, thread_name_prefix="bandwidth") as pool:
        for _ in range(_BANDWIDTH_ROUNDS):
            started = time.perf_counter()
            list(pool.map(np.bitwise_or.reduce, shares))
            best = min(best, time.perf_counter() - started)
    return buffer.nbytes / best


def cpu_model() -> str:
    """The processor's name ("AMD EPYC 7B13"), as the cached bandwidth is keyed by it."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
            for line in handle:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def machine_bandwidth(data_dir: str | os.PathLike, *, cpu: str | None = None, threads: int | None = None,
                      measure: Callable[[int], float] = measure_bandwidth) -> float:
    """This machine's memory bandwidth in bytes/s, measured once per data folder and kept in
    :data:`BANDWIDTH_FILE` with the date, the processor and the thread count; measured again
    when the processor or the thread count differs (a new machine, a copied data folder).
    Worker thread or CLI main thread."""
    cpu = cpu or cpu_model()
    threads = int(threads or physical_cores())
    path = Path(data_dir) / BANDWIDTH_FILE
    try:
        cached = json.loads(path.read_text(encoding="utf-8"))
        if cached.get("cpu_model") == cpu and cached.get("threads") == threads \
                and float(cached.get("bytes_per_s", 0)) > 0:
            return float(cached["bytes_per_s"])
    except (OSError, ValueError, TypeError, AttributeError):
        pass  # none yet, or unreadable: measure
    bandwidth = float(measure(threads))
    try:
        write_json_atomic(path, {"bytes_per_s": bandwidth, "cpu_model": cpu, "threads": threads,
                                 "measured_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")})
    except OSError:
        pass  # a read-only data folder: measure again next time rather than fail
    return bandwidth


@dataclass(frozen=True)
class Machine:
    """The two facts of this machine every label needs, read once for a whole list."""

    free_bytes: int
    bandwidth: float | None


def this_machine(data_dir: str | os.PathLike) -> Machine:
    """Free memory now and the (cached) bandwidth. Worker thread or CLI main thread."""
    return Machine(available_memory(), machine_bandwidth(data_dir))
