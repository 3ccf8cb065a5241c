"""The engine worker: ``python -m engine.worker``, one child process that owns every model.

Protocol: one JSON object per line. In on stdin: ``{"id", "method", "params"}``. Out on
the original stdout: ``{"id", "event", ...}`` with events ``status`` (state changes),
``token`` (``text``), ``done`` (``result``, ``metrics``) and ``error`` (``message``,
``kind``). ``{"method": "cancel", "params": {"id": ...}}`` cancels a running or queued
request; ``shutdown`` ends the process.

Threads: the main thread runs requests one at a time (llama.cpp contexts are not
thread-safe); a reader thread parses stdin so that ``cancel`` reaches a running request
at once. Anything llama.cpp prints goes to stderr: fd 1 is re-pointed at fd 2 and the
protocol uses a private duplicate of the original stdout.

A daemon thread (``engine-load``, :mod:`engine.threads`) samples how busy the machine is;
each request starts with an estimate of the cores other programs keep busy and gives
llama.cpp fewer threads while they do. Loaded embedding encoders live in
:mod:`engine.encoders`.

Why one module of over 500 lines: every request handler shares the worker's loaded models,
its cancel flag and its one output channel.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import sys
import threading
import time
import traceback
from collections import OrderedDict
from typing import Any

from engine import privacy

privacy.install()

from engine.chat_template import RenderedPrompt, TemplateError, choose_fallback, render_chat  # noqa: E402
from engine.gguf_check import MalformedModelError  # noqa: E402
from engine.encoders import EncoderCache  # noqa: E402
from engine.library import ModelTooLargeError, check_fits, inspect_model  # noqa: E402
from engine.settings import EngineSettings, SamplingParams, physical_cores  # noqa: E402
from engine.threads import LoadSampler  # noqa: E402

log = logging.getLogger("engine.worker")

PROTOCOL_VERSION = 1


class RequestError(Exception):
    def __init__(self, message: str, kind: str = "error"):
        super().__init__(message)
        self.kind = kind


class Worker:
    def __init__(self, out, settings: EngineSettings):
        self._out = out
        self._out_lock = threading.Lock()
        self.settings = settings
        self.requests: "queue.Queue[dict | None]" = queue.Queue()
        self._cancelled: set[str] = set()
        self._state_lock = threading.Lock()
        self._current_id: str | None = None
        self._current_cancel = threading.Event()
        # path -> LoadedModel, least recently used first (see EngineSettings.max_loaded_models)
        self.models: OrderedDict[str, Any] = OrderedDict()
        self._model_meta: dict[str, dict] = {}
        #: How many times a base model was loaded from disk (adapter switches must not add to it).
        self.model_loads = 0
        # Adapter files that passed the checks, per (adapter key, base path): re-checking a
        # header on every request would cost a file read per message.
        self._adapter_ok: dict[tuple, dict] = {}
        #: Embedding encoders kept warm (see EngineSettings.max_loaded_encoders).
        self.encoders = EncoderCache(self._free_memory)
        #: Cores other programs keep busy; started by main(), read at the start of each request.
        self.load = LoadSampler(physical_cores())
        self._others_busy: float | None = None

    # ----- output -----------------------------------------------------------------------
    def emit(self, request_id: str | None, event: str, **fields: Any) -> None:
        line = json.dumps({"id": request_id, "event": event, **fields}, ensure_ascii=False)
        with self._out_lock:
            self._out.write(line + "\n")
            self._out.flush()

    # ----- input (reader thread) --------------------------------------------------------
    def read_loop(self, stream) -> None:
        for raw in stream:
            raw = raw.strip()
            if not raw:
                continue
            try:
                message = json.loads(raw)
                if not isinstance(message, dict):
                    raise ValueError("not an object")
            except ValueError as exc:
                self.emit(None, "error", message=f"Unreadable request ({exc}).", kind="protocol")
                continue
            method = message.get("method")
            if method == "cancel":
                target = str((message.get("params") or {}).get("id", ""))
                self._cancel(target)
                continue
            if method == "shutdown":
                break
            self.requests.put(message)
        self.requests.put(None)  # stdin closed or shutdown: stop the current request, then exit
        self._current_cancel.set()

    def _cancel(self, target: str) -> None:
        with self._state_lock:
            if target == self._current_id:
                self._current_cancel.set()
            else:
                self._cancelled.add(target)

    # ----- request loop (main thread) ---------------------------------------------------
    def serve(self) -> None:
        while True:
            message = self.requests.get()
            if message is None:
                return
            request_id = str(message.get("id"))
            with self._state_lock:
                if request_id in self._cancelled:
                    self._cancelled.discard(request_id)
                    self.emit(request_id, "error", message="Cancelled before it started.", kind="cancelled")
                    continue
                self._current_id = request_id
                self._current_cancel = threading.Event()
            self._others_busy = self.load.others_busy_cores()
            try:
                handler = getattr(self, "do_" + str(message.get("method")), None)
                if handler is None:
                    raise RequestError(f"Unknown method {message.get('method')!r}.", "protocol")
                result = handler(request_id, message.get("params") or {})
                if result is not None:
                    self.emit(request_id, "done", **result)
            except RequestError as exc:
                self.emit(request_id, "error", message=str(exc), kind=exc.kind)
            except MalformedModelError as exc:
                self.emit(request_id, "error", message=str(exc), kind="malformed_model")
            except ModelTooLargeError as exc:
                self.emit(request_id, "error", message=str(exc), kind="too_large")
            except MemoryError:
                self.emit(request_id, "error", message="The engine ran out of memory for this request.", kind="memory")
            except Exception as exc:  # keep serving: one bad request must not end the engine
                traceback.print_exc(file=sys.stderr)
                self.emit(request_id, "error", message=f"The engine failed: {type(exc).__name__}: {exc}", kind="internal")
            finally:
                with self._state_lock:
                    self._current_id = None

    # ----- methods ----------------------------------------------------------------------
    def do_ping(self, request_id: str, params: dict) -> dict:
        return {"result": {"pid": os.getpid(), "protocol": PROTOCOL_VERSION, "loaded": list(self.models),
                           "model_loads": self.model_loads, "encoders": self.encoders.loaded(),
                           "encoder_loads": self.encoders.loads, "settings": self.settings.to_dict()}}

    def do_inspect(self, request_id: str, params: dict) -> dict:
        inspection = inspect_model(params["path"], with_hash=bool(params.get("hash", True)))
        return {"result": {"summary": inspection.summary, "sha256": inspection.sha256}}

    def _model(self, request_id: str, params: dict):
        path = params.get("model")
        if not path:
            raise RequestError("No model was given for this request.", "bad_request")
        settings = EngineSettings.from_dict({**self.settings.to_dict(), **(params.get("engine") or {})})
        loaded = self.models.get(path)
        # A request that says nothing of how to load (a tokenize, a suggestion) takes the model as
        # it is loaded: a chat with the model's own context length must not make them reload it.
        if loaded is not None and (not params.get("engine") or loaded.settings == settings):
            if next(reversed(self.models)) != path:
                # Another loaded model answers now: tell the window, which names it.
                self.emit(request_id, "status", state="ready", model=path)
            self.models.move_to_end(path)
            return loaded
        from engine.llama_runtime import EngineError, LoadedModel

        self.emit(request_id, "status", state="loading", model=path)
        inspection = inspect_model(path, with_hash=False)
        if loaded is not None:  # same file, other settings: this copy goes
            self._unload(path)
        while len(self.models) >= max(1, int(settings.max_loaded_models)):
            self._unload(next(iter(self.models)))
        summary = inspection.summary
        # llama.cpp caps the context at what the model was trained for; so does the estimate.
        n_ctx = min(int(settings.n_ctx), int(summary.get("context_length") or settings.n_ctx))
        while True:
            try:
                check_fits(summary.get("file_size") or os.path.getsize(path), summary.get("kv_bytes_per_token", 0),
                           n_ctx, os.path.basename(path), free=self._free_memory(settings),
                           n_vocab=summary.get("vocab_size"), n_embd=summary.get("embedding_length"),
                           n_batch=settings.n_batch, trained=summary.get("context_length"))
                break
            except ModelTooLargeError:
                if not self.models:
                    raise
                # Memory is the limit: unload the least recently used model and look again.
                self._unload(next(iter(self.models)))
        try:
            loaded = LoadedModel(path, settings)
        except EngineError as exc:
            raise RequestError(str(exc), "load_failed") from exc
        self.models[path] = loaded
        self.model_loads += 1
        self._attach_fast_prefill(loaded, summary, settings)
        template = loaded.chat_template()
        has_chatml = len(loaded.tokenize("<|im_start|>", add_special=False, parse_special=True)) == 1
        self._model_meta[path] = {
            "architecture": summary.get("architecture"),
            "template": template,
            "fallback": choose_fallback(summary.get("architecture"), template, has_chatml),
            "bos": loaded.special_token_text("llama_vocab_bos"),
            "eos": loaded.special_token_text("llama_vocab_eos"),
            "add_bos": bool(llama_add_bos(loaded)),
            # Base tensor shapes in ggml order, to tell whether an adapter fits this model.
            "tensor_shapes": {t.name: tuple(t.shape) for t in inspection.header.tensors},
        }
        self.emit(request_id, "status", state="ready", model=path, load_ms=round(loaded.load_ms, 1))
        return loaded

    def _attach_fast_prefill(self, loaded, summary: dict, settings: EngineSettings) -> None:
        """Let a model whose weights lack fast prompt kernels make an F16 copy for long prompts
        (engine.fast_prefill) on its first long prompt, and one whose weights lack fast batched
        kernels use the same copy for batched generation on its first batch, into the cache
        folder; without room or a folder the model does the work itself, as before. Nothing is
        written before such a request comes, so a chat of short messages never pays for the copy."""
        from engine import fast_prefill

        if not (settings.fast_prefill and settings.prefill_copies_dir):
            return

        def maker(purpose: str, build, path_of=fast_prefill.copy_path, ensure=fast_prefill.ensure_copy):
            def make():
                from engine.llama_runtime import EngineError

                preparing = False
                try:
                    copy = path_of(loaded.path, settings.prefill_copies_dir)
                    if not copy.exists():
                        preparing = True
                        self.emit(self._current_id, "status", state="preparing", model=loaded.path,
                                  detail=f"making a fast copy of the weights for {purpose}")
                    copy = ensure(loaded.path, settings.prefill_copies_dir, threads=settings.n_threads_batch)
                    check_fits(copy.stat().st_size, summary.get("kv_bytes_per_token", 0), loaded.n_ctx, copy.name,
                               free=self._free_memory(settings), n_vocab=summary.get("vocab_size"),
                               n_embd=summary.get("embedding_length"), n_batch=settings.n_batch)
                    return build(copy, loaded.settings)
                except (EngineError, ModelTooLargeError, OSError) as exc:
                    print(f"fast copy for {purpose} off for {os.path.basename(loaded.path)}: {exc}",
                          file=sys.stderr, flush=True)
                    return None
                finally:
                    if preparing:  # made (or given up): the status bar must not stay on "preparing"
                        self.emit(self._current_id, "status", state="ready", model=loaded.path)

            return make

        if fast_prefill.wants_copy(summary):
            loaded.fast_prefill_factory = maker("long prompts", fast_prefill.FastPrefill)
        if fast_prefill.wants_batch_copy(summary):
            loaded.batch_copy_factories["f16"] = maker("batches", fast_prefill.batch_model)
            loaded.batch_copy_factories["latin"] = maker("batches of Latin-script text", fast_prefill.batch_model,
                                                         fast_prefill.latin_copy_path, fast_prefill.ensure_latin_copy)

    def _unload(self, path: str) -> None:
        model = self.models.pop(path, None)
        if model is not None:
            model.close()

    @staticmethod
    def _free_memory(settings: EngineSettings) -> int:
        """Free memory as the worker may use it: the machine's, or less under our own cap."""
        import psutil

        free = int(psutil.virtual_memory().available)
        if settings.memory_limit_bytes > 0:
            used = int(psutil.Process().memory_info().vms)
            free = min(free, max(0, int(settings.memory_limit_bytes) - used))
        return free

    @staticmethod
    def _copy_threads(model, threads: dict) -> None:
        """The fast-prompt copy (engine.fast_prefill) evaluates with the model's thread counts."""
        if model.fast_prefill is not None:
            import llama_cpp

            llama_cpp.llama_set_n_threads(model.fast_prefill.model.ctx, threads["n_threads"], threads["n_threads_batch"])

    def _use_threads(self, ctx, settings: EngineSettings) -> dict:
        """Give ``ctx`` this request's thread counts (:meth:`_thread_counts`); returns them for
        the metrics."""
        import llama_cpp

        counts = self._thread_counts(settings)
        llama_cpp.llama_set_n_threads(ctx, counts["n_threads"], counts["n_threads_batch"])
        return counts

    def _thread_counts(self, settings: EngineSettings) -> dict:
        """This request's thread counts: the settings' own, or fewer while other programs keep
        cores busy (:mod:`engine.threads`)."""
        n_threads, n_batch = max(1, int(settings.n_threads)), max(1, int(settings.n_threads_batch or settings.n_threads))
        others = self._others_busy if settings.adapt_threads else None
        n_threads, n_batch = self.load.threads(n_threads, others), self.load.threads(n_batch, others)
        return {"n_threads": n_threads, "n_threads_batch": n_batch,
                "others_busy_cores": None if self._others_busy is None else round(self._others_busy, 2)}

    def do_load(self, request_id: str, params: dict) -> dict:
        loaded = self._model(request_id, params)
        return {"result": {"model": loaded.path, "n_ctx": loaded.n_ctx, "load_ms": loaded.load_ms,
                           "fallback_template": self._model_meta[loaded.path]["fallback"]}}

    # ----- LoRA adapters ----------------------------------------------------------------
    #: More adapters than this on one request is a mistake, not a use.
    MAX_ADAPTERS = 8

    def _task_model(self, request_id: str, params: dict):
        """The request's model with exactly the request's ``adapters`` active (none when
        absent): each request says which adapters it wants, so a conversation or a task
        switches them per request while the base stays loaded."""
        from engine.llama_runtime import EngineError

        model = self._model(request_id, params)
        wanted = self._adapter_list(model, params.get("adapters"))
        try:
            model.set_adapters(wanted)
        except EngineError as exc:
            raise RequestError(str(exc), "bad_adapter") from exc
        except OSError as exc:  # the file went away between the check and the load
            raise RequestError(f"The adapter {exc.filename or ''} cannot be read: {exc.strerror or exc}.",
                               "bad_adapter") from exc
        return model

    def _adapter_list(self, model, raw) -> list[tuple[str, float]]:
        if raw is None:
            return []
        if not isinstance(raw, list) or len(raw) > self.MAX_ADAPTERS:
            raise RequestError(f"'adapters' must be a list of at most {self.MAX_ADAPTERS} "
                               "{\"path\": ..., \"scale\": ...} objects.", "bad_request")
        wanted = []
        for item in raw:
            if isinstance(item, str):
                item = {"path": item}
            if not isinstance(item, dict) or not isinstance(item.get("path"), str) or not item["path"]:
                raise RequestError("Each adapter needs a \"path\" to a GGUF LoRA file.", "bad_request")
            scale = item.get("scale", 1.0)
            if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not -100.0 <= float(scale) <= 100.0:
                raise RequestError(f"The adapter scale must be a number (usually 0 to 1), not {scale!r}.", "bad_request")
            path = os.path.abspath(os.path.expanduser(item["path"]))
            self._check_adapter(model, path)
            wanted.append((path, float(scale)))
        return wanted

    def _check_adapter(self, model, path: str) -> dict:
        """The bounded header check of an adapter file and its fit to ``model``: a GGUF LoRA
        adapter of the same architecture whose every tensor pairs with a base tensor of the
        right shape. Raises RequestError (kind ``bad_adapter``) with a clear message."""
        from engine.gguf_check import check_gguf
        from engine.llama_runtime import LoadedModel

        name = os.path.basename(path)
        try:
            key = (LoadedModel.adapter_key(path), model.path)
        except FileNotFoundError:
            raise RequestError(f"The adapter {path} does not exist.", "bad_adapter") from None
        except OSError as exc:
            raise RequestError(f"The adapter {path} cannot be read: {exc.strerror or exc}.", "bad_adapter") from None
        known = self._adapter_ok.get(key)
        if known is not None:
            return known
        try:
            header = check_gguf(path)
        except MalformedModelError as exc:
            raise RequestError(f"The adapter {name} cannot be used: {exc}", "bad_adapter") from exc
        meta = header.metadata
        base_meta = self._model_meta[model.path]
        base_arch = base_meta.get("architecture")
        if meta.get("general.type") != "adapter" or meta.get("adapter.type") != "lora":
            what = "a full model" if meta.get("general.type") in (None, "model") else f"a {meta.get('general.type')!r} file"
            raise RequestError(f"{name} is not a LoRA adapter (it is {what}); choose a GGUF LoRA adapter file.",
                               "bad_adapter")
        if meta.get("general.architecture") != base_arch:
            raise RequestError(f"{name} was made for a {meta.get('general.architecture')!r} model, but "
                               f"{os.path.basename(model.path)} is a {base_arch!r} model.", "bad_adapter")
        if not isinstance(meta.get("adapter.lora.alpha"), (int, float)):
            raise RequestError(f"{name} has no LoRA alpha (adapter.lora.alpha); it is not a complete adapter.",
                               "bad_adapter")
        shapes = base_meta["tensor_shapes"]
        tensors = {t.name: tuple(t.shape) for t in header.tensors}
        if not tensors:
            raise RequestError(f"{name} holds no LoRA tensors.", "bad_adapter")
        for tensor_name, shape in tensors.items():
            base_name, _, half = tensor_name.rpartition(".")
            base = shapes.get(base_name)
            partner = tensors.get(base_name + (".lora_b" if half == "lora_a" else ".lora_a"))
            if half not in ("lora_a", "lora_b") or base is None or partner is None or len(shape) != 2 or len(base) != 2:
                raise RequestError(f"{name} changes {tensor_name}, which {os.path.basename(model.path)} does not "
                                   "have: the adapter was made for another model.", "bad_adapter")
            a, b = (shape, partner) if half == "lora_a" else (partner, shape)
            if a[0] != base[0] or b[1] != base[1] or a[1] != b[0]:
                raise RequestError(f"{name} does not fit {os.path.basename(model.path)}: {base_name} has another shape "
                                   "there; the adapter was made for another model.", "bad_adapter")
        info = {"path": path, "alpha": float(meta["adapter.lora.alpha"]), "tensors": len(tensors),
                "rank": max(t[1] for n, t in tensors.items() if n.endswith(".lora_a")),
                "name": meta.get("general.name")}
        self._adapter_ok[key] = info
        return info

    def do_load_adapter(self, request_id: str, params: dict) -> dict:
        """Check and load an adapter onto a base model ahead of use (it stays inactive)."""
        from engine.llama_runtime import EngineError

        model = self._model(request_id, params)
        path = params.get("path")
        if not isinstance(path, str) or not path:
            raise RequestError("No adapter path was given.", "bad_request")
        path = os.path.abspath(os.path.expanduser(path))
        info = self._check_adapter(model, path)
        try:
            model.load_adapter(path)
        except EngineError as exc:
            raise RequestError(str(exc), "bad_adapter") from exc
        return {"result": {**info, "model": model.path}}

    def do_adapters(self, request_id: str, params: dict) -> dict:
        """Which adapters each loaded model holds and which are active, and the load count."""
        models = [{"model": path, "loaded": model.loaded_adapters(),
                   "active": [{"path": key[0], "scale": scale} for key, scale in model.active_adapters]}
                  for path, model in self.models.items()]
        return {"result": {"models": models, "model_loads": self.model_loads}}

    def do_unload(self, request_id: str, params: dict) -> dict:
        for model in self.models.values():
            model.close()
        self.models.clear()
        return {"result": {}}

    def do_tokenize(self, request_id: str, params: dict) -> dict:
        model = self._model(request_id, params)
        tokens = model.tokenize(str(params.get("text", "")), bool(params.get("add_special", True)),
                                bool(params.get("parse_special", True)))
        return {"result": {"tokens": tokens}}

    def _render(self, model, params: dict) -> RenderedPrompt:
        meta = self._model_meta[model.path]
        messages = params.get("messages")
        if not isinstance(messages, list) or not messages:
            raise RequestError("A chat request needs at least one message.", "bad_request")
        template = params.get("chat_template") or meta["template"]
        fallback = params.get("fallback_template") or meta["fallback"]
        try:
            return render_chat(messages, template, bos_token=meta["bos"], eos_token=meta["eos"],
                               fallback=fallback, force_fallback=bool(params.get("force_fallback_template")))
        except TemplateError as exc:
            raise RequestError(str(exc), "template") from exc

    def _prompt_tokens(self, model, text: str) -> list[int]:
        meta = self._model_meta[model.path]
        # The template may already start with BOS; adding another confuses small models.
        add_special = meta["add_bos"] and not (meta["bos"] and text.startswith(meta["bos"]))
        return model.tokenize(text, add_special=add_special, parse_special=True)

    def do_chat(self, request_id: str, params: dict) -> dict | None:
        model = self._task_model(request_id, params)
        sampling = self._sampling(params)
        messages = list(params.get("messages") or [])
        rendered = self._render(model, {**params, "messages": messages})
        tokens = self._prompt_tokens(model, rendered.text)
        # Keep the system prompt and the newest turns when a conversation outgrows the context.
        budget = model.n_ctx - min(sampling.max_tokens, model.n_ctx // 2)
        dropped = 0
        while len(tokens) > budget and len(messages) > 1:
            first = 1 if messages[0].get("role") == "system" and len(messages) > 2 else 0
            if first >= len(messages) - 1:
                break
            del messages[first]
            dropped += 1
            rendered = self._render(model, {**params, "messages": messages})
            tokens = self._prompt_tokens(model, rendered.text)
        return self._generate(request_id, model, tokens, sampling,
                              extra={"template": rendered.template_name, "template_warning": rendered.warning,
                                     "messages_dropped": dropped}, speculation=self._speculation(model, params))

    def do_complete(self, request_id: str, params: dict) -> dict | None:
        model = self._task_model(request_id, params)
        sampling = self._sampling(params)
        prompt = str(params.get("prompt", ""))
        if not prompt:
            raise RequestError("The prompt is empty.", "bad_request")
        tokens = self._prompt_tokens(model, prompt)
        return self._generate(request_id, model, tokens, sampling, extra={}, speculation=self._speculation(model, params))

    # ----- many items at once: label scoring and batched greedy continuation -------------
    def _batch_inputs(self, model, params: dict, key: str) -> tuple[list[int], list]:
        """The prefix's tokens (the app's own text: special tokens parsed) and the items."""
        items = params.get(key)
        if not isinstance(items, list) or not all(isinstance(t, str) for t in items):
            raise RequestError(f"'{key}' must be a list of strings.", "bad_request")
        prefix = str(params.get("prefix", ""))
        meta = self._model_meta[model.path]
        prefix_tokens = model.tokenize(prefix, add_special=bool(meta["add_bos"]), parse_special=True)
        return prefix_tokens, items

    def do_classify(self, request_id: str, params: dict) -> dict | None:
        """Score ``texts`` by the log-probability of each label's first token after
        ``prefix`` + ``template`` (with ``{text}`` replaced by the text). Emits a ``scores``
        event per decoded batch (``start``, ``scores``) so that a cancelled request keeps
        its finished part; the text itself is tokenized with special tokens left as text."""
        from engine.llama_runtime import Cancelled, EngineError

        model = self._task_model(request_id, params)
        prefix_tokens, texts = self._batch_inputs(model, params, "texts")
        template = str(params.get("template", "{text}"))
        if template.count("{text}") != 1:
            raise RequestError("The classification template must contain {text} exactly once.", "bad_request")
        before, after = template.split("{text}")
        head = model.tokenize(before, add_special=False, parse_special=True) if before else []
        tail = model.tokenize(after, add_special=False, parse_special=True) if after else []
        labels = params.get("labels")
        if not isinstance(labels, list) or len(labels) < 2:
            raise RequestError("Classification needs at least two labels.", "bad_request")
        label_tokens = []
        for label in labels:
            tokens = model.tokenize(str(label), add_special=False, parse_special=False)
            if not tokens:
                raise RequestError(f"The label {label!r} has no tokens.", "bad_request")
            label_tokens.append(tokens[0])
        if len(set(label_tokens)) != len(label_tokens):
            raise RequestError("Two labels start with the same token, so their scores cannot be told apart; "
                               "choose label words that differ in their first token.", "bad_request")
        suffixes = []
        for text in texts:
            body = model.tokenize(text, add_special=False, parse_special=False) if text else []
            suffixes.append(head + body + tail)
        started = time.perf_counter()
        context = model.batch_context()
        threads = self._use_threads(context.ctx, model.settings)
        try:
            evaluated = context.set_prefix(prefix_tokens, cancel=self._current_cancel)
            scores = context.score(
                suffixes, label_tokens, cancel=self._current_cancel,
                on_batch=lambda start, rows: self.emit(request_id, "scores", start=start, scores=rows))
        except Cancelled:
            self.emit(request_id, "error", message="Stopped.", kind="cancelled")
            return None
        except EngineError as exc:
            raise RequestError(str(exc), "classification") from exc
        elapsed = time.perf_counter() - started
        n_tokens = sum(len(context.clip(s)) for s in suffixes)
        return {"result": {"scores": scores, "label_tokens": label_tokens},
                "metrics": {"items": len(texts), "prefix_tokens": len(prefix_tokens), "prefix_tokens_evaluated": evaluated,
                            "item_tokens": n_tokens, "total_ms": elapsed * 1000.0,
                            "items_per_s": len(texts) / elapsed if elapsed > 0 else None, **threads}}

    def do_generate_batch(self, request_id: str, params: dict) -> dict | None:
        """Greedy continuation of ``prefix`` + each of ``items``, many side by side. Streams
        ``token`` events with ``index`` and ``text`` and an ``item`` event (``index``, ``text``,
        ``finish_reason``) as each item finishes, so a cancelled request keeps those."""
        from engine import fast_prefill, vocab_cut
        from engine.llama_runtime import Cancelled, EngineError

        model = self._task_model(request_id, params)
        prefix_tokens, items = self._batch_inputs(model, params, "items")
        max_parallel = params.get("max_parallel")
        if max_parallel is not None and (not isinstance(max_parallel, int) or max_parallel < 1):
            raise RequestError("max_parallel must be a positive whole number.", "bad_request")
        stop = params.get("stop") or []
        if not isinstance(stop, list) or not all(isinstance(x, str) for x in stop):
            raise RequestError("Stop words must be a list of strings.", "bad_request")
        max_tokens = params.get("max_tokens", 256)
        max_tokens = list(max_tokens) if isinstance(max_tokens, list) else [max_tokens] * len(items)
        if len(max_tokens) != len(items) or not all(isinstance(n, int) and n >= 1 for n in max_tokens):
            raise RequestError("max_tokens must be a positive whole number (or one per item).", "bad_request")
        # A vocabulary-cut copy (engine.vocab_cut) only where the caller asks for Latin-script
        # output and every text is made of characters the cut keeps (so it tokenizes the same).
        prefix = str(params.get("prefix", ""))
        latin = bool(params.get("latin_only")) and vocab_cut.latin_text(prefix) and all(map(vocab_cut.latin_text, items))
        started = time.perf_counter()
        width = min(len(items), max_parallel or len(items))
        context = model.batch_context(wide_generation=width >= fast_prefill.MIN_BATCH_ITEMS, latin=latin)
        vocabulary = context.model  # a cut copy numbers its tokens differently
        if vocabulary is not model:
            prefix_tokens = vocabulary.tokenize(prefix, add_special=bool(self._model_meta[model.path]["add_bos"]),
                                                parse_special=True)
        # The items carry the user's text: special tokens stay text, so typing "<eos>" cannot end a prompt.
        suffixes = [vocabulary.tokenize(item, add_special=False, parse_special=False) for item in items]
        threads = self._use_threads(context.ctx, model.settings)
        emit = self.emit
        try:
            evaluated = context.set_prefix(prefix_tokens, cancel=self._current_cancel)
            texts = context.generate(
                suffixes, max_tokens, stop, cancel=self._current_cancel,
                on_text=lambda index, text: emit(request_id, "token", index=index, text=text),
                on_done=lambda index, text, reason: emit(request_id, "item", index=index, text=text,
                                                         finish_reason=reason),
                max_parallel=max_parallel)
        except Cancelled:
            self.emit(request_id, "error", message="Stopped.", kind="cancelled")
            return None
        except EngineError as exc:
            raise RequestError(str(exc), "generation") from exc
        elapsed = time.perf_counter() - started
        return {"result": {"texts": texts},
                "metrics": {"items": len(items), "prefix_tokens": len(prefix_tokens),
                            "prefix_tokens_evaluated": evaluated,
                            "item_tokens": sum(len(s) for s in suffixes), "total_ms": elapsed * 1000.0,
                            "generated_tokens": context.generated_tokens,
                            "by_fast_copy": context.model is not model,
                            "copy_vocabulary": context.n_vocab if context.model is not model else None, **threads}}

    def _sampling(self, params: dict) -> SamplingParams:
        try:
            return SamplingParams.from_dict(params.get("sampling"))
        except (TypeError, ValueError) as exc:
            raise RequestError(str(exc), "bad_request") from exc

    def _speculation(self, model, params: dict) -> dict:
        """Prompt-lookup drafting for this request: on when ``speculative`` is true (the chat
        asks for it where the reply is expected to repeat its input: passages from documents,
        an edited message's old reply); ``lookup_texts`` are more texts to draft from,
        tokenized as plain text."""
        lookup_texts = params.get("lookup_texts") or []
        if not isinstance(lookup_texts, list) or not all(isinstance(t, str) for t in lookup_texts):
            raise RequestError("'lookup_texts' must be a list of strings.", "bad_request")
        return {"speculative": bool(params.get("speculative", False)),
                "lookup_sources": [model.tokenize(text, add_special=False, parse_special=False)
                                   for text in lookup_texts if text]}

    def _generate(self, request_id: str, model, tokens: list[int], sampling: SamplingParams, extra: dict,
                  speculation: dict | None = None):
        from engine.llama_runtime import Cancelled, EngineError

        emit = self.emit

        def on_text(text: str) -> None:
            emit(request_id, "token", text=text)

        threads = self._use_threads(model.ctx, model.settings)
        self._copy_threads(model, threads)

        def retune() -> None:
            """Between tokens: the load seen over the last moments (a burst of another program
            that has ended no longer counts, one that started now does)."""
            if model.settings.adapt_threads:
                self._others_busy = self.load.others_busy_cores(window_s=model.TICK_S)
                threads.update(self._use_threads(model.ctx, model.settings))
        try:
            result = model.generate(tokens, sampling, on_text=on_text, cancel=self._current_cancel,
                                    on_tick=retune, **(speculation or {}))
        except Cancelled as exc:
            metrics = getattr(exc, "metrics", {})
            self.emit(request_id, "error", message="Stopped.", kind="cancelled", partial=exc.text, metrics=metrics)
            return None
        except EngineError as exc:
            raise RequestError(str(exc), "generation") from exc
        return {"result": {"text": result.text, "finish_reason": result.finish_reason, **extra},
                "metrics": {**result.metrics, **threads, "model_loads": self.model_loads,
                            "adapters": [{"path": key[0], "scale": scale} for key, scale in model.active_adapters]}}

    # ----- embeddings (issue 6) ---------------------------------------------------------
    def do_embed(self, request_id: str, params: dict) -> dict:
        """Embed ``texts`` with the GGUF embedding model ``model``: unit float32 vectors.

        Encoders stay loaded beside the chat models, a few of them at once
        (:mod:`engine.encoders`), so retrieval does not evict the chat model, nor a sentiment
        student's encoder the documents' one, and vice versa. Vectors travel as lists of floats
        rounded to float32 precision by the client's numpy, or base64 when ``encoding`` is
        "base64" (4 bytes a value instead of ~20 characters of JSON).
        """
        path = params.get("model")
        texts = params.get("texts")
        if not path:
            raise RequestError("No embedding model was given for this request.", "bad_request")
        if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
            raise RequestError("An embed request needs a list of texts.", "bad_request")
        from engine.llama_runtime import Cancelled, EngineError

        def on_status(state: str) -> None:
            # role tells the window this is the search/classifier encoder, not the chat model.
            self.emit(request_id, "status", state=state, model=path, role="embedder")

        try:
            embedder = self.encoders.get(path, params, self.settings, on_status)
        except EngineError as exc:
            raise RequestError(str(exc), "load_failed") from exc
        threads = self._thread_counts(self.settings)
        embedder.set_threads(threads["n_threads_batch"])  # a whole batch of texts: prompt-like work

        try:
            vectors, metrics = embedder.embed(texts, cancel=self._current_cancel)
        except Cancelled:
            self.emit(request_id, "error", message="Stopped.", kind="cancelled")
            return None  # type: ignore[return-value]
        except EngineError as exc:
            raise RequestError(str(exc), "embed") from exc
        if params.get("encoding") == "base64":
            import base64

            result = {"dim": int(vectors.shape[1]), "count": int(vectors.shape[0]),
                      "base64": base64.b64encode(vectors.astype("<f4").tobytes()).decode("ascii")}
        else:
            result = {"dim": int(vectors.shape[1]), "count": int(vectors.shape[0]), "vectors": vectors.tolist()}
        return {"result": result, "metrics": {**metrics, **threads, "encoder_loads": self.encoders.loads}}


def llama_add_bos(model) -> bool:
    import llama_cpp

    return bool(llama_cpp.llama_vocab_get_add_bos(model.vocab))


def _apply_memory_limit(limit: int) -> None:
    """Cap the address space so that a hostile or oversized model fails here, not the desktop."""
    try:
        import resource

        if limit <= 0:
            import psutil

            limit = int(psutil.virtual_memory().total * 0.75)
        soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        if hard != resource.RLIM_INFINITY:
            limit = min(limit, hard)
        resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    except (ImportError, ValueError, OSError) as exc:
        log.warning("could not set the worker's memory limit: %s", exc)


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m engine.worker")
    parser.add_argument("--settings", default="{}", help="EngineSettings as JSON")
    args = parser.parse_args(argv)
    settings = EngineSettings.from_dict(json.loads(args.settings))

    # The protocol gets a private copy of stdout; fd 1 now leads to stderr, so any printf
    # inside llama.cpp or a library cannot corrupt the JSON stream.
    protocol_fd = os.dup(1)
    os.dup2(2, 1)
    out = os.fdopen(protocol_fd, "w", encoding="utf-8", buffering=1)
    sys.stdout = sys.stderr
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    _apply_memory_limit(int(settings.memory_limit_bytes))

    worker = Worker(out, settings)
    reader = threading.Thread(target=worker.read_loop, args=(sys.stdin,), name="engine-stdin", daemon=True)
    reader.start()
    worker.emit(None, "status", state="ready", pid=os.getpid(), protocol=PROTOCOL_VERSION)
    worker.load.start()
    worker.serve()
    worker.load.stop()
    for model in worker.models.values():
        model.close()
    worker.encoders.close_all()
    out.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
