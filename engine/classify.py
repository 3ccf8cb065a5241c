"""Many short sequences at once: label scoring for classification and greedy batched
continuation (translation of many segments), on a second llama.cpp context.

Runs only inside the engine worker process, on its request thread (llama.cpp contexts are
not thread-safe); :meth:`BatchContext.request_cancel` is the one call another thread may make.

Why a second context: the chat context of :class:`engine.llama_runtime.LoadedModel` has one
sequence and a tracked cache that chat and completion re-use; this one has many sequences
over the same weights (no second copy of the model), so neither disturbs the other.

How it is fast: the shared prefix (instructions and few-shot examples) is evaluated once
into sequence 0 of a KV cache that is *unified* across sequences, so copying it to
sequence 1..N (``llama_memory_seq_cp``) only tags the same cells with more sequence ids:
no keys or values are copied or recomputed. The per-item tokens of many items then go
into one ``llama_batch``, each on its own sequence, with a logit row requested only
where it is needed (each sequence's last token). A single decode of a 135M-270M model is
bound by reading the weights (Gemma's 262k-word output matrix alone is ~100 MB), so
decoding 16 sequences' next tokens in one batch costs little more than one.
"""

from __future__ import annotations

import codecs
import ctypes
import threading
from dataclasses import dataclass, field
from typing import Callable

import llama_cpp
import numpy as np

from engine.llama_context import EngineError, free_llama, new_context
from engine.llama_runtime import Cancelled, _StopMatcher


@dataclass
class BatchConfig:
    """Shape of the batch context. Defaults measured on a 2-core CPU (SmolLM2, Gemma 3 270M)."""

    # Sequences in flight (sequence 0 keeps the prefix). Each token's attention spans every
    # used cell of the unified cache (others' are masked), so very many sequences cost
    # attention time; 32 fills a 512-token batch with review-length texts.
    n_seq: int = 32
    # Tokens per llama_decode call; 512 is llama.cpp's own default micro-batch.
    n_batch: int = 512
    # Cells of the unified KV cache shared by the prefix and all sequences in flight:
    # 8192 holds a 1k-token prefix plus 16 translation segments of ~400 tokens (~150 MB
    # of KV for Gemma 3 270M, ~190 MB for SmolLM2).
    n_ctx: int = 8192
    # A text longer than this many tokens is cut for scoring (head and tail kept): the
    # label of a review is decided long before token 256, and one long text must not
    # crowd out a whole batch.
    max_text_tokens: int = 256


@dataclass
class _Slot:
    index: int  # which item
    seq: int  # llama.cpp sequence id
    todo: list[int]  # tokens of the item not yet decoded
    pos: int  # next position
    max_tokens: int
    generated: int = 0
    parts: list[str] = field(default_factory=list)
    decoder: object = None
    stops: _StopMatcher | None = None
    batch_index: int = -1  # row of this slot's logits in the last batch, -1 if none


