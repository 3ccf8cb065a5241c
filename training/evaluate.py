"""Measure GGUF models through llama.cpp: perplexity, generation speed, next-token agreement.

Torch-free on purpose: the figures must describe the files the app actually runs, through
the same llama.cpp the engine uses, not a transformers re-implementation of them. Runs in
the calling process (a training job, a benchmark, a test) on the calling thread; each call
loads its model(s), measures and frees them, so nothing stays resident between calls.

Perplexity is exp(mean negative log-likelihood) of every token after the first of each
window: the held-out text is joined, tokenized once, and cut into non-overlapping windows
of ``ctx`` tokens, each evaluated from an empty KV cache with a logit row for every
position. Windows are decoded in chunks so the logit buffer stays small even for
Gemma's 262k-word vocabulary.
"""

from __future__ import annotations

import ctypes
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import llama_cpp
import numpy as np

from engine.gguf_check import MalformedModelError, check_gguf
from engine.llama_context import EngineError, fill_sequence, free_llama, load_model, new_context, tokenize
from engine.llama_runtime import LoadedModel
from engine.settings import EngineSettings, physical_cores

__all__ = [
    "EvaluationError",
    "TokenStats",
    "gguf_generation_speed",
    "gguf_next_token_agreement",
    "gguf_perplexity",
    "token_stats",
    "tokenize_windows",
]

# Rows of logits requested per llama_decode call: 64 rows of Gemma's 262k vocabulary are
# 67 MB of floats; 512 rows would be half a gigabyte.
_CHUNK = 64
# Texts are joined with a blank line, as paragraphs of one document would be.
_JOIN = "\n\n"


class EvaluationError(ValueError):
    """A measurement cannot be made (no text, unreadable model, mismatched tokenizers)."""


@dataclass
class TokenStats:
    """Per-position results of one model over token windows (positions with a target only)."""

    nll: np.ndarray  # negative log-likelihood of each target token (float64)
    argmax: np.ndarray  # the model's most likely next token at each position (int64)

    @property
    def perplexity(self) -> float:
        return float(math.exp(self.nll.mean())) if self.nll.size else float("nan")


def _check_model(path: str | os.PathLike[str]) -> Path:
    try:
        check_gguf(path)
    except MalformedModelError as error:
        raise EvaluationError(f"Cannot evaluate {path}: {error}") from None
    return Path(path)


