"""Quantize a GGUF model into another llama.cpp type with llama.cpp's own quantizer: the
quantization method's worker (it trains nothing, so it has no trainer).

Runs in whatever process calls it (the quantization lab job, a benchmark, a test), on the
calling thread; llama.cpp spreads the work over ``threads`` of its own. Torch-free: the
quantizer is llama.cpp's ``llama_model_quantize`` reached through llama-cpp-python's ctypes
layer, so the lab needs no converter of its own and produces exactly the files llama.cpp's
``llama-quantize`` tool would.

The output is written to a temporary file in the destination folder (engine.atomic) and
moved into place only after llama.cpp reports success and the file passed the header check,
so a crash, a full disk or a cancelled job never leaves a half file under ``dst``.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import threading
from pathlib import Path

from engine.atomic import atomic_path
from engine.gguf_check import MalformedModelError, check_gguf
from engine.llama_context import init_backend

__all__ = ["KNOWN_TYPES", "QuantizeError", "quantize_gguf", "source_type"]

# llama.cpp's llama_ftype values (llama.h, mirrored as LLAMA_FTYPE_MOSTLY_* in llama_cpp);
# looked up by name at call time so a renamed constant fails with a clear message.
_FTYPE_CONSTANTS = {
    "F32": "LLAMA_FTYPE_ALL_F32",
    "F16": "LLAMA_FTYPE_MOSTLY_F16",
    "BF16": "LLAMA_FTYPE_MOSTLY_BF16",
    "Q8_0": "LLAMA_FTYPE_MOSTLY_Q8_0",
    "Q6_K": "LLAMA_FTYPE_MOSTLY_Q6_K",
    "Q5_0": "LLAMA_FTYPE_MOSTLY_Q5_0",
    "Q5_1": "LLAMA_FTYPE_MOSTLY_Q5_1",
    "Q5_K_M": "LLAMA_FTYPE_MOSTLY_Q5_K_M",
    "Q5_K_S": "LLAMA_FTYPE_MOSTLY_Q5_K_S",
    "Q4_0": "LLAMA_FTYPE_MOSTLY_Q4_0",
    "Q4_1": "LLAMA_FTYPE_MOSTLY_Q4_1",
    "Q4_K_M": "LLAMA_FTYPE_MOSTLY_Q4_K_M",
    "Q4_K_S": "LLAMA_FTYPE_MOSTLY_Q4_K_S",
    "Q3_K_M": "LLAMA_FTYPE_MOSTLY_Q3_K_M",
    "Q2_K": "LLAMA_FTYPE_MOSTLY_Q2_K",
}

#: Every type :func:`quantize_gguf` can write.
KNOWN_TYPES = tuple(_FTYPE_CONSTANTS)

# Tensor types that hold the full-precision weights; anything else is already quantized and
# needs allow_requantize (which dequantizes to F32 first, so the result carries the source's
# rounding error on top of its own).
_FULL_PRECISION = {"F32", "F16", "BF16"}

# llama.cpp's quantizer keeps global state while it runs (the backend, its log callback);
# one quantization at a time per process keeps messages and memory predictable.
_lock = threading.Lock()


class QuantizeError(ValueError):
    """A quantization the user asked for cannot be done; ``str(e)`` says why in one sentence."""


def _ftype(qtype: str) -> int:
    import llama_cpp

    key = str(qtype).strip().upper()
    name = _FTYPE_CONSTANTS.get(key)
    value = getattr(llama_cpp, name, None) if name else None
    if value is None:
        known = ", ".join(sorted(k for k, v in _FTYPE_CONSTANTS.items() if hasattr(llama_cpp, v)))
        raise QuantizeError(f"Unknown quantization type {qtype!r}; choose one of: {known}.")
    return int(value)


def source_type(src: str | os.PathLike[str]) -> str:
    """The model's llama.cpp type ("F16", "Q4_1", "Q4_K_M", ...).

    Read from ``general.file_type`` when the file states it (Gemma 3's Q4_K_M keeps its huge
    embedding matrix in Q8_0, so counting parameters would misname it), else the weight type
    holding most parameters of the matrices. Raises :class:`QuantizeError` when ``src`` is
    not a valid GGUF model.
    """
    import gguf

    header = _checked(Path(src))
    file_type = header.metadata.get("general.file_type")
    if isinstance(file_type, int) and not isinstance(file_type, bool):
        try:
            name = gguf.LlamaFileType(file_type).name
        except ValueError:
            name = None
        if name and name != "GUESSED":
            return "F32" if name == "ALL_F32" else name.removeprefix("MOSTLY_")
    weights: dict[str, int] = {}
    for tensor in header.tensors:
        # 1-D tensors (norms, biases) stay F32 in every type; only matrices tell the type.
        if len(tensor.shape) >= 2:
            weights[tensor.type_name] = weights.get(tensor.type_name, 0) + tensor.n_elements
    return max(weights, key=weights.get) if weights else "F32"


def _checked(src: Path):
    try:
        return check_gguf(src)
    except MalformedModelError as error:
        raise QuantizeError(f"Cannot quantize {src}: {error}") from None


def _is_quantized(header) -> bool:
    return any(len(t.shape) >= 2 and t.type_name not in _FULL_PRECISION for t in header.tensors)


# Below this much free space after a failed write, the failure is taken to be a full disk.
_DISK_FULL_BYTES = 64 * 1024 * 1024


def _free_bytes(folder: Path) -> int | None:
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return None


def quantize_gguf(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    qtype: str,
    threads: int | None = None,
    allow_requantize: bool = True,
) -> Path:
    """Write ``src`` quantized to ``qtype`` at ``dst`` and return ``dst``.

    ``qtype`` is one of :data:`KNOWN_TYPES` (the lab compares :data:`training.quantize.config.QUANT_TYPES`).
    A source that is itself quantized (the default pack ships Q4_1 and Q4_K_M) is
    dequantized to F32 and requantized when ``allow_requantize`` is true: the result is a
    valid file of the asked type, but it keeps the source's rounding error, so comparing
    such files measures requantization, not quantization from the original weights.
    ``threads`` None lets llama.cpp use every core.

    Raises :class:`QuantizeError` for an unknown type, a source that is not a valid GGUF,
    a quantized source with ``allow_requantize`` false, ``dst`` equal to ``src``, or a
    failure inside llama.cpp. Never leaves a partial file at ``dst``.
    """
    import llama_cpp

    src_path, dst_path = Path(src), Path(dst)
    ftype = _ftype(qtype)
    header = _checked(src_path)
    if _is_quantized(header) and not allow_requantize:
        raise QuantizeError(
            f"{src_path.name} is already quantized ({source_type(src_path)}); requantizing it "
            "adds rounding error, so allow it explicitly or start from an F16/BF16/F32 model."
        )
    try:
        if dst_path.exists() and dst_path.resolve() == src_path.resolve():
            raise QuantizeError("The quantized file must not replace its own source; choose another name.")
    except OSError:
        pass
    folder = dst_path.parent
    try:
        with atomic_path(dst_path, permissions=0o644, make_parents=True) as tmp:
            params = llama_cpp.llama_model_quantize_default_params()
            params.ftype = ftype
            params.nthread = int(threads) if threads else 0  # 0: llama.cpp uses every core
            params.allow_requantize = bool(allow_requantize)
            with _lock:
                # The engine's back-end set-up also routes llama.cpp's per-tensor log lines to
                # logging (warnings only), so a job's output stays readable.
                init_backend()
                rc = llama_cpp.llama_model_quantize(
                    os.fsencode(src_path), os.fsencode(tmp), ctypes.byref(params)
                )
            if rc != 0:
                # llama.cpp reports a full disk only as "iostream error" in its log; measured while
                # its partial file still takes the space, the free space tells which failure it was.
                free = _free_bytes(folder)
                if free is not None and free < _DISK_FULL_BYTES:
                    raise QuantizeError(
                        f"The disk holding {folder} is full ({free // (1024 * 1024)} MB free), so "
                        f"{dst_path.name} could not be written; free some space and try again."
                    )
                raise QuantizeError(
                    f"llama.cpp could not quantize {src_path.name} to {qtype} (code {rc}); "
                    "the model's architecture may not support this type."
                )
            # What llama.cpp wrote must itself be a sound model before it takes the name.
            try:
                check_gguf(tmp)
            except MalformedModelError as error:
                raise QuantizeError(f"The quantized file is not a valid model: {error}") from None
        return dst_path
    except OSError as error:
        raise QuantizeError(f"Cannot write {dst_path}: {error.strerror or error}.") from None
