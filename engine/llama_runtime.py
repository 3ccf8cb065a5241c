"""A loaded GGUF model driven through llama.cpp's C API (llama-cpp-python's ctypes layer).

Runs inside the engine worker process, on its request thread (and in a training job that
measures or samples a GGUF, on its main thread); the one exception is
:meth:`LoadedModel.request_cancel`, which the worker's stdin reader thread calls. Loading,
context set-up and freeing are :mod:`engine.llama_context`'s, shared with every caller.

Why the low-level API and not ``llama_cpp.Llama``: the high-level class samples in Python
(copying the whole logit row into numpy each token) and leaves flash attention off, which
costs about a fifth of the decode rate of a 135M model. Here sampling is llama.cpp's own
sampler chain and the Python work per token is one decode call and one detokenise.

Why one module of over 500 lines: the generation loop, the draft verification and the prompt
evaluation (with its hand-over to the fast-prompt copy) all move the same tracked KV cache
(``cached_tokens``) of one context; split apart, each would have to keep that record in step.
"""

from __future__ import annotations

import codecs
import ctypes
import random
import sys
import threading
import time
from dataclasses import dataclass, field

import llama_cpp

from engine.llama_context import EngineError, fill_sequence, free_llama, load_model, new_context, tokenize
from engine import fast_prefill
from engine.prompt_lookup import DraftBudget, PromptLookup
from engine.settings import EngineSettings, SamplingParams


class Cancelled(Exception):
    """The request was cancelled by its caller; the partial text is in ``text``."""

    def __init__(self, text: str = ""):
        super().__init__("cancelled")
        self.text = text


@dataclass
class GenerationResult:
    text: str
    finish_reason: str  # "stop" (end token or stop word), "length", "cancelled"
    metrics: dict = field(default_factory=dict)


class _StopMatcher:
    """Holds back text that could be the start of a stop string, so none is ever shown."""

    def __init__(self, stops: list[str]):
        self.stops = [s for s in stops if s]
        self.pending = ""
        self.hit = False

    def feed(self, text: str) -> str:
        if not self.stops:
            return text
        self.pending += text
        for stop in self.stops:
            index = self.pending.find(stop)
            if index >= 0:
                out, self.pending, self.hit = self.pending[:index], "", True
                return out
        keep = 0
        for stop in self.stops:
            for n in range(min(len(stop) - 1, len(self.pending)), 0, -1):
                if self.pending.endswith(stop[:n]):
                    keep = max(keep, n)
                    break
        out = self.pending[: len(self.pending) - keep]
        self.pending = self.pending[len(self.pending) - keep :]
        return out

    def flush(self) -> str:
        out, self.pending = self.pending, ""
        return out