class _Scorer:
    """One model and a context whose batches return a logit row for every token."""

    def __init__(self, path: Path, ctx: int, lora_path: Path | None = None, threads: int | None = None):
        self.model = self.ctx = self.adapter = self.batch = None
        try:
            self.model = load_model(path)
            self.vocab = llama_cpp.llama_model_get_vocab(self.model)
            self.n_vocab = llama_cpp.llama_vocab_n_tokens(self.vocab)
            self.ctx = new_context(self.model, n_ctx=ctx, n_batch=_CHUNK, n_seq_max=1,
                                   n_threads=threads or physical_cores(),
                                   failure=f"llama.cpp could not create a {ctx}-token context for {path}.")
            self.memory = llama_cpp.llama_get_memory(self.ctx)
            if lora_path is not None:
                self.adapter = llama_cpp.llama_adapter_lora_init(self.model, os.fsencode(lora_path))
                if not self.adapter:
                    raise EvaluationError(f"llama.cpp could not load the LoRA adapter {lora_path} on {path.name}.")
                adapters = (llama_cpp.llama_adapter_lora_p_ctypes * 1)(self.adapter)
                scales = (ctypes.c_float * 1)(1.0)
                if llama_cpp.llama_set_adapters_lora(self.ctx, adapters, 1, scales) != 0:
                    raise EvaluationError(f"llama.cpp could not apply the LoRA adapter {lora_path}.")
            self.batch = llama_cpp.llama_batch_init(_CHUNK, 0, 1)
        except EngineError as error:
            self.close()
            raise EvaluationError(str(error)) from None
        except BaseException:
            self.close()
            raise

    def tokenize(self, text: str, add_special: bool) -> list[int]:
        return tokenize(self.vocab, text, add_special, parse_special=False)

    def bos(self) -> int | None:
        if not llama_cpp.llama_vocab_get_add_bos(self.vocab):
            return None
        token = llama_cpp.llama_vocab_bos(self.vocab)
        return int(token) if token is not None and token >= 0 else None

    def window(self, tokens: list[int]) -> TokenStats:
        """NLL of tokens[1:] and the argmax at positions 0..n-2, from an empty cache."""
        llama_cpp.llama_memory_clear(self.memory, True)
        targets = np.asarray(tokens[1:], dtype=np.int64)
        nll = np.empty(len(tokens) - 1, dtype=np.float64)
        top = np.empty(len(tokens) - 1, dtype=np.int64)
        batch = self.batch
        for start in range(0, len(tokens) - 1, _CHUNK):
            chunk = tokens[start : min(start + _CHUNK, len(tokens) - 1)]
            fill_sequence(batch, chunk, start)
            rc = llama_cpp.llama_decode(self.ctx, batch)
            if rc != 0:
                raise EvaluationError(f"llama.cpp failed to evaluate the text (code {rc}).")
            pointer = llama_cpp.llama_get_logits(self.ctx)
            logits = np.ctypeslib.as_array(pointer, shape=(len(chunk), self.n_vocab)).astype(np.float64)
            peak = logits.max(axis=1)
            log_z = peak + np.log(np.exp(logits - peak[:, None]).sum(axis=1))
            rows = np.arange(len(chunk))
            end = start + len(chunk)
            nll[start:end] = log_z - logits[rows, targets[start:end]]
            top[start:end] = logits.argmax(axis=1)
        return TokenStats(nll=nll, argmax=top)

    def close(self) -> None:
        free_llama(batch=self.batch, ctx=self.ctx, adapter=self.adapter, model=self.model)
        self.batch = self.ctx = self.adapter = self.model = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _texts(texts: list[str]) -> str:
    kept = [t for t in (texts or []) if isinstance(t, str) and t.strip()]
    if not kept:
        raise EvaluationError("No text to evaluate on: give at least one non-empty text.")
    return _JOIN.join(kept)


def _windows(scorer: _Scorer, texts: list[str], ctx: int) -> list[list[int]]:
    if ctx < 8:
        raise EvaluationError(f"The evaluation context must be at least 8 tokens, not {ctx}.")
    body = scorer.tokenize(_texts(texts), add_special=False)
    bos = scorer.bos()
    # Every window starts as a fresh document would: with the BOS token when the model uses one.
    step = ctx - 1 if bos is not None else ctx
    windows = []
    for start in range(0, len(body), step):
        window = ([bos] if bos is not None else []) + body[start : start + step]
        if len(window) >= 2:
            windows.append(window)
    if not windows:
        raise EvaluationError("The text is too short to evaluate: it needs at least two tokens.")
    return windows


def tokenize_windows(gguf_path, texts: list[str], ctx: int = 512) -> list[list[int]]:
    """The token windows :func:`gguf_perplexity` scores, with the model's own tokenizer."""
    path = _check_model(gguf_path)
    with _Scorer(path, ctx) as scorer:
        return _windows(scorer, texts, ctx)


def token_stats(gguf_path, windows: list[list[int]], ctx: int = 512, lora_path=None,
                threads: int | None = None) -> TokenStats:
    """Per-position NLL and argmax of one model over pre-tokenized ``windows``."""
    path = _check_model(gguf_path)
    with _Scorer(path, ctx, Path(lora_path) if lora_path else None, threads) as scorer:
        too_big = [t for w in windows for t in w if t >= scorer.n_vocab or t < 0]
        if too_big:
            raise EvaluationError(
                f"{path.name} has a vocabulary of {scorer.n_vocab} tokens but the text uses token {too_big[0]}: "
                "the models do not share a tokenizer."
            )
        parts = [scorer.window(w) for w in windows]
    return TokenStats(nll=np.concatenate([p.nll for p in parts]), argmax=np.concatenate([p.argmax for p in parts]))