class BatchContext:
    """A multi-sequence llama.cpp context on a loaded model's weights."""

    def __init__(self, model, config: BatchConfig | None = None):
        self.model = model
        self.config = config or BatchConfig()
        self._cancel = threading.Event()
        # ctypes holds callbacks weakly: keep ours alive as long as the context.
        self._abort_cb = llama_cpp.ggml_abort_callback(lambda _data: self._cancel.is_set())
        settings = model.settings
        # kv_unified: the shared prefix lives once; copies are tags, not data.
        self.ctx = new_context(model.model, n_ctx=self.config.n_ctx, n_batch=self.config.n_batch,
                               n_threads=settings.n_threads, n_threads_batch=settings.n_threads_batch,
                               n_seq_max=self.config.n_seq, flash_attn=settings.flash_attn, kv_unified=True,
                               failure="llama.cpp could not create a batch context; there may not be enough memory.")
        self.n_ctx = llama_cpp.llama_n_ctx(self.ctx)
        self.memory = llama_cpp.llama_get_memory(self.ctx)
        self.n_vocab = model.n_vocab
        #: Tokens of the shared prefix held by sequence 0.
        self.prefix: list[int] = []
        #: Tokens the last :meth:`generate` chose (end tokens included: each cost a logits row).
        self.generated_tokens = 0
        self._batch = llama_cpp.llama_batch_init(int(self.config.n_batch), 0, 1)

    # ----- cancellation -----------------------------------------------------------------
    def request_cancel(self) -> None:
        """Thread-safe: the running decode stops at its next graph node."""
        self._cancel.set()

    def _arm(self, cancel: threading.Event | None) -> None:
        self._cancel = cancel if cancel is not None else threading.Event()

    # ----- prefix -----------------------------------------------------------------------
    def set_prefix(self, tokens: list[int], cancel: threading.Event | None = None) -> int:
        """Make sequence 0 hold ``tokens``, re-using the cached common start. Returns how
        many tokens were evaluated (0 when the prefix is already there)."""
        self._arm(cancel)
        limit = self.n_ctx // 2
        if len(tokens) > limit:
            raise EngineError(f"The instructions and examples are {len(tokens)} tokens long; at most {limit} fit. "
                              "Use fewer or shorter examples.")
        common = 0
        for old, new in zip(self.prefix, tokens):
            if old != new:
                break
            common += 1
        # Drop every other sequence too: nothing is in flight between requests.
        if common == 0:
            llama_cpp.llama_memory_clear(self.memory, True)
        else:
            llama_cpp.llama_memory_seq_rm(self.memory, -1, common, -1)
        del self.prefix[common:]
        todo = tokens[common:]
        step = int(self.config.n_batch)
        for start in range(0, len(todo), step):
            chunk = todo[start:start + step]
            self._fill([(t, len(self.prefix) + i, 0, False) for i, t in enumerate(chunk)])
            self._run()
            self.prefix.extend(chunk)
        return len(todo)

    # ----- batches ----------------------------------------------------------------------
    def _fill(self, entries: list[tuple[int, int, int, bool]]) -> None:
        batch = self._batch
        for i, (token, pos, seq, logits) in enumerate(entries):
            batch.token[i] = token
            batch.pos[i] = pos
            batch.n_seq_id[i] = 1
            batch.seq_id[i][0] = seq
            batch.logits[i] = 1 if logits else 0
        batch.n_tokens = len(entries)

    def _run(self) -> None:
        if self._cancel.is_set():
            raise Cancelled()
        llama_cpp.llama_set_abort_callback(self.ctx, self._abort_cb, None)
        try:
            rc = llama_cpp.llama_decode(self.ctx, self._batch)
        finally:
            llama_cpp.llama_set_abort_callback(self.ctx, llama_cpp.ggml_abort_callback(), None)
        if rc == 0:
            return
        if rc == 2 or self._cancel.is_set():
            raise Cancelled()
        if rc == 1:
            raise EngineError("The batch context is full; try fewer or shorter texts at once.")
        raise EngineError(f"llama.cpp failed to evaluate a batch (code {rc}).")

    def _drop_sequences(self) -> None:
        """Forget every sequence but the prefix (after a batch, a failure or a cancel)."""
        llama_cpp.llama_memory_seq_rm(self.memory, -1, len(self.prefix), -1)
        for seq in range(1, int(self.config.n_seq)):
            llama_cpp.llama_memory_seq_rm(self.memory, seq, -1, -1)

    def _row(self, batch_index: int) -> np.ndarray:
        pointer = llama_cpp.llama_get_logits_ith(self.ctx, batch_index)
        return np.ctypeslib.as_array(ctypes.cast(pointer, ctypes.POINTER(ctypes.c_float)), shape=(self.n_vocab,))

    def clip(self, tokens: list[int]) -> list[int]:
        """Cut an over-long text for scoring: keep its opening and its end, where verdicts sit."""
        limit = int(self.config.max_text_tokens)
        if len(tokens) <= limit:
            return tokens
        head = limit // 2
        return tokens[:head] + tokens[-(limit - head):]

    # ----- scoring ----------------------------------------------------------------------
    def score(self, suffixes: list[list[int]], label_tokens: list[int], cancel: threading.Event | None = None,
              on_batch: Callable[[int, list[list[float]]], None] | None = None) -> list[list[float]]:
        """For each suffix (tokens that follow the prefix), the log-probability over the
        whole vocabulary of each label token as the next token.

        ``on_batch(start, rows)`` receives each decoded batch's results as they come, so a
        caller that is cancelled (:class:`Cancelled`) keeps everything scored before.
        """
        self._arm(cancel)
        labels = np.asarray(label_tokens, dtype=np.int64)
        pending = [self.clip(list(s)) for s in suffixes]
        for i, tokens in enumerate(pending):
            if not tokens:
                raise EngineError(f"Item {i + 1} has no tokens to score.")
        n_prefix = len(self.prefix)
        max_seqs = int(self.config.n_seq) - 1
        budget = int(self.config.n_batch)
        results: list[list[float]] = []
        index = 0
        try:
            while index < len(pending):
                group: list[list[int]] = []
                used = 0
                while index + len(group) < len(pending) and len(group) < max_seqs:
                    nxt = pending[index + len(group)]
                    if group and used + len(nxt) > budget:
                        break
                    group.append(nxt)
                    used += len(nxt)
                if used > budget:  # one text longer than a batch: decode it in pieces
                    rows = [self._score_long(group[0], labels)]
                else:
                    entries = []
                    for j, tokens in enumerate(group):
                        llama_cpp.llama_memory_seq_cp(self.memory, 0, j + 1, 0, n_prefix)
                        last = len(tokens) - 1
                        entries.extend((t, n_prefix + k, j + 1, k == last) for k, t in enumerate(tokens))
                    self._fill(entries)
                    self._run()
                    rows, end = [], 0
                    for tokens in group:
                        end += len(tokens)
                        rows.append(self._label_logprobs(end - 1, labels))
                self._drop_sequences()
                if on_batch is not None:
                    on_batch(index, rows)
                results.extend(rows)
                index += len(group)
        except BaseException:
            self._drop_sequences()
            raise
        return results

    def _score_long(self, tokens: list[int], labels) -> list[float]:
        n_prefix = len(self.prefix)
        llama_cpp.llama_memory_seq_cp(self.memory, 0, 1, 0, n_prefix)
        step = int(self.config.n_batch)
        chunk: list[int] = []
        for start in range(0, len(tokens), step):
            chunk = tokens[start:start + step]
            last = start + len(chunk) == len(tokens)
            self._fill([(t, n_prefix + start + k, 1, last and k == len(chunk) - 1) for k, t in enumerate(chunk)])
            self._run()
        return self._label_logprobs(len(chunk) - 1, labels)

    def _label_logprobs(self, batch_index: int, labels) -> list[float]:
        row = self._row(batch_index)
        top = float(row.max())
        log_z = top + float(np.log(np.exp(row - top).sum()))
        return [float(row[t]) - log_z for t in labels]

    # ----- greedy continuation ----------------------------------------------------------
    def generate(self, suffixes: list[list[int]], max_tokens: list[int], stop: list[str],
                 cancel: threading.Event | None = None,
                 on_text: Callable[[int, str], None] | None = None,
                 on_done: Callable[[int, str, str], None] | None = None,
                 max_parallel: int | None = None) -> list[str]:
        """Greedily continue prefix + each suffix until an end token, a stop string or its
        ``max_tokens``. Sequences run side by side (continuous batching: a finished one's
        slot is refilled at once). ``on_text(index, text)`` streams each item's text;
        ``on_done(index, text, finish_reason)`` reports each finished item, so a caller that
        is cancelled keeps the items finished before."""
        self._arm(cancel)
        self.generated_tokens = 0
        n_prefix = len(self.prefix)
        budget = int(self.config.n_batch)
        n_slots = min(int(self.config.n_seq) - 1, max_parallel or 10**9)
        results: list[str | None] = [None] * len(suffixes)
        queue = list(range(len(suffixes)))
        queue.reverse()
        active: dict[int, _Slot] = {}
        free = list(range(n_slots, 0, -1))
        for i, tokens in enumerate(suffixes):
            if not tokens:
                raise EngineError(f"Item {i + 1} has no tokens to continue.")
            if n_prefix + len(tokens) + int(max_tokens[i]) >= self.n_ctx:
                raise EngineError(f"Item {i + 1} is too long for the context ({len(tokens)} tokens).")
        cells_used = n_prefix

        def finish(slot: _Slot, reason: str) -> None:
            nonlocal cells_used
            tail = (slot.stops.flush() if not slot.stops.hit else "") + slot.decoder.decode(b"", final=True)
            if tail:
                slot.parts.append(tail)
                if on_text is not None:
                    on_text(slot.index, tail)
            text = "".join(slot.parts)
            results[slot.index] = text
            llama_cpp.llama_memory_seq_rm(self.memory, slot.seq, -1, -1)
            cells_used -= len(suffixes[slot.index]) + slot.max_tokens
            del active[slot.seq]
            free.append(slot.seq)
            if on_done is not None:
                on_done(slot.index, text, reason)

        try:
            while queue or active:
                # Admit new items while a slot and room in the cache are free.
                while queue and free:
                    index = queue[-1]
                    need = len(suffixes[index]) + int(max_tokens[index])
                    if active and cells_used + need >= self.n_ctx:
                        break
                    queue.pop()
                    seq = free.pop()
                    llama_cpp.llama_memory_seq_cp(self.memory, 0, seq, 0, n_prefix)
                    active[seq] = _Slot(index=index, seq=seq, todo=list(suffixes[index]), pos=n_prefix,
                                        max_tokens=int(max_tokens[index]),
                                        decoder=codecs.getincrementaldecoder("utf-8")("replace"),
                                        stops=_StopMatcher(list(stop)))
                    cells_used += need
                # One batch: every generating slot's next token first, then prompt tokens.
                entries: list[tuple[int, int, int, bool]] = []
                for slot in active.values():
                    slot.batch_index = -1
                    if len(slot.todo) == 1 and slot.generated > 0:
                        slot.batch_index = len(entries)
                        entries.append((slot.todo.pop(), slot.pos, slot.seq, True))
                        slot.pos += 1
                for slot in active.values():
                    if slot.batch_index >= 0 or not slot.todo:
                        continue
                    room = budget - len(entries)
                    if room <= 0:
                        break
                    take = slot.todo[:room]
                    del slot.todo[:len(take)]
                    for k, t in enumerate(take):
                        last = not slot.todo and k == len(take) - 1
                        if last:
                            slot.batch_index = len(entries)
                        entries.append((t, slot.pos, slot.seq, last))
                        slot.pos += 1
                self._fill(entries)
                self._run()
                for slot in list(active.values()):
                    if slot.batch_index < 0:
                        continue
                    token = int(np.argmax(self._row(slot.batch_index)))
                    self.generated_tokens += 1
                    if llama_cpp.llama_vocab_is_eog(self.model.vocab, token):
                        finish(slot, "stop")
                        continue
                    slot.generated += 1
                    text = slot.stops.feed(slot.decoder.decode(self.model._piece(token, special=False)))
                    if text:
                        slot.parts.append(text)
                        if on_text is not None:
                            on_text(slot.index, text)
                    if slot.stops.hit:
                        finish(slot, "stop")
                    elif slot.generated >= slot.max_tokens:
                        finish(slot, "length")
                    else:
                        slot.todo = [token]
        finally:
            self._drop_sequences()
        return [r or "" for r in results]

    def close(self) -> None:
        free_llama(batch=getattr(self, "_batch", None), ctx=getattr(self, "ctx", None))
        self._batch = self.ctx = None
