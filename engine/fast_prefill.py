"""Long prompts through a fast-kernel copy of the weights (issue 21).

Runs inside the engine worker process, on its request thread.

llama.cpp processes a prompt as matrix products, and on x86 it has fast matrix kernels for
F16, Q8_0, Q4_0 and IQ4_NL weights but not for Q4_1, the format of the default chat model:
a grounded question's ~1,700 prompt tokens wait on the slow path before the first word.
Decoding one token at a time is the other way round (it reads the weights once per token,
and Q4_1 reads the fewest bytes), so neither format is best at both.

This module keeps both: an F16 copy of the same weights (dequantized from the shipped file
by llama.cpp's own ``llama_model_quantize``, so the numbers are the Q4_1 values, rounded to
F16) processes long prompts, and the keys and values it computes are handed to the Q4_1
model's context with ``llama_state_seq_get_data`` / ``llama_state_seq_set_data`` (same
architecture, same cache layout). The Q4_1 model then evaluates the prompt's last token
itself, so the first token is sampled from its own logits, and decodes the reply as before.
The copy sees only the prompt; LoRA adapters are not on it, so a request with adapters
never uses it. What the hand-over costs in quality is measured by
``benchmarks/fast_prefill.py`` (perplexity of the Q4_1 model after either cache).

The same copy also carries batched generation (many sequences decoded side by side:
translation of a whole file) for models in formats without fast *batched* kernels: each step
of a batch multiplies some tens of tokens by every weight matrix, which llama.cpp's fast
kernels cover for F16 but not for Q4_1 or the K-quants (Q4_K_M, the default translation
model's format). Unlike the prompt hand-over, the copy then produces the text itself: its
outputs are the same weights' greedy continuation with activations rounded to F16 instead
of 8 bits, so they can differ from the model's in a word here and there. What that costs
(or gains) is measured by ``benchmarks/batch_translation.py`` (chrF and lines/s of both).
Classification (label scoring) stays on the model's own weights.

The copy is a derived file of public weights (or of a model the user linked): it is kept in
the engine's cache folder (``EngineSettings.prefill_copies_dir``), named after the source
file's identity, written atomically, and made again when the source changes.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
from pathlib import Path

import llama_cpp

from engine.llama_context import EngineError

#: Weight formats that have no fast prompt kernels in llama.cpp's CPU back end, as
#: ``general.file_type`` names (see engine.gguf_check.file_type_name).
SLOW_PROMPT_FORMATS = frozenset({"Q4_1"})
#: Formats whose batched generation is faster on the F16 copy (measured: see the module doc).
SLOW_BATCH_FORMATS = frozenset({"Q4_1", "Q4_K_M"})
#: Batches narrower than this many sequences side by side stay on the model's own weights:
#: one sequence decodes faster on the fewer bytes of the quantized weights.
MIN_BATCH_ITEMS = 8
#: Bytes of parameters an F16 copy may take: the copy exists for small models, where the
#: prompt is what the user waits for; a large model's copy would cost more memory than it saves time.
MAX_COPY_BYTES = 1 << 30
#: Prompts needing fewer new tokens than this are evaluated by the model itself: the
#: hand-over copies the whole cache (tens of megabytes), which a short prompt does not repay.
MIN_TOKENS = 256


def _small_and_in(summary: dict, formats: frozenset) -> bool:
    """A model (its :func:`engine.gguf_check.summarize` dict) in one of ``formats`` whose F16
    copy stays within MAX_COPY_BYTES."""
    parameters = summary.get("parameter_count") or 0
    return summary.get("quantization") in formats and 0 < int(parameters) * 2 <= MAX_COPY_BYTES


def wants_copy(summary: dict) -> bool:
    """Whether a model's long prompts benefit from a copy."""
    return _small_and_in(summary, SLOW_PROMPT_FORMATS)


def wants_batch_copy(summary: dict) -> bool:
    """Whether a model's batched generation should run on its F16 copy."""
    return _small_and_in(summary, SLOW_BATCH_FORMATS)


def copy_path(model_path: str, folder: str | Path) -> Path:
    """Where the F16 copy of ``model_path`` lives: named after the file's path, size and time,
    so a changed or replaced source gets a new copy."""
    stat = os.stat(model_path)
    version = hashlib.sha256(f"{stat.st_size}\0{stat.st_mtime_ns}".encode()).hexdigest()[:12]
    return Path(folder) / f"{_family(model_path)}-{version}.f16.gguf"