def gguf_perplexity(gguf_path, texts: list[str], ctx: int = 512, lora_path: Path | None = None,
                    threads: int | None = None) -> float:
    """Perplexity of the model (optionally with a llama.cpp LoRA adapter) on ``texts``.

    ``threads`` None uses one per physical core; on a machine busy with other work, fewer
    threads than cores is much faster, because llama.cpp's threads wait for each other.
    """
    path = _check_model(gguf_path)
    with _Scorer(path, ctx, Path(lora_path) if lora_path else None, threads) as scorer:
        windows = _windows(scorer, texts, ctx)
        nll = np.concatenate([scorer.window(w).nll for w in windows])
    return float(math.exp(nll.mean()))


def gguf_next_token_agreement(gguf_a, gguf_b, texts: list[str], ctx: int = 512,
                              threads: int | None = None) -> float:
    """Fraction of positions in ``texts`` where both models' most likely next token is the same.

    Both models must share a tokenizer (a model and its quantizations do); the text is
    tokenized by ``gguf_a`` and the tokenizations are compared, so a mismatch is an error
    rather than a meaningless figure.
    """
    path_a, path_b = _check_model(gguf_a), _check_model(gguf_b)
    with _Scorer(path_a, ctx, None, threads) as scorer:
        windows = _windows(scorer, texts, ctx)
        stats_a = np.concatenate([scorer.window(w).argmax for w in windows])
    with _Scorer(path_b, ctx, None, threads) as scorer:
        if _windows(scorer, texts, ctx) != windows:
            raise EvaluationError(
                f"{path_a.name} and {path_b.name} tokenize the text differently, so their next tokens cannot be compared."
            )
        stats_b = np.concatenate([scorer.window(w).argmax for w in windows])
    return float((stats_a == stats_b).mean())


def gguf_generation_speed(gguf_path, prompt: str, n_tokens: int = 64, threads: int | None = None) -> float:
    """Decode speed in tokens/s: greedy generation of ``n_tokens`` after ``prompt``.

    Uses the engine's own :class:`LoadedModel` (flash attention, same context set-up) so the
    figure is what chat sees. End-of-generation tokens do not stop the run: the count of
    decode steps is fixed, as in llama-bench's text-generation test. Only the decode steps
    are timed, not loading or the prompt.
    """
    path = _check_model(gguf_path)
    if n_tokens < 2:
        raise EvaluationError("Measure at least 2 generated tokens.")
    settings = EngineSettings(n_ctx=max(256, len(prompt) // 2 + n_tokens + 64))
    if threads:
        settings.n_threads = settings.n_threads_batch = int(threads)
    try:
        model = LoadedModel(str(path), settings)
    except EngineError as error:
        raise EvaluationError(str(error)) from None
    try:
        tokens = model.tokenize(prompt or " ", add_special=True)
        if len(tokens) + n_tokens >= model.n_ctx:
            raise EvaluationError(f"The prompt ({len(tokens)} tokens) leaves no room for {n_tokens} tokens.")
        model.evaluate_prompt(tokens)
        chain = llama_cpp.llama_sampler_chain_init(llama_cpp.llama_sampler_chain_default_params())
        llama_cpp.llama_sampler_chain_add(chain, llama_cpp.llama_sampler_init_greedy())
        single = (llama_cpp.llama_token * 1)()
        try:
            started = time.perf_counter()
            for _ in range(n_tokens):
                single[0] = llama_cpp.llama_sampler_sample(chain, model.ctx, -1)
                rc = llama_cpp.llama_decode(model.ctx, llama_cpp.llama_batch_get_one(single, 1))
                if rc != 0:
                    raise EvaluationError(f"llama.cpp failed while generating (code {rc}).")
            elapsed = time.perf_counter() - started
        finally:
            llama_cpp.llama_sampler_free(chain)
    finally:
        model.close()
    return n_tokens / elapsed
