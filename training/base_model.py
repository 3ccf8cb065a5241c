"""Base models for training, taken from the installed GGUF files.

Runs in the training process (``python -m training.run``), on its main thread.

transformers can read a GGUF file and dequantize it (``from_pretrained(dir, gguf_file=...)``),
but that takes tens of seconds (every tensor is dequantized in numpy). So it is done once per
GGUF file and the result is kept as an ordinary Hugging Face folder (config.json,
model.safetensors, tokenizer files) under ``<data>/training/base-cache``; later loads read
the safetensors copy, which is memory-mapped and takes well under a second for these models.

The cache folder is keyed by the GGUF's name, size and both ends of its content (hashing
all of a 250 MB file on every start would cost more than the load it saves), and is written into a temporary
folder next to its final place and renamed, so a killed first run leaves no half cache.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from engine.atomic import atomic_dir

#: Architectures whose GGUF transformers can read and whose LoRA the project exports.
SUPPORTED_ARCHITECTURES = ("llama", "gemma3")

#: Bytes read from each end of the GGUF for the cache key.
KEY_BYTES = 4 << 20
#: Written last into a cache folder; a folder without it is not a finished cache.
MARKER = "source.json"


class BaseModelError(RuntimeError):
    """The base model cannot be used for training; str() says why and what to do."""


def gguf_architecture(gguf_path: Path) -> str:
    """``general.architecture`` of a GGUF file, read from its header only."""
    from gguf import GGUFReader

    gguf_path = Path(gguf_path)
    if not gguf_path.is_file():
        raise BaseModelError(f"The base model {gguf_path} does not exist.")
    try:
        reader = GGUFReader(str(gguf_path), "r")
        field = reader.fields.get("general.architecture")
        if field is None:
            raise BaseModelError(f"{gguf_path.name} has no general.architecture key; it is not a usable GGUF model.")
        return bytes(field.parts[field.data[0]]).decode("utf-8")
    except BaseModelError:
        raise
    except Exception as exc:  # gguf raises ValueError/struct errors on damaged files
        raise BaseModelError(f"{gguf_path.name} is not a readable GGUF file: {exc}") from exc


def check_architecture(gguf_path: Path) -> str:
    arch = gguf_architecture(gguf_path)
    if arch not in SUPPORTED_ARCHITECTURES:
        raise BaseModelError(
            f"{Path(gguf_path).name} is a {arch!r} model; training supports "
            f"{', '.join(SUPPORTED_ARCHITECTURES)} models (SmolLM2, Gemma 3).")
    return arch


def cache_key(gguf_path: Path) -> str:
    """Identity of a GGUF file: name, size and the first and last 4 MiB (header, metadata,
    first and last tensors). Cheap on a 250 MB file, and unlike the mtime it survives the
    file being copied or joined again from its parts."""
    path = Path(gguf_path)
    size = path.stat().st_size
    digest = hashlib.sha256(f"{path.name}\0{size}\0".encode())
    with open(path, "rb") as handle:
        digest.update(handle.read(KEY_BYTES))
        if size > 2 * KEY_BYTES:
            handle.seek(size - KEY_BYTES)
            digest.update(handle.read(KEY_BYTES))
    return digest.hexdigest()[:16]


def cache_dir_for(gguf_path: Path, cache_root: Path) -> Path:
    return Path(cache_root) / f"{Path(gguf_path).stem}-{cache_key(gguf_path)}"


def is_cached(gguf_path: Path, cache_root: Path) -> bool:
    return (cache_dir_for(gguf_path, cache_root) / MARKER).is_file()


def cached_base_dir(gguf_path: Path, cache_root: Path) -> Path:
    """The HF folder for ``gguf_path``, dequantizing the GGUF once (slow) if not cached yet."""
    gguf_path = Path(gguf_path).resolve()
    target = cache_dir_for(gguf_path, cache_root)
    if (target / MARKER).is_file():
        return target
    arch = check_architecture(gguf_path)

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    _quiet_progress()
    Path(cache_root).mkdir(parents=True, exist_ok=True)
    try:
        with atomic_dir(target, replace=False) as tmp:
            try:
                tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
                model = AutoModelForCausalLM.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name,
                                                             dtype=torch.float32)
            except (ValueError, KeyError, OSError) as exc:
                raise BaseModelError(f"transformers cannot read {gguf_path.name} ({arch}): {exc}") from exc
            # The GGUF "quantizer" only dequantized on load; the weights are plain fp32 now, but
            # transformers refuses to save a model that still carries it.
            model.hf_quantizer = None
            if getattr(model.config, "quantization_config", None) is not None:
                del model.config.quantization_config
            model.save_pretrained(tmp, safe_serialization=True)
            tokenizer.save_pretrained(tmp)
            (tmp / MARKER).write_text(json.dumps({
                "gguf": str(gguf_path), "architecture": arch, "size": gguf_path.stat().st_size,
                "mtime_ns": gguf_path.stat().st_mtime_ns}, indent=2), encoding="utf-8")
    except OSError:
        # Another process finished the same cache first (rename onto a non-empty folder).
        if not (target / MARKER).is_file():
            raise
    return target


def _quiet_progress() -> None:
    """No tqdm bars (they would interleave with a job's stderr log) and no tqdm monitor
    thread left running after the load."""
    import tqdm
    from transformers.utils import logging as hf_logging

    tqdm.tqdm.monitor_interval = 0
    hf_logging.disable_progress_bar()


def load_base(gguf_path: Path, cache_root: Path, dtype=None):
    """(model, tokenizer) for ``gguf_path`` from the cache, creating it on first use."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = cached_base_dir(gguf_path, cache_root)
    _quiet_progress()
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype or torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    return model, tokenizer


def encode(tokenizer, text: str) -> list[int]:
    """Token ids of plain text, no BOS/EOS: what llama.cpp's tokenizer gives with
    ``add_special=False`` (tested in tests/training/test_base_model.py)."""
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def document_start_ids(tokenizer) -> list[int]:
    """Tokens llama.cpp puts before a text (BOS for Gemma, none for SmolLM2): training blocks
    start documents the same way, so the model sees what it will see at inference."""
    ids = tokenizer("x", add_special_tokens=True)["input_ids"]
    plain = tokenizer("x", add_special_tokens=False)["input_ids"]
    return ids[: len(ids) - len(plain)] if ids[len(ids) - len(plain):] == plain else []
