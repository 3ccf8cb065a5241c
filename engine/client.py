"""EngineClient: starts and supervises the engine worker process and talks to it.

Thread-safety: every public method may be called from any thread (the GUI calls it from
its worker pool, the CLI from its main thread). Two private threads per worker process
read its stdout (events) and stderr (log). Events for a request arrive in order on that
request's own queue, read through :class:`RequestHandle`.

If the worker dies (a malformed model can crash llama.cpp), every request in flight gets
an ``error`` event of kind ``engine_died`` with a clear message, and a fresh worker is
started at once so the next request works; the caller's conversation lives in the caller.
"""

from __future__ import annotations

import collections
import itertools
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator

from engine import privacy
from engine.errors import UserError
from engine.settings import EngineSettings, SamplingParams

TERMINAL_EVENTS = ("done", "error")


class EngineRequestError(UserError, RuntimeError):
    """A request ended in an error event; ``kind`` tells cancelled / engine_died / ..."""

    def __init__(self, message: str, kind: str = "error", partial: str = "", metrics: dict | None = None):
        super().__init__(message)
        self.kind = kind
        self.partial = partial
        self.metrics = metrics or {}


class RequestHandle:
    """One request's events; iterate :meth:`events` or call :meth:`result`."""

    def __init__(self, client: "EngineClient", request_id: str):
        self.id = request_id
        self._client = client
        self._events: "queue.Queue[dict]" = queue.Queue()
        self.finished = False
        self.final: dict | None = None

    def _push(self, event: dict) -> None:
        self._events.put(event)

    def events(self, timeout: float | None = None) -> Iterator[dict]:
        """Yield events until ``done`` or ``error`` (inclusive). ``timeout`` bounds each wait."""
        while not self.finished:
            try:
                event = self._events.get(timeout=timeout)
            except queue.Empty:
                raise TimeoutError(f"No answer from the engine for request {self.id} in {timeout} s.") from None
            if event.get("event") in TERMINAL_EVENTS:
                self.finished = True
                self.final = event
            yield event

    def stream(self, on_text: Callable[[str], None] | None = None, timeout: float | None = None) -> dict:
        """Feed token text to ``on_text`` and return the ``done`` event; raise on error."""
        for event in self.events(timeout):
            kind = event.get("event")
            if kind == "token" and on_text is not None:
                on_text(event.get("text", ""))
            elif kind == "error":
                raise EngineRequestError(event.get("message", "The engine failed."), event.get("kind", "error"),
                                         event.get("partial", ""), event.get("metrics"))
            elif kind == "done":
                return event
        assert self.final is not None
        return self.final

    def result(self, timeout: float | None = None) -> dict:
        return self.stream(None, timeout)

    def cancel(self) -> None:
        self._client.cancel(self.id)


def _adapter_option(adapters) -> dict:
    """``adapters`` as the protocol carries them: paths as strings, scales as floats."""
    if adapters is None:
        return {}
    items = []
    for item in adapters:
        if isinstance(item, (str, os.PathLike)):
            item = {"path": item}
        items.append({"path": os.fspath(item["path"]), "scale": float(item.get("scale", 1.0))})
    return {"adapters": items}


def _info(event: dict) -> dict:
    return {k: v for k, v in event.items() if k not in ("event", "state")}


def describe_exit(returncode: int | None) -> str:
    if returncode is None:
        return "it stopped answering"
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        hint = {"SIGKILL": "killed, often for running out of memory", "SIGSEGV": "crashed", "SIGABRT": "aborted"}.get(name)
        return f"{name}{', ' + hint if hint else ''}"
    return f"exit code {returncode}"


