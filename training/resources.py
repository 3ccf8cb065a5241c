"""Will a training job fit this machine? Checked before it starts, with a clear message.

Torch-free on purpose: the jobs' ``preflight`` calls it in the short ``python -m training.run
--check`` process the app starts before it keeps a job folder (which must answer in seconds),
and again in the job process (the machine may have changed in between). Any thread.

The estimates are deliberately generous rather than exact: a job refused with a readable
message is better than one killed by the kernel an hour in.
"""

from __future__ import annotations

import shutil
from pathlib import Path

MiB = 1 << 20
#: Room kept free on the disk besides what the job writes (logs, the database, other apps).
DISK_MARGIN = 256 * MiB
#: Interpreter, torch, transformers and allocator slack of a training process.
PROCESS_OVERHEAD = 700 * MiB


class ResourceError(RuntimeError):
    """The machine lacks memory or disk for the job; str() says how much and what to do."""


def model_shape(gguf_path: Path) -> dict:
    """Parameter count, hidden size, layers and vocabulary from a GGUF header (no tensor data read)."""
    from gguf import GGUFReader

    reader = GGUFReader(str(gguf_path), "r")

    def value(key, default=0):
        field = reader.fields.get(key)
        if field is None:
            return default
        return field.parts[field.data[0]].tolist()[0] if len(field.data) == 1 else default

    arch_field = reader.fields.get("general.architecture")
    arch = bytes(arch_field.parts[arch_field.data[0]]).decode() if arch_field else ""
    params = sum(int(t.n_elements) for t in reader.tensors)
    return {"architecture": arch, "params": params,
            "hidden": int(value(f"{arch}.embedding_length", 1024)),
            "layers": int(value(f"{arch}.block_count", 32)),
            "ffn": int(value(f"{arch}.feed_forward_length", 4096))}


def estimate(gguf_path: Path, batch_size: int, seq_len: int, cached: bool) -> dict:
    """Bytes of memory and disk a LoRA job on ``gguf_path`` needs."""
    shape = model_shape(Path(gguf_path))
    weights = shape["params"] * 4  # fp32 copy of the base
    # Activations kept for backward: per token and layer roughly 12 hidden-size and 3 ffn-size
    # fp32 vectors (attention, norms, MLP), plus the head slices (bounded by the trainer).
    tokens = batch_size * seq_len
    activations = tokens * shape["layers"] * (12 * shape["hidden"] + 3 * shape["ffn"]) * 4
    # The first run dequantizes the GGUF: transformers holds the numpy copy and the model at once.
    load_peak = weights * (1 if cached else 2)
    memory = load_peak + weights + activations + PROCESS_OVERHEAD
    disk = (0 if cached else int(weights * 1.05)) + 64 * MiB  # cache + adapter, checkpoints, exports
    return {"memory_bytes": int(memory), "disk_bytes": int(disk), **shape}


def check_resources(gguf_path: Path, cache_root: Path, out_dir: Path, config) -> dict:
    """Raise :class:`ResourceError` if memory or disk is short for the job; return the estimate."""
    import psutil

    from training.base_model import is_cached

    cached = is_cached(gguf_path, cache_root)
    need = estimate(gguf_path, config.batch_size * max(1, config.grad_accum), config.seq_len, cached)
    available = psutil.virtual_memory().available
    if need["memory_bytes"] > available:
        raise ResourceError(
            f"Not enough memory: the job needs about {need['memory_bytes'] / 2**30:.1f} GiB, "
            f"{available / 2**30:.1f} GiB is free. Close other programs, or lower the batch size "
            f"or sequence length (quick preset).")
    for folder, needed in ((cache_root, need["disk_bytes"]), (out_dir, 64 * MiB)):
        probe = Path(folder)
        while not probe.exists() and probe != probe.parent:
            probe = probe.parent
        free = shutil.disk_usage(probe).free
        if needed + DISK_MARGIN > free:
            raise ResourceError(
                f"Not enough disk space in {probe}: the job needs about {(needed + DISK_MARGIN) / MiB:.0f} MiB, "
                f"{free / MiB:.0f} MiB is free.")
    return need
