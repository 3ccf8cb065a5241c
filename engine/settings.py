"""Typed settings for the engine and for sampling (plain dataclasses, JSON-serialisable).

Used on any thread of any process; they carry no state beyond their values.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field, fields


def physical_cores() -> int:
    """Physical cores: llama.cpp decodes fastest with one thread per core, not per hyper-thread."""
    try:
        import psutil

        count = psutil.cpu_count(logical=False)
    except Exception:  # psutil cannot tell on some containers
        count = None
    if not count:
        count = os.cpu_count() or 1
    try:
        # Respect a CPU affinity mask (containers, taskset) smaller than the machine.
        count = min(count, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        pass
    return max(1, count)


@dataclass
class EngineSettings:
    """How the worker runs llama.cpp. Defaults are the fastest measured on a 2-core CPU."""

    # One thread per physical core; more threads than cores slows decode down.
    n_threads: int = field(default_factory=physical_cores)
    # Prompt processing also scales with physical cores.
    n_threads_batch: int = field(default_factory=physical_cores)
    # 4096 tokens: long enough for documents in the prompt, KV cache of a 135M model stays ~90 MiB.
    n_ctx: int = 4096
    # Prompt tokens submitted per llama_decode call; 512 is llama.cpp's own default.
    n_batch: int = 512
    # Flash attention saves the KQ soft-max round trip; measured faster on CPU too.
    flash_attn: bool = True
    # Keep the model mapped rather than read into anonymous memory: fast, shared page cache.
    use_mmap: bool = True
    # Cap on the worker's address space in bytes (0 = 75% of physical memory), so a hostile
    # model file can exhaust only the worker, never the desktop.
    memory_limit_bytes: int = 0
    # Models kept loaded at once (least recently used unloaded first): the chat, translate and
    # embedding models of the default pack stay warm, so moving between pages never reloads;
    # fewer are kept when free memory is short.
    max_loaded_models: int = 3
    # Embedding encoders kept loaded at once (the documents' MiniLM and sentiment students'
    # own encoders), least recently used closed first; fewer when free memory is short.
    max_loaded_encoders: int = 3
    # Use fewer threads than n_threads / n_threads_batch while other programs keep the cores
    # busy (see engine.threads); False always uses the settings as they are.
    adapt_threads: bool = True
    # Long prompts of models whose weights lack fast prompt kernels (Q4_1) go through an F16
    # copy of the same weights (engine.fast_prefill), kept in prefill_copies_dir ("" = never).
    fast_prefill: bool = True
    prefill_copies_dir: str = ""

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict | None) -> "EngineSettings":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in (data or {}).items() if k in names})


@dataclass
class SamplingParams:
    """Sampling for one reply. Defaults follow llama.cpp's CLI, good for small chat models."""

    # 0.7 keeps small models coherent while not repeating themselves verbatim.
    temperature: float = 0.7
    # Nucleus sampling: keep the smallest set of tokens covering 95% of the probability.
    top_p: float = 0.95
    # Only the 40 most likely tokens are ever candidates.
    top_k: int = 40
    # Drop tokens below 5% of the best token's probability: removes the long junk tail.
    min_p: float = 0.05
    # Mild penalty on the last 64 tokens: small models loop without one.
    repeat_penalty: float = 1.1
    repeat_last_n: int = 64
    # -1 draws a fresh seed per reply; any other value makes replies reproducible.
    seed: int = -1
    # Cap on generated tokens per reply.
    max_tokens: int = 512
    # Extra stop strings besides the model's end-of-generation tokens.
    stop: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict | None) -> "SamplingParams":
        names = {f.name for f in fields(cls)}
        params = cls(**{k: v for k, v in (data or {}).items() if k in names})
        params.validate()
        return params

    def validate(self) -> None:
        problems = []
        if not 0.0 <= float(self.temperature) <= 5.0:
            problems.append("temperature must be between 0 and 5")
        if not 0.0 < float(self.top_p) <= 1.0:
            problems.append("top-p must be above 0 and at most 1")
        if int(self.top_k) < 0:
            problems.append("top-k must be 0 (off) or more")
        if not 0.0 <= float(self.min_p) < 1.0:
            problems.append("min-p must be at least 0 and below 1")
        if not 0.0 < float(self.repeat_penalty) <= 5.0:
            problems.append("repeat penalty must be above 0 and at most 5")
        if int(self.max_tokens) < 1:
            problems.append("max tokens must be at least 1")
        if not isinstance(self.stop, list) or not all(isinstance(s, str) for s in self.stop):
            problems.append("stop words must be a list of strings")
        if problems:
            raise ValueError("Invalid sampling settings: " + "; ".join(problems) + ".")
