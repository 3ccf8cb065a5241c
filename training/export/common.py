"""What the GGUF writers share: supported architectures, HF -> GGUF tensor names, the llama
Q/K row permutation, and atomic output files.

Runs in the training process (or a test), on the calling thread. Torch-free: tensors are
numpy arrays here, so the same helpers serve the adapter exporter and the full writer.

Why the permutation: Hugging Face's Llama applies rotary embeddings with ``rotate_half``,
which pairs dimension ``i`` with ``i + d/2`` inside each head ("NEOX" order). llama.cpp's
``llama`` architecture applies them to adjacent pairs ``(2i, 2i+1)`` (Meta's original
order). HF's own conversion of Meta's checkpoints permuted the rows of ``q_proj`` and
``k_proj`` to switch orders; llama.cpp's converter undoes it (:func:`permute_qk_rows`), and
transformers' GGUF loader re-applies it when reading a GGUF. Only the *output rows* move,
so for a LoRA update ``W + s * B @ A`` the permutation ``P`` gives ``P W + s * (P B) @ A``:
it applies to ``lora_B`` alone. Gemma 3 runs in NEOX order in llama.cpp too, so nothing is
permuted there; instead llama.cpp stores Gemma's RMSNorm weights as ``1 + w`` (HF keeps
``w`` and adds the 1 at run time), which the full writer accounts for.
"""

from __future__ import annotations

import errno
import os
import shutil
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import gguf
import numpy as np

from engine.atomic import atomic_path


class ExportError(RuntimeError):
    """An export cannot be done; ``str(e)`` is one sentence saying why and what to do."""


class UnsupportedArchitectureError(ExportError):
    """The model's architecture is not one the project's GGUF writers know how to map."""


@dataclass(frozen=True)
class ArchSpec:
    """How one architecture's HF tensors become llama.cpp's."""

    gguf_arch: gguf.MODEL_ARCH
    # HF config.model_type values that load as this architecture.
    hf_model_types: tuple[str, ...]
    # Whether q_proj/k_proj rows are permuted between HF and llama.cpp (see module docstring).
    permute_qk: bool
    # llama.cpp keeps RMSNorm weights shifted by this much (Gemma: 1 + w); 0 for none.
    norm_shift: float


#: The architectures the exporters support, by GGUF ``general.architecture``.
SUPPORTED: dict[str, ArchSpec] = {
    "llama": ArchSpec(gguf.MODEL_ARCH.LLAMA, ("llama",), permute_qk=True, norm_shift=0.0),
    "gemma3": ArchSpec(gguf.MODEL_ARCH.GEMMA3, ("gemma3_text", "gemma3"), permute_qk=False, norm_shift=1.0),
}


def arch_spec(arch: str | None, what: str = "The model") -> ArchSpec:
    """The spec for ``arch`` or a clear :class:`UnsupportedArchitectureError`."""
    spec = SUPPORTED.get(str(arch or ""))
    if spec is None:
        raise UnsupportedArchitectureError(
            f"{what} is a {arch or 'unknown'!r} model; the GGUF exporter supports "
            f"{', '.join(sorted(SUPPORTED))} models (SmolLM2, Gemma 3) only."
        )
    return spec


def tensor_name_map(spec: ArchSpec, n_blocks: int) -> gguf.TensorNameMap:
    return gguf.get_tensor_name_map(spec.gguf_arch, int(n_blocks))


def gguf_tensor_name(name_map: gguf.TensorNameMap, hf_name: str) -> str | None:
    """``model.layers.3.self_attn.q_proj.weight`` -> ``blk.3.attn_q.weight`` (None if unknown)."""
    for suffix in (".weight", ".bias"):
        if hf_name.endswith(suffix):
            base = name_map.get_name(hf_name[: -len(suffix)])
            return base + suffix if base is not None else None
    return name_map.get_name(hf_name)


def permute_qk_rows(rows: np.ndarray, n_head: int, n_head_kv: int | None = None) -> np.ndarray:
    """HF (rotate_half) row order -> llama.cpp (interleaved pairs) order, per head.

    ``rows`` has the output rows first (a weight ``(out, in)`` or a lora_B ``(out, r)``). The
    same reshape as llama.cpp's converter: within each head, the two halves are interleaved.
    """
    if n_head_kv is not None and n_head_kv != n_head:
        n_head = n_head_kv
    out = rows.shape[0]
    if n_head <= 0 or out % (2 * n_head):
        raise ExportError(f"Cannot permute a tensor of {out} rows into {n_head} heads; the model's head counts do not fit.")
    return (rows.reshape(n_head, 2, out // n_head // 2, *rows.shape[1:])
            .swapaxes(1, 2)
            .reshape(rows.shape))


def qk_heads(gguf_name: str, n_head: int, n_head_kv: int) -> int | None:
    """The head count the permutation uses for ``gguf_name``, or None when it is not Q/K."""
    if gguf_name.endswith("attn_q.weight"):
        return n_head
    if gguf_name.endswith("attn_k.weight"):
        return n_head_kv
    return None


def check_free_space(folder: Path, needed: int) -> None:
    """Refuse to start a write that cannot fit, before anything is written."""
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return
    if needed > free:
        raise ExportError(
            f"Not enough disk space in {folder}: the export needs about {needed / 1e6:.0f} MB "
            f"but {free / 1e6:.0f} MB is free."
        )


@contextmanager
def atomic_output(out_path: Path) -> Iterator[Path]:
    """:func:`engine.atomic.atomic_path` for a model file (readable by all, as any user file),
    with failures worded as one :class:`ExportError`. A reader never sees half a file."""
    out_path = Path(out_path)
    try:
        with atomic_path(out_path, permissions=0o644, make_parents=True) as tmp:
            yield tmp
    except OSError as exc:
        raise ExportError(f"Cannot write {out_path}: {_why(exc)}. Nothing was changed there.") from exc


def _why(exc: OSError) -> str:
    """The reason of a failed write in words. numpy's ``tofile`` (the GGUF writer's tensor
    writes) reports a full disk as a short write without an errno; that is what it means."""
    if exc.strerror:
        return exc.strerror
    if exc.errno is None and "requested and" in str(exc):
        return os.strerror(errno.ENOSPC)
    return str(exc)