def _family(model_path: str) -> str:
    """The copies' name prefix for one source path (its name and a digest of where it is)."""
    where = hashlib.sha256(os.path.realpath(model_path).encode()).hexdigest()[:12]
    return f"{Path(model_path).stem}-{where}"


def ensure_copy(model_path: str, folder: str | Path, threads: int = 2) -> Path:
    """The F16 copy of ``model_path`` in ``folder``, made now if missing (atomically: a copy
    cut short by a crash is never used). Older copies of the same model are removed."""
    target = copy_path(model_path, folder)
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = llama_cpp.LLAMA_FTYPE_MOSTLY_F16
    params.allow_requantize = True  # the source is quantized: dequantize it
    params.nthread = max(1, int(threads))
    rc = llama_cpp.llama_model_quantize(str(model_path).encode("utf-8"), str(partial).encode("utf-8"),
                                        ctypes.byref(params))
    if rc != 0 or not partial.exists():
        partial.unlink(missing_ok=True)
        raise EngineError(f"llama.cpp could not make a fast-prompt copy of {model_path} (code {rc}).")
    os.replace(partial, target)
    for old in target.parent.glob(f"{_family(model_path)}-*.f16.gguf"):
        if old != target:
            old.unlink(missing_ok=True)
    return target


def latin_copy_path(model_path: str, folder: str | Path) -> Path:
    """Where the vocabulary-cut F16 copy (engine.vocab_cut) of ``model_path`` lives. Its name does
    not end in ``.f16.gguf``, so making a new full copy never removes it as an old one."""
    full = copy_path(model_path, folder)
    return full.with_name(full.name.replace(".f16.gguf", ".latin-f16.gguf"))


def ensure_latin_copy(model_path: str, folder: str | Path, threads: int = 2) -> Path:
    """The vocabulary-cut F16 copy of ``model_path``, made now from the full copy if missing
    (atomically); older cut copies of the same model are removed. EngineError when the model's
    vocabulary cannot be cut."""
    from engine import vocab_cut

    target = latin_copy_path(model_path, folder)
    if target.exists():
        return target
    full = ensure_copy(model_path, folder, threads)
    vocab_cut.cut_to_latin(full, target)
    for old in target.parent.glob(f"{_family(model_path)}-*.latin-f16.gguf"):
        if old != target:
            old.unlink(missing_ok=True)
    return target


def batch_model(copy: str | Path, settings):
    """The copy loaded for batched generation only: its one-sequence chat context is never
    used, so it gets the smallest one llama.cpp allows instead of the model's full length."""
    import dataclasses

    from engine.llama_runtime import LoadedModel

    return LoadedModel(str(copy), dataclasses.replace(settings, n_ctx=256))


class FastPrefill:
    """The F16 copy loaded with a context like its model's, and the hand-over of its cache.

    Owned by one :class:`engine.llama_runtime.LoadedModel`, closed with it.
    """

    def __init__(self, copy: str | Path, settings):
        from engine.llama_runtime import LoadedModel

        self.model = LoadedModel(str(copy), settings)
        self._buffer = None

    def evaluate(self, target, prompt_tokens: list[int]) -> int:
        """Bring ``target``'s cache to hold ``prompt_tokens`` with logits for the last one:
        all but the last computed by the copy (re-using the copy's own cached prefix), the
        last by ``target``. Returns the tokens the copy evaluated, plus one."""
        fast = self.model
        fast._cancel = target._cancel  # a cancelled request stops the copy's evaluation too
        evaluated = fast.evaluate_prompt(prompt_tokens[:-1])
        size = llama_cpp.llama_state_seq_get_size(fast.ctx, 0)
        if self._buffer is None or len(self._buffer) < size:
            self._buffer = (ctypes.c_uint8 * size)()
        written = llama_cpp.llama_state_seq_get_data(fast.ctx, self._buffer, size, 0)
        target.clear_cache()
        if not written or llama_cpp.llama_state_seq_set_data(target.ctx, self._buffer, written, 0) != written:
            target.clear_cache()
            raise EngineError("The prompt's cache could not be handed from the fast copy to the model.")
        target.cached_tokens = list(prompt_tokens[:-1])
        target._decode(prompt_tokens[-1:])
        return evaluated + 1

    def close(self) -> None:
        self.model.close()
        self._buffer = None