class LoadedModel:
    """One model and one llama.cpp context (sequence 0), with its KV cache contents tracked."""

    #: Most drafted tokens verified in one batch (prompt lookup); the budget usually asks fewer.
    MAX_DRAFT = 8
    #: Seconds between two calls of generate's ``on_tick``.
    TICK_S = 0.1

    def __init__(self, path: str, settings: EngineSettings):
        self.path = path
        self.settings = settings
        self._cancel = threading.Event()
        # ctypes keeps only a weak hold on callbacks: keep ours alive as long as the context.
        self._abort_cb = llama_cpp.ggml_abort_callback(lambda _data: self._cancel.is_set())

        started = time.perf_counter()
        self.model = load_model(path, use_mmap=settings.use_mmap)
        self.vocab = llama_cpp.llama_model_get_vocab(self.model)
        self.n_vocab = llama_cpp.llama_vocab_n_tokens(self.vocab)
        n_ctx_train = llama_cpp.llama_model_n_ctx_train(self.model) if hasattr(llama_cpp, "llama_model_n_ctx_train") else 0
        n_ctx = int(settings.n_ctx)
        if n_ctx_train and n_ctx > n_ctx_train:
            n_ctx = n_ctx_train
        try:
            self.ctx = new_context(
                self.model, n_ctx=n_ctx, n_batch=settings.n_batch, n_threads=settings.n_threads,
                n_threads_batch=settings.n_threads_batch, flash_attn=settings.flash_attn, perf=True,
                failure=f"llama.cpp could not create a context of {n_ctx} tokens for {path}; try a shorter context length.")
        except BaseException:
            self.close()
            raise
        self.n_ctx = llama_cpp.llama_n_ctx(self.ctx)
        self.memory = llama_cpp.llama_get_memory(self.ctx)
        self.load_ms = (time.perf_counter() - started) * 1000.0
        #: Tokens whose keys and values sit in the KV cache, in order (sequence 0).
        self.cached_tokens: list[int] = []
        self._piece_buffer = ctypes.create_string_buffer(256)
        #: LoRA adapters loaded on these weights: (path, size, mtime_ns, inode) -> llama.cpp handle.
        self._adapters: dict[tuple, object] = {}
        #: The adapters applied to the contexts now, as ((key, scale), ...); () is the base model.
        self.active_adapters: tuple[tuple[tuple, float], ...] = ()
        #: An F16 copy that processes long prompts (engine.fast_prefill), when attached, and
        #: what makes it on the first long prompt (returns None when it cannot).
        self.fast_prefill = None
        self.fast_prefill_factory = None
        #: F16 copies' own LoadedModels for batched generation (see batch_context) by kind —
        #: "f16" the full copy, "latin" its vocabulary cut (engine.vocab_cut) — once made (None:
        #: could not be), and what makes each on the first batch that wants it (None when it cannot).
        self.batch_copies: dict[str, object] = {}
        self.batch_copy_factories: dict[str, object] = {}
        #: Whether the last prompt was evaluated by that copy.
        self.prompt_by_copy = False
        #: A one-token step's cost and an extra batch token's, as the last speculative reply
        #: measured them (engine.prompt_lookup.DraftBudget): the next reply starts from them.
        self._draft_costs: tuple[float | None, float | None] = (None, None)

    # ----- metadata ---------------------------------------------------------------------
    def meta(self, key: str) -> str | None:
        buf = ctypes.create_string_buffer(1 << 16)
        n = llama_cpp.llama_model_meta_val_str(self.model, key.encode(), buf, len(buf))
        if n < 0:
            return None
        return buf.value.decode("utf-8", "replace")

    def chat_template(self) -> str | None:
        raw = llama_cpp.llama_model_chat_template(self.model, None)
        return raw.decode("utf-8", "replace") if raw else None

    def token_text(self, token: int, special: bool = True) -> str:
        return self._piece(token, special).decode("utf-8", "replace")

    def special_token_text(self, getter: str) -> str:
        fn = getattr(llama_cpp, getter, None)
        if fn is None:
            return ""
        token = fn(self.vocab)
        if token is None or token < 0:
            return ""
        return self.token_text(token)

    # ----- tokens -----------------------------------------------------------------------
    def tokenize(self, text: str, add_special: bool = True, parse_special: bool = True) -> list[int]:
        return tokenize(self.vocab, text, add_special, parse_special)

    def _piece(self, token: int, special: bool = True) -> bytes:
        n = llama_cpp.llama_token_to_piece(self.vocab, token, self._piece_buffer, len(self._piece_buffer), 0, special)
        if n < 0:
            bigger = ctypes.create_string_buffer(-n)
            n = llama_cpp.llama_token_to_piece(self.vocab, token, bigger, len(bigger), 0, special)
            return bigger.raw[:n]
        return self._piece_buffer.raw[:n]

    def detokenize(self, tokens: list[int]) -> str:
        return b"".join(self._piece(t, special=False) for t in tokens).decode("utf-8", "replace")

    # ----- cancellation -----------------------------------------------------------------
    def request_cancel(self) -> None:
        """Thread-safe: stops the running prompt evaluation or generation soon."""
        self._cancel.set()
        # The abort callback reads self._cancel at call time, so a request's own flag
        # (passed to generate) is what it sees.

    # ----- evaluation -------------------------------------------------------------------
    def _decode(self, tokens: list[int]) -> None:
        array = (llama_cpp.llama_token * len(tokens))(*tokens)
        batch = llama_cpp.llama_batch_get_one(array, len(tokens))
        rc = llama_cpp.llama_decode(self.ctx, batch)
        if rc == 0:
            self.cached_tokens.extend(tokens)
            return
        # Whatever part of the batch made it into the cache is not tracked: drop it.
        self._truncate_cache(len(self.cached_tokens))
        if rc == 2 or self._cancel.is_set():
            raise Cancelled()
        if rc == 1:
            raise EngineError("The context is full: no room left in the KV cache for this request.")
        raise EngineError(f"llama.cpp failed to evaluate the prompt (code {rc}).")

    def _truncate_cache(self, keep: int) -> None:
        if keep < len(self.cached_tokens) or keep == 0:
            if not llama_cpp.llama_memory_seq_rm(self.memory, 0, keep, -1):
                llama_cpp.llama_memory_clear(self.memory, True)
                keep = 0
        del self.cached_tokens[keep:]

    def clear_cache(self) -> None:
        llama_cpp.llama_memory_clear(self.memory, True)
        self.cached_tokens.clear()

    def evaluate_prompt(self, prompt_tokens: list[int]) -> int:
        """Bring the KV cache to hold ``prompt_tokens``, re-using the longest cached prefix.

        Returns how many tokens had to be evaluated. The abort callback is installed only
        here: checking it at every graph node costs nothing next to a batch of hundreds of
        tokens, but it would slow one-token decode steps, where the generation loop checks
        for cancellation between tokens anyway.
        """
        self.prompt_by_copy = False
        if len(prompt_tokens) >= self.n_ctx:
            raise EngineError(
                f"The prompt is {len(prompt_tokens)} tokens long but the context holds {self.n_ctx}; "
                "shorten it or raise the context length in Settings."
            )
        common = 0
        for cached, new in zip(self.cached_tokens, prompt_tokens):
            if cached != new:
                break
            common += 1
        # The last prompt token must be evaluated again so that its logits exist.
        if common == len(prompt_tokens):
            common -= 1
        todo = prompt_tokens[common:]
        long_prompt = len(todo) >= fast_prefill.MIN_TOKENS and not self.active_adapters
        if long_prompt and self.fast_prefill is None and self.fast_prefill_factory is not None:
            # The first long prompt makes the copy (once: a failed try is not repeated).
            make, self.fast_prefill_factory = self.fast_prefill_factory, None
            self.fast_prefill = make()
        if long_prompt and self.fast_prefill is not None:
            try:
                evaluated = self.fast_prefill.evaluate(self, prompt_tokens)
                self.prompt_by_copy = True
                return evaluated
            except EngineError as exc:  # the model evaluates the prompt itself, as without a copy
                print(f"fast prefill skipped: {exc}", file=sys.stderr, flush=True)
                common = 0
                todo = prompt_tokens
        self._truncate_cache(common)
        llama_cpp.llama_set_abort_callback(self.ctx, self._abort_cb, None)
        try:
            step = max(1, int(self.settings.n_batch))
            for start in range(0, len(todo), step):
                if self._cancel.is_set():
                    raise Cancelled()
                self._decode(todo[start : start + step])
        finally:
            llama_cpp.llama_set_abort_callback(self.ctx, llama_cpp.ggml_abort_callback(), None)
        return len(todo)

    def _sampler(self, sampling: SamplingParams, seed: int):
        chain_params = llama_cpp.llama_sampler_chain_default_params()
        chain_params.no_perf = True
        chain = llama_cpp.llama_sampler_chain_init(chain_params)
        add = lambda s: llama_cpp.llama_sampler_chain_add(chain, s)  # noqa: E731
        # top-k runs first: it cuts 49k candidates to a handful in one partial sort, so the
        # repeat penalty (a hash look-up per candidate) and the rest touch only those. It
        # differs from penalty-first only when a penalised token would fall below the k-th
        # candidate, which at k=40 changes nothing a reader can see; it saves ~0.3 ms a token.
        greedy = sampling.temperature <= 0
        if sampling.top_k > 0 and not greedy:
            add(llama_cpp.llama_sampler_init_top_k(int(sampling.top_k)))
        if sampling.repeat_penalty != 1.0 and sampling.repeat_last_n != 0:
            add(llama_cpp.llama_sampler_init_penalties(self.n_vocab, int(sampling.repeat_last_n), float(sampling.repeat_penalty), 0.0, 0.0))
        if greedy:
            add(llama_cpp.llama_sampler_init_greedy())
            return chain
        if sampling.top_p < 1.0:
            add(llama_cpp.llama_sampler_init_top_p(float(sampling.top_p), 1))
        if sampling.min_p > 0.0:
            add(llama_cpp.llama_sampler_init_min_p(float(sampling.min_p), 1))
        add(llama_cpp.llama_sampler_init_temp(float(sampling.temperature)))
        add(llama_cpp.llama_sampler_init_dist(seed & 0xFFFFFFFF))
        return chain

    def generate(self, prompt_tokens: list[int], sampling: SamplingParams, on_text=None,
                 cancel: threading.Event | None = None, speculative: bool = False,
                 lookup_sources: list[list[int]] | None = None, on_tick=None) -> GenerationResult:
        """Evaluate the prompt (re-using the cache) and sample until an end token, a stop
        string, ``max_tokens`` or cancellation. ``on_text`` receives text as it is produced;
        ``cancel`` is the request's own flag, set by another thread to stop it.

        With ``speculative``, tokens drafted by prompt lookup (:mod:`engine.prompt_lookup`,
        from the prompt, ``lookup_sources`` and the reply so far) are verified several at a
        time; each position is sampled by the same sampler chain in the same order as plain
        decoding, and a drafted token is kept only where it is the token sampled, so the
        reply does not change.

        ``on_tick`` is called between tokens every :attr:`TICK_S` seconds (the worker
        re-chooses the thread count there, as the machine's load changes during a reply)."""
        self._cancel = cancel if cancel is not None else threading.Event()
        started = time.perf_counter()
        llama_cpp.llama_perf_context_reset(self.ctx)
        cached_before = len(self.cached_tokens)
        try:
            evaluated = self.evaluate_prompt(prompt_tokens)
        except Cancelled:
            exc = Cancelled("")
            exc.metrics = {  # type: ignore[attr-defined]
                "prompt_tokens": len(prompt_tokens),
                "prompt_tokens_done": len(self.cached_tokens),
                "completion_tokens": 0,
                "finish_reason": "cancelled",
            }
            raise exc
        prompt_done = time.perf_counter()
        reused = len(prompt_tokens) - evaluated

        seed = sampling.seed if sampling.seed >= 0 else random.getrandbits(32)
        sampler = self._sampler(sampling, seed)
        # Let the repeat penalty see the end of the prompt, as llama.cpp's CLI does.
        for token in prompt_tokens[-int(sampling.repeat_last_n or 0):] if sampling.repeat_last_n else []:
            llama_cpp.llama_sampler_accept(sampler, token)

        decoder = codecs.getincrementaldecoder("utf-8")("replace")
        stops = _StopMatcher(list(sampling.stop))
        parts: list[str] = []
        first_token_at: float | None = None
        n_generated = 0
        finish = "length"
        single = (llama_cpp.llama_token * 1)()
        lookup = PromptLookup([*(lookup_sources or []), prompt_tokens]) if speculative else None
        budget = DraftBudget(self.MAX_DRAFT, *self._draft_costs)
        draft_batch = llama_cpp.llama_batch_init(self.MAX_DRAFT + 1, 0, 1) if speculative else None

        def take(token: int) -> bool:
            """Show one sampled token; True when the reply ends with it."""
            nonlocal n_generated, first_token_at, finish
            if llama_cpp.llama_vocab_is_eog(self.vocab, token):
                finish = "stop"
                return True
            n_generated += 1
            if first_token_at is None:
                first_token_at = time.perf_counter()
            text = stops.feed(decoder.decode(self._piece(token, special=False)))
            if text:
                parts.append(text)
                if on_text is not None:
                    on_text(text)
            if stops.hit:
                finish = "stop"
                return True
            if lookup is not None:
                lookup.append(token)
            return n_generated >= sampling.max_tokens

        try:
            if self._cancel.is_set():
                finish = "cancelled"
                token = None
            else:
                token = llama_cpp.llama_sampler_sample(sampler, self.ctx, -1)
            next_tick = time.perf_counter() + self.TICK_S
            while token is not None:
                if take(token):
                    break
                if on_tick is not None and time.perf_counter() >= next_tick:
                    on_tick()
                    next_tick = time.perf_counter() + self.TICK_S
                if self._cancel.is_set():
                    finish = "cancelled"
                    break
                room = min(self.n_ctx - len(self.cached_tokens) - 2, sampling.max_tokens - n_generated - 1)
                if room < 0:
                    finish = "length"
                    break
                draft: list[int] = []
                matched = 0
                if lookup is not None and room > 0:
                    found, matched = lookup.find(min(room, self.MAX_DRAFT))
                    draft = found[:budget.length(len(found), matched)]
                step_started = time.perf_counter()
                if not draft:
                    single[0] = token
                    rc = llama_cpp.llama_decode(self.ctx, llama_cpp.llama_batch_get_one(single, 1))
                    if rc != 0:
                        self._truncate_cache(len(self.cached_tokens))
                        raise EngineError(f"llama.cpp failed while generating (code {rc}).")
                    self.cached_tokens.append(token)
                    budget.plain_step((time.perf_counter() - step_started) * 1000.0)
                    token = llama_cpp.llama_sampler_sample(sampler, self.ctx, -1)
                    continue
                token = self._verify_draft(draft_batch, token, draft, sampler, budget, step_started, take, matched)
                if token is None:
                    break
        finally:
            llama_cpp.llama_sampler_free(sampler)
            if draft_batch is not None:
                llama_cpp.llama_batch_free(draft_batch)
                self._draft_costs = (budget.single_ms, budget.extra_ms_per_token)
        tail = stops.flush() if not stops.hit else ""
        tail += decoder.decode(b"", final=True)
        if tail and finish != "cancelled":
            parts.append(tail)
            if on_text is not None:
                on_text(tail)
        finished = time.perf_counter()
        text = "".join(parts)

        perf = llama_cpp.llama_perf_context(self.ctx)
        first = first_token_at or finished
        decode_steps = max(0, n_generated - 1)
        metrics = {
            "prompt_tokens": len(prompt_tokens),
            "prompt_tokens_evaluated": evaluated,
            "prompt_tokens_done": len(prompt_tokens),
            "prompt_tokens_cached": reused,
            "prompt_by_fast_copy": self.prompt_by_copy,
            "cache_tokens_before": cached_before,
            "completion_tokens": n_generated,
            "ttft_ms": (first - started) * 1000.0,
            "prompt_eval_ms": (prompt_done - started) * 1000.0,
            "prompt_tokens_per_s": evaluated / (prompt_done - started) if evaluated and prompt_done > started else None,
            "generation_ms": (finished - first) * 1000.0,
            "tokens_per_s": decode_steps / (finished - first) if decode_steps and finished > first else None,
            "total_ms": (finished - started) * 1000.0,
            "llama_eval_tokens": int(perf.n_eval),
            "llama_eval_ms": float(perf.t_eval_ms),
            "llama_tokens_per_s": (perf.n_eval / perf.t_eval_ms * 1000.0) if perf.t_eval_ms > 0 else None,
            "llama_prompt_eval_ms": float(perf.t_p_eval_ms),
            "seed": seed,
            "draft_tokens": budget.drafted,
            "draft_tokens_accepted": budget.accepted,
            "draft_steps": budget.steps,
            "draft_cost_ratio": round(budget.cost_ratio, 3) if budget.steps else None,
            "finish_reason": finish,
        }
        if finish == "cancelled":
            exc = Cancelled(text)
            exc.metrics = metrics  # type: ignore[attr-defined]
            raise exc
        return GenerationResult(text=text, finish_reason=finish, metrics=metrics)

    def _verify_draft(self, batch, token: int, draft: list[int], sampler, budget: DraftBudget,
                      step_started: float, take, matched: int) -> int | None:
        """Decode ``token`` and its ``draft`` in one batch with a logit row each, then sample
        position by position: a drafted token stands while it is the token sampled there.
        Returns the next token to decode, or None when ``take`` ended the reply. The KV cache
        keeps only the positions whose inputs were the reply's real tokens."""
        base = len(self.cached_tokens)
        inputs = [token, *draft]
        fill_sequence(batch, inputs, base)
        rc = llama_cpp.llama_decode(self.ctx, batch)
        if rc != 0:
            self._truncate_cache(base)
            raise EngineError(f"llama.cpp failed while generating (code {rc}).")
        self.cached_tokens.extend(inputs)
        elapsed_ms = (time.perf_counter() - step_started) * 1000.0
        accepted = 0
        next_token: int | None = None
        for i in range(len(inputs)):
            sampled = llama_cpp.llama_sampler_sample(sampler, self.ctx, i)
            if i < len(draft) and sampled == draft[i]:
                accepted += 1
                if take(sampled):
                    break
                continue
            next_token = sampled
            break
        budget.verified(len(draft), accepted, elapsed_ms, matched)
        # Inputs 0..accepted were real tokens of the reply; drafts after them were not.
        self._truncate_cache(base + 1 + accepted if next_token is not None else base + accepted)
        return next_token

    # ----- many sequences at once (classification, batched translation) -----------------
    def batch_context(self, wide_generation: bool = False, latin: bool = False):
        """The model's multi-sequence context (:mod:`engine.classify`), created on first use
        so that chat-only sessions never pay its memory. Same thread rules as the model.

        With ``wide_generation`` (a batched greedy continuation of at least
        engine.fast_prefill.MIN_BATCH_ITEMS sequences side by side) and no adapters active, the
        context is the F16 copy's (engine.fast_prefill) where one is attached or can be made:
        the copy's weights have fast batched kernels where these may not. With ``latin`` too
        (the caller vouches that the request is Latin-script text to be continued in Latin
        script) the vocabulary-cut copy is preferred, the full copy next.

        The returned context's ``model`` is the one whose vocabulary the tokens must come from."""
        if wide_generation and not self.active_adapters:
            for kind in ("latin", "f16") if latin else ("f16",):
                copy = self.batch_copy(kind)
                if copy is not None:
                    return copy.batch_context()
        context = getattr(self, "_batch_context", None)
        if context is None:
            from engine.classify import BatchContext

            context = self._batch_context = BatchContext(self)
            self._apply_adapters(context.ctx)
        return context

    # ----- LoRA adapters ----------------------------------------------------------------
    @staticmethod
    def adapter_key(path: str) -> tuple:
        """Identity of an adapter file: a re-exported file under the same name is a new one."""
        import os

        stat = os.stat(path)
        # The inode too: an atomic re-export (rename) within one timestamp tick is still new.
        return (path, int(stat.st_size), int(stat.st_mtime_ns), int(stat.st_ino))

    def load_adapter(self, path: str):
        """Load a GGUF LoRA adapter onto these weights once (kept until the model closes).

        The caller has validated the file (the bounded header check, its architecture and
        shapes against this model: see the worker); llama.cpp still refuses anything off.
        """
        key = self.adapter_key(path)
        handle = self._adapters.get(key)
        if handle is None:
            # An older version of the same file is dropped, unless a context still uses it.
            in_use = {k for k, _ in self.active_adapters}
            for old in [k for k in self._adapters if k[0] == path and k not in in_use]:
                llama_cpp.llama_adapter_lora_free(self._adapters.pop(old))
            handle = llama_cpp.llama_adapter_lora_init(self.model, path.encode("utf-8"))
            if not handle:
                raise EngineError(f"llama.cpp could not load the LoRA adapter {path}; "
                                  "it may be damaged or made for another model.")
            self._adapters[key] = handle
        return key

    def loaded_adapters(self) -> list[str]:
        return sorted({key[0] for key in self._adapters})

    def set_adapters(self, adapters: list[tuple[str, float]]) -> bool:
        """Make exactly ``adapters`` ((path, scale), ...) active, loading any not loaded yet,
        without reloading the base. Returns True when the set changed: then every cached
        key and value was computed with other weights, so the chat cache and the batch
        context's prefix are dropped."""
        wanted = tuple((self.load_adapter(path), float(scale)) for path, scale in adapters)
        if wanted == self.active_adapters:
            return False
        previous, self.active_adapters = self.active_adapters, wanted
        try:
            self._apply_adapters(self.ctx)
            context = getattr(self, "_batch_context", None)
            if context is not None:
                self._apply_adapters(context.ctx)
                llama_cpp.llama_memory_clear(context.memory, True)
                context.prefix.clear()
        except EngineError:
            self.active_adapters = previous
            try:  # back to what was active, so the model stays usable
                self._apply_adapters(self.ctx)
            except EngineError:
                pass
            raise
        finally:
            self.clear_cache()
        return True

    def _apply_adapters(self, ctx) -> None:
        count = len(self.active_adapters)
        handles = (llama_cpp.llama_adapter_lora_p_ctypes * max(1, count))(
            *[self._adapters[key] for key, _ in self.active_adapters])
        scales = (ctypes.c_float * max(1, count))(*[scale for _, scale in self.active_adapters])
        if llama_cpp.llama_set_adapters_lora(ctx, handles, count, scales) != 0:
            raise EngineError("llama.cpp could not apply the LoRA adapters to the model.")

    def attach_fast_prefill(self, copy_path: str) -> None:
        """Process long prompts with the F16 copy at ``copy_path`` (engine.fast_prefill)."""
        if self.fast_prefill is None:
            self.fast_prefill = fast_prefill.FastPrefill(copy_path, self.settings)

    def batch_copy(self, kind: str):
        """The loaded copy of ``kind`` ("f16", "latin"), made on first use by its factory;
        None where there is none or it could not be made (then never tried again)."""
        if kind not in self.batch_copies and kind in self.batch_copy_factories:
            self.batch_copies[kind] = self.batch_copy_factories.pop(kind)()
        return self.batch_copies.get(kind)

    def attach_batch_copy(self, copy_path: str, kind: str = "f16") -> None:
        """Run batched generation on the copy at ``copy_path`` (engine.fast_prefill)."""
        if self.batch_copies.get(kind) is None:
            self.batch_copies[kind] = fast_prefill.batch_model(copy_path, self.settings)

    def close(self) -> None:
        if getattr(self, "fast_prefill", None) is not None:
            self.fast_prefill.close()
            self.fast_prefill = None
        for copy in getattr(self, "batch_copies", {}).values():
            if copy is not None:
                copy.close()
        self.batch_copies = {}
        # The batch context shares this model's weights: free it before them.
        context = getattr(self, "_batch_context", None)
        if context is not None:
            context.close()
            self._batch_context = None
        free_llama(ctx=getattr(self, "ctx", None), model=getattr(self, "model", None))
        self.ctx = self.model = None