class EngineClient:
    """Owns one engine worker process at a time; see the module docstring."""

    #: More unexpected deaths than this within RESTART_WINDOW_S stops automatic restarts.
    MAX_RESTARTS = 5
    RESTART_WINDOW_S = 60.0

    def __init__(
        self,
        settings: EngineSettings | None = None,
        *,
        log_path: str | os.PathLike | None = None,
        on_status: Callable[[str, dict], None] | None = None,
        python: str | None = None,
    ):
        self.settings = settings or EngineSettings()
        self.log_path = Path(log_path) if log_path else None
        self.on_status = on_status
        self.python = python or sys.executable
        self._lock = threading.RLock()
        self._ids = itertools.count(1)
        self._pending: dict[str, RequestHandle] = {}
        self._proc: subprocess.Popen | None = None
        self._threads: list[threading.Thread] = []
        self._closing = False
        self._deaths: collections.deque[float] = collections.deque(maxlen=self.MAX_RESTARTS + 1)
        self._stderr_tail: collections.deque[str] = collections.deque(maxlen=200)
        self.state = "stopped"
        self.restarts = 0
        self.last_error: str | None = None

    # ----- lifecycle --------------------------------------------------------------------
    def __enter__(self) -> "EngineClient":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def pid(self) -> int | None:
        proc = self._proc
        return proc.pid if proc is not None and proc.poll() is None else None

    def _set_state(self, state: str, **info: Any) -> None:
        self.state = state
        if self.on_status is not None:
            try:
                self.on_status(state, info)
            except Exception:
                pass

    def start(self) -> None:
        with self._lock:
            if self._proc is not None and self._proc.poll() is None:
                return
            self._closing = False
            self._spawn()

    def _spawn(self) -> None:
        env = privacy.set_offline_environment(dict(os.environ))
        env["PYTHONUNBUFFERED"] = "1"
        # The worker must find the `engine` package even when the app runs from a checkout.
        root = str(Path(__file__).resolve().parent.parent)
        env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        self._set_state("starting")
        proc = subprocess.Popen(
            [self.python, "-m", "engine.worker", "--settings", json.dumps(self.settings.to_dict())],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            cwd=root,
            # Its own session: Ctrl+C in a terminal stops the reply (the CLI cancels), not the engine.
            start_new_session=True,
            close_fds=True,
        )
        self._proc = proc
        out_reader = threading.Thread(target=self._read_events, args=(proc,), name=f"engine-events-{proc.pid}", daemon=True)
        err_reader = threading.Thread(target=self._read_stderr, args=(proc,), name=f"engine-log-{proc.pid}", daemon=True)
        self._threads = [t for t in self._threads if t.is_alive()] + [out_reader, err_reader]
        out_reader.start()
        err_reader.start()

    def close(self, timeout: float = 10.0) -> None:
        """Stop the worker (politely, then by force) and join every thread of the client."""
        with self._lock:
            self._closing = True
            proc = self._proc
        if proc is not None and proc.poll() is None:
            try:
                self._write({"id": None, "method": "shutdown"})
                proc.stdin.close()
            except (OSError, ValueError):
                pass
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for thread in list(self._threads):
            thread.join(timeout=timeout)
        with self._lock:
            self._fail_pending("The engine was closed.", "closed")
            self._set_state("stopped")

    def restart(self, timeout: float = 10.0) -> None:
        """Stop the worker and start a fresh one with :attr:`settings` as they are now, so that
        new threads or a new context length apply without restarting the app. Requests in flight
        end with "The engine was closed."; loaded models load again on their next request.
        Any thread but a GUI's: it waits for the old process to exit."""
        self.close(timeout)
        self.start()

    # ----- reading ----------------------------------------------------------------------
    def _read_stderr(self, proc: subprocess.Popen) -> None:
        log_file = None
        if self.log_path is not None:
            try:
                self.log_path.parent.mkdir(parents=True, exist_ok=True)
                log_file = open(self.log_path, "a", encoding="utf-8")
            except OSError:
                log_file = None
        try:
            for raw in proc.stderr:
                line = raw.decode("utf-8", "replace").rstrip()
                self._stderr_tail.append(line)
                if log_file is not None:
                    log_file.write(line + "\n")
                    log_file.flush()
        finally:
            if log_file is not None:
                log_file.close()

    def _read_events(self, proc: subprocess.Popen) -> None:
        for raw in proc.stdout:
            try:
                event = json.loads(raw)
            except ValueError:
                continue
            request_id = event.get("id")
            if request_id is None:
                if event.get("event") == "status":
                    self._set_state(event.get("state", "ready"), **_info(event))
                continue
            if event.get("event") == "status":
                self._set_state(event.get("state", "ready"), **_info(event))
            with self._lock:
                handle = self._pending.get(request_id)
                if event.get("event") in TERMINAL_EVENTS:
                    self._pending.pop(request_id, None)
            if handle is not None:
                handle._push(event)
        returncode = proc.wait()
        self._on_exit(proc, returncode)

    def _on_exit(self, proc: subprocess.Popen, returncode: int) -> None:
        with self._lock:
            if proc is not self._proc:
                return
            if self._closing:
                return
            reason = describe_exit(returncode)
            self.last_error = f"The engine stopped unexpectedly ({reason})."
            now = time.monotonic()
            self._deaths.append(now)
            recent = [t for t in self._deaths if now - t < self.RESTART_WINDOW_S]
            restart = len(recent) <= self.MAX_RESTARTS
            message = (
                f"The engine stopped unexpectedly ({reason}) while working on this request. "
                + ("It has been restarted; your conversation is intact, so you can try again."
                   if restart else "It keeps failing, so it was not restarted; check the model and the log.")
            )
            self._fail_pending(message, "engine_died")
            self._set_state("error", message=self.last_error)
            if restart:
                self.restarts += 1
                self._spawn()
            else:
                self._proc = None

    def _fail_pending(self, message: str, kind: str) -> None:
        pending, self._pending = self._pending, {}
        for handle in pending.values():
            handle._push({"id": handle.id, "event": "error", "message": message, "kind": kind})

    # ----- writing ----------------------------------------------------------------------
    def _write(self, message: dict) -> None:
        proc = self._proc
        if proc is None or proc.stdin is None:
            raise BrokenPipeError("engine not running")
        data = (json.dumps(message, ensure_ascii=False) + "\n").encode("utf-8")
        proc.stdin.write(data)
        proc.stdin.flush()

    def request(self, method: str, params: dict | None = None) -> RequestHandle:
        """Send one request; its events arrive on the returned handle."""
        with self._lock:
            if self._closing:
                raise EngineRequestError("The engine is closed.", "closed")
            if self._proc is None or self._proc.poll() is not None:
                self._spawn()
            request_id = f"r{next(self._ids)}"
            handle = RequestHandle(self, request_id)
            self._pending[request_id] = handle
            try:
                self._write({"id": request_id, "method": method, "params": params or {}})
            except (OSError, ValueError):
                # The worker died between the check and the write; its exit handler will
                # restart it and fail this request with a clear message.
                pass
        return handle

    def cancel(self, request_id: str) -> None:
        with self._lock:
            if request_id not in self._pending:
                return
            try:
                self._write({"id": None, "method": "cancel", "params": {"id": request_id}})
            except (OSError, ValueError):
                pass

    # ----- conveniences -----------------------------------------------------------------
    def ping(self, timeout: float | None = 60.0) -> dict:
        return self.request("ping").result(timeout)["result"]

    def load(self, model_path: str, timeout: float | None = None) -> dict:
        return self.request("load", {"model": str(model_path)}).result(timeout)["result"]

    def inspect(self, path: str, timeout: float | None = None) -> dict:
        return self.request("inspect", {"path": str(path)}).result(timeout)["result"]

    def chat(self, model_path: str, messages: list[dict], sampling: SamplingParams | dict | None = None,
             adapters: list[dict] | None = None, **options: Any) -> RequestHandle:
        """``adapters``: GGUF LoRA adapters for this request, ``[{"path": ..., "scale": 1.0}]``;
        the worker switches them on the loaded base (none when omitted)."""
        if isinstance(sampling, SamplingParams):
            sampling = sampling.to_dict()
        return self.request("chat", {"model": str(model_path), "messages": messages, "sampling": sampling or {},
                                     **_adapter_option(adapters), **options})

    def complete(self, model_path: str, prompt: str, sampling: SamplingParams | dict | None = None,
                 adapters: list[dict] | None = None, **options: Any) -> RequestHandle:
        if isinstance(sampling, SamplingParams):
            sampling = sampling.to_dict()
        return self.request("complete", {"model": str(model_path), "prompt": prompt, "sampling": sampling or {},
                                         **_adapter_option(adapters), **options})

    def load_adapter(self, model_path: str, adapter_path: str, timeout: float | None = None) -> dict:
        """Check a GGUF LoRA adapter against a base model and load it (inactive) in the
        worker; returns its alpha, rank and tensor count. Raises EngineRequestError of kind
        ``bad_adapter`` with a clear message when it does not fit."""
        return self.request("load_adapter", {"model": str(model_path), "path": str(adapter_path)}).result(timeout)["result"]

    def adapters(self, timeout: float | None = 60.0) -> dict:
        """Loaded and active adapters per loaded model, and how many base loads happened."""
        return self.request("adapters").result(timeout)["result"]

    def tokenize(self, model_path: str, text: str, add_special: bool = True) -> list[int]:
        handle = self.request("tokenize", {"model": str(model_path), "text": text, "add_special": add_special})
        return handle.result()["result"]["tokens"]

    def embed(self, model_path: str, texts: list[str], timeout: float | None = None,
              with_metrics: bool = False):
        """Unit-length float32 embeddings of ``texts`` as lists of floats (one per text).

        With ``with_metrics`` returns ``(vectors, metrics)`` where vectors is a float32
        numpy array; any thread, blocks until the worker answers.
        """
        import base64

        import numpy as np

        if not texts:
            empty = np.zeros((0, 0), dtype=np.float32)
            return (empty, {}) if with_metrics else []
        handle = self.request("embed", {"model": str(model_path), "texts": list(texts), "encoding": "base64"})
        done = handle.result(timeout)
        result = done["result"]
        array = np.frombuffer(base64.b64decode(result["base64"]), dtype="<f4").reshape(result["count"], result["dim"])
        if with_metrics:
            return array.astype(np.float32), done.get("metrics", {})
        return array.tolist()

    def classify(self, model_path: str, texts: list[str], labels: list[str], prefix: str = "",
                 template: str = "{text}", **options: Any) -> RequestHandle:
        """Label log-probabilities for many texts (worker ``classify``); ``scores`` events
        carry each finished batch, the ``done`` result all of them."""
        return self.request("classify", {"model": str(model_path), "texts": list(texts), "labels": list(labels),
                                         "prefix": prefix, "template": template,
                                         **_adapter_option(options.pop("adapters", None)), **options})

    def generate_batch(self, model_path: str, items: list[str], prefix: str = "", max_tokens: int | list[int] = 256,
                       stop: list[str] | None = None, **options: Any) -> RequestHandle:
        """Greedy continuations of prefix + each item, side by side (worker ``generate_batch``);
        ``token`` events carry ``index``, ``item`` events each finished continuation."""
        return self.request("generate_batch", {"model": str(model_path), "items": list(items), "prefix": prefix,
                                               "max_tokens": max_tokens, "stop": list(stop or []),
                                               **_adapter_option(options.pop("adapters", None)), **options})

    def stderr_tail(self, lines: int = 20) -> list[str]:
        return list(self._stderr_tail)[-lines:]
