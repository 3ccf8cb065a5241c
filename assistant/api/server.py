"""The local OpenAI-compatible API: ``/v1/models``, ``/v1/chat/completions`` (streamed or
not), ``/v1/completions`` and ``/v1/embeddings`` on 127.0.0.1, behind a bearer token.

Why here and not in ``engine/`` (where ARCHITECTURE.md lists it): the server answers with
the library's models and their task routing, the user's sampling defaults and the token in
the data folder, all of which live in ``assistant`` (``ModelLibrary``, ``AppSettings``,
``AppPaths``) and reach it through the composition root's ``Services``; ``engine`` may not
import ``assistant``. It needs nothing new from the engine: requests go through the one
``services.engine`` client, exactly as the window's do.

Threads (all owned by :class:`ApiServer`, all joined by :meth:`ApiServer.stop`):

- ``api-http``: uvicorn's asyncio event loop running the Starlette app. Handlers parse,
  authenticate and validate on the loop, then hand a :class:`_Job` to the fair queue and
  await its events on an ``asyncio.Queue``.
- ``api-dispatch``: takes one job at a time from :class:`FairQueue` (round-robin across
  clients, first-in first-out within a client), sends it to the engine worker and passes
  each engine event back to the loop with ``call_soon_threadsafe``. One job at a time keeps
  the order fair: the worker runs requests one by one anyway, and handing it all of them at
  once would let one busy client's burst starve the others.

A client that disconnects (mid-stream or while waiting) cancels its job: taken out of the
queue if it has not started, cancelled in the engine (which also stops prompt processing)
if it has.

Server library: Starlette on uvicorn (h11, plain asyncio). Both are widely used and well
kept, pure Python, run in a thread of an existing process (the window) without signal
handlers, and Starlette's streaming response watches for the client's disconnect while it
streams, which is what cancelling the engine request needs.

Why one module of ~900 lines: the request queue, the dispatcher thread and the endpoints share
each request's job state (queued, running, cancelled) and its lock; apart, that state would
cross module boundaries.
"""

from __future__ import annotations

import asyncio
import base64
import errno
import hmac
import ipaddress
import json
import logging
import os
import socket
import threading
import time
import uuid
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, AsyncIterator, Callable

import uvicorn
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route

from assistant.chat.events import Reasoning, ReplyDone, ReplyFailed, Token
from assistant.chat.session import ChatSession
from assistant.errors import ApiServerError, ChatError
from assistant.models.library import LibraryError, ModelRecord
from assistant.settings import load_or_create_api_token
from engine.client import EngineRequestError
from engine.settings import SamplingParams

if TYPE_CHECKING:
    from assistant.app import Services
    from engine.client import RequestHandle

log = logging.getLogger("assistant.api.server")

#: The explicit command-line flag that allows a non-loopback address; named so that
#: nobody types it by accident.
EXPOSE_FLAG = "--i-understand-this-exposes-the-api"


@dataclass
class ApiServerConfig:
    """How the server listens and how much it queues."""

    # Loopback only: other programs of this user reach it, nothing on the network does.
    host: str = "127.0.0.1"
    # 0 picks a free port (tests); the app passes AppSettings.api_server_port (8642).
    port: int = 8642
    # Must be set, by the user's explicit flag, to listen on anything but loopback.
    allow_non_loopback: bool = False
    # Requests waiting for the engine across all clients; one more gets 503 and Retry-After.
    max_pending: int = 32
    # Requests one client may have waiting; one more gets 429 (it is flooding the queue).
    max_pending_per_client: int = 8
    # Largest request body; embedding a whole book in one call is a client bug, not a need.
    max_body_bytes: int = 8 * 1024 * 1024
    # Most texts in one embeddings request (the worker batches them; this bounds memory).
    max_embedding_inputs: int = 2048
    # Seconds uvicorn waits for open connections at shutdown; jobs are cancelled first,
    # so streams end at once and this is only a backstop.
    graceful_shutdown_s: int = 3


def is_loopback(host: str) -> bool:
    name = host.strip("[]")
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def check_host(host: str, allow_non_loopback: bool) -> None:
    """Refuse a non-loopback address unless the user asked for it by the explicit flag
    (the CLI then prints the warning)."""
    if is_loopback(host):
        return
    if not allow_non_loopback:
        raise ApiServerError(
            f"Refusing to listen on {host}: the API would be reachable from other machines. It listens on "
            f"127.0.0.1 only, unless you pass {EXPOSE_FLAG} together with --host.")


# ----- errors in OpenAI's shape ------------------------------------------------------------
class ApiError(Exception):
    """One request's failure, answered as ``{"error": {message, type, param, code}}``."""

    def __init__(self, status: int, message: str, code: str | None = None, param: str | None = None,
                 kind: str = "invalid_request_error", headers: dict | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.param = param
        self.kind = kind
        self.headers = headers or {}

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}}


def _engine_error(event: dict) -> ApiError:
    kind = event.get("kind", "error")
    message = event.get("message") or "The engine failed."
    if kind in ("engine_died", "closed"):
        return ApiError(503, message, kind, kind="server_error", headers={"Retry-After": "1"})
    if kind in ("bad_request", "template"):
        return ApiError(400, message, kind)
    if kind == "too_large":
        return ApiError(413, message, kind)
    if kind == "locked":
        return ApiError(423, message, kind)
    return ApiError(500, message, kind, kind="server_error")


# ----- fair queue ----------------------------------------------------------------------------
class QueueFullError(Exception):
    def __init__(self, per_client: bool):
        super().__init__("per client" if per_client else "total")
        self.per_client = per_client


class FairQueue:
    """Jobs waiting for the engine: round-robin across clients, FIFO within each client.

    Any thread (a condition variable guards it): the event loop puts and removes, the
    dispatcher thread takes.
    """

    def __init__(self, max_pending: int, max_per_client: int):
        self.max_pending = max_pending
        self.max_per_client = max_per_client
        self._lanes: "OrderedDict[str, deque]" = OrderedDict()
        self._count = 0
        self._closed = False
        self._cond = threading.Condition()

    def __len__(self) -> int:
        with self._cond:
            return self._count

    def put(self, client: str, item: Any) -> None:
        with self._cond:
            if self._closed:
                raise QueueFullError(per_client=False)
            lane = self._lanes.get(client)
            if lane is not None and len(lane) >= self.max_per_client:
                raise QueueFullError(per_client=True)
            if self._count >= self.max_pending:
                raise QueueFullError(per_client=False)
            if lane is None:
                lane = self._lanes[client] = deque()
            lane.append(item)
            self._count += 1
            self._cond.notify()

    def get(self) -> Any | None:
        """The next item (blocks); None once closed. The client served moves to the back."""
        with self._cond:
            while not self._closed and not self._count:
                self._cond.wait()
            if self._closed:
                return None
            client, lane = next(iter(self._lanes.items()))
            item = lane.popleft()
            self._count -= 1
            del self._lanes[client]
            if lane:
                self._lanes[client] = lane  # re-inserted at the end: the next client goes first
            return item

    def remove(self, client: str, item: Any) -> bool:
        with self._cond:
            lane = self._lanes.get(client)
            if lane is None or item not in lane:
                return False
            lane.remove(item)
            self._count -= 1
            if not lane:
                del self._lanes[client]
            return True

    def close(self) -> list:
        """Wake the dispatcher for good; returns the items that never ran."""
        with self._cond:
            self._closed = True
            left = [item for lane in self._lanes.values() for item in lane]
            self._lanes.clear()
            self._count = 0
            self._cond.notify_all()
            return left


# ----- jobs ----------------------------------------------------------------------------------
@dataclass(eq=False)
class _Job:
    """One API request on its way through the engine. Created on the event loop; the
    dispatcher thread sets ``handle`` and ``state``; ``cancel`` may come from either."""

    kind: str  # "chat", "complete" or "embed"
    client: str
    model: ModelRecord
    params: dict  # messages / prompt / texts, and sampling
    loop: asyncio.AbstractEventLoop
    events: asyncio.Queue = field(default_factory=asyncio.Queue)
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:24])
    state: str = "queued"  # queued -> running -> finished
    outcome: str = ""  # "done", "cancelled" or the engine's error kind
    metrics: dict = field(default_factory=dict)
    handle: "RequestHandle | None" = None
    _cancelled: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def deliver(self, event: dict) -> None:
        """Dispatcher thread: pass an engine event to the waiting handler."""
        try:
            self.loop.call_soon_threadsafe(self.events.put_nowait, event)
        except RuntimeError:  # the loop has closed: nobody waits any more
            pass


@dataclass
class JobRecord:
    """What became of a finished request (kept for the status view and tests)."""

    id: str
    kind: str
    client: str
    model: str
    outcome: str
    completion_tokens: int
    started: bool


# ----- the Settings switch -------------------------------------------------------------------
class ServerSwitch:
    """The window's on/off switch for the server. :meth:`apply` runs on pool threads
    (binding and joining threads must not block the GUI), :meth:`close` on the GUI thread
    at exit. Each apply reads the wanted state when it runs, under a lock, so switch flips
    whose jobs finish out of order still end in the state the user chose last; after
    ``close`` nothing starts again."""

    def __init__(self, services: "Services"):
        self.services = services
        self._lock = threading.Lock()
        self._server: ApiServer | None = None
        self._closed = False
        self._held = False  # the window is locked: a server answers 423 and touches no services

    @property
    def running(self) -> bool:
        server = self._server
        return server is not None and server.running

    def info(self) -> dict | None:
        """``{"url", "token"}`` while serving, else None; any thread."""
        server = self._server
        return {"url": server.url, "token": server.token} if server is not None and server.running else None

    def apply(self, wanted: Callable[[], tuple[bool, int]]) -> dict | None:
        """Bring the server to ``wanted() -> (enabled, port)``; returns :meth:`info`."""
        with self._lock:
            enabled, port = wanted()
            if self._server is not None and (not enabled or self._closed or self._server.port != port):
                self._server.stop()
                self._server = None
            if enabled and self._server is None:
                if self._closed:
                    raise ApiServerError("The window is closing; the API server was not started.")
                self._server = ApiServer(self.services, ApiServerConfig(port=port))
                self._server.locked = self._held
                self._server.start()
            return self.info()

    # The window's lock keeps the server listening, so that other programs get "423 Locked" in
    # words rather than a refused connection, while the services it served are closed.
    def hold(self) -> None:
        """GUI thread, first step of the window's lock (no waiting): from now on every request
        is answered 423 before it reads anything."""
        self._held = True
        server = self._server
        if server is not None:
            server.locked = True

    def drain(self, timeout: float = 30.0) -> bool:
        """Pool thread, after :meth:`hold`: cancel what the server is running or has queued and
        wait until it has let go of the services (so they can be closed). True when it did."""
        server = self._server
        return server.drain(timeout) if server is not None else True

    def release(self, services: "Services") -> None:
        """GUI thread, the window unlocked: serve from the new ``services`` again."""
        with self._lock:
            self.services = services
            server = self._server
            if server is not None:
                server.services = services
            self._held = False
            if server is not None:
                server.locked = False

    def close(self) -> None:
        with self._lock:
            self._closed = True
            server, self._server = self._server, None
        if server is not None:
            server.stop()

    def token(self) -> str:
        """The token, shown in Settings while the server is off too (reads the data folder)."""
        return load_or_create_api_token(self.services.paths.data_dir)


# ----- the server ----------------------------------------------------------------------------
class ApiServer:
    """Owns the HTTP thread and the dispatcher thread; start and stop from any one thread
    (the CLI's main thread, or a job of the window)."""

    def __init__(self, services: "Services", config: ApiServerConfig | None = None, token: str | None = None):
        self.services = services
        self.config = config or ApiServerConfig()
        self.token = token or load_or_create_api_token(services.paths.data_dir)
        self._queue = FairQueue(self.config.max_pending, self.config.max_pending_per_client)
        self._jobs: set[_Job] = set()
        self._jobs_lock = threading.Lock()
        self.finished: deque[JobRecord] = deque(maxlen=200)
        self._embed_paths: dict[str, str] = {}
        self._uvicorn = None
        self._http_thread: threading.Thread | None = None
        self._dispatch_thread: threading.Thread | None = None
        self.host = self.config.host
        self.port = self.config.port
        self._stopping = False
        #: Set while the window is locked (:meth:`ServerSwitch.hold`): requests are answered 423
        #: without touching the services, which are closed until the window unlocks.
        self.locked = False

    # ----- lifecycle ----------------------------------------------------------------------
    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/v1"

    @property
    def running(self) -> bool:
        return self._http_thread is not None and self._http_thread.is_alive()

    def start(self, timeout: float = 15.0) -> "ApiServer":
        """Bind, start both threads, return once the server accepts connections."""
        if self.running:
            return self
        host = "127.0.0.1" if self.config.host == "localhost" else self.config.host
        check_host(host, self.config.allow_non_loopback)
        sock = self._bind(host, int(self.config.port))
        self.host, self.port = host, sock.getsockname()[1]
        self._stopping = False
        self._queue = FairQueue(self.config.max_pending, self.config.max_pending_per_client)
        config = uvicorn.Config(
            self._app(), lifespan="off", http="h11", ws="none", loop="asyncio", interface="asgi3",
            log_config=None, access_log=False, server_header=False, proxy_headers=False,
            timeout_graceful_shutdown=self.config.graceful_shutdown_s,
        )
        self._uvicorn = uvicorn.Server(config)
        self._dispatch_thread = threading.Thread(target=self._dispatch_loop, name="api-dispatch", daemon=True)
        self._dispatch_thread.start()
        self._http_thread = threading.Thread(target=self._uvicorn.run, kwargs={"sockets": [sock]},
                                             name="api-http", daemon=True)
        self._http_thread.start()
        deadline = time.monotonic() + timeout
        while not self._uvicorn.started:
            if not self._http_thread.is_alive() or time.monotonic() > deadline:
                sock.close()
                self.stop()
                raise ApiServerError(f"The API server did not start on {host}:{self.port}.")
            time.sleep(0.01)
        return self

    def _bind(self, host: str, port: int) -> socket.socket:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # The privacy guard refuses wildcard binds; the user's explicit flag is the one exception.
        allow_env = self.config.allow_non_loopback and not is_loopback(host)
        previous = os.environ.get("ASSISTANT_ALLOW_EXTERNAL_BIND")
        try:
            if allow_env:
                os.environ["ASSISTANT_ALLOW_EXTERNAL_BIND"] = "1"
            sock.bind((host, port))
        except OSError as exc:
            sock.close()
            if exc.errno == errno.EADDRINUSE:
                raise ApiServerError(f"Port {port} on {host} is already in use; choose another port.") from exc
            if exc.errno == errno.EACCES:
                raise ApiServerError(f"Port {port} needs administrator rights; choose one above 1024.") from exc
            if exc.errno == errno.EADDRNOTAVAIL:
                raise ApiServerError(f"{host} is not an address of this machine.") from exc
            raise ApiServerError(f"Cannot listen on {host}:{port}: {exc.strerror or exc}.") from exc
        finally:
            if allow_env:
                if previous is None:
                    os.environ.pop("ASSISTANT_ALLOW_EXTERNAL_BIND", None)
                else:
                    os.environ["ASSISTANT_ALLOW_EXTERNAL_BIND"] = previous
        return sock

    def stop(self, timeout: float = 15.0) -> None:
        """Cancel every request, stop accepting, join both threads. Idempotent."""
        self._stopping = True
        for job in self._queue.close():
            self._finish(job, "cancelled", started=False)
            job.deliver({"event": "error", "kind": "closed", "message": "The API server is shutting down."})
        with self._jobs_lock:
            running = list(self._jobs)
        for job in running:
            self._cancel(job)
        if self._uvicorn is not None:
            self._uvicorn.should_exit = True
        for thread in (self._http_thread, self._dispatch_thread):
            if thread is not None:
                thread.join(timeout)
        self._http_thread = self._dispatch_thread = None

    def drain(self, timeout: float = 30.0) -> bool:
        """Cancel every queued and running request (the server keeps listening) and wait until
        none is left; True when none is. Any thread but the event loop's."""
        with self._jobs_lock:
            jobs = list(self._jobs)
        for job in jobs:
            self._cancel(job)
        deadline = time.monotonic() + timeout
        while True:
            with self._jobs_lock:
                if not self._jobs:
                    return True
            if time.monotonic() > deadline:
                return False
            time.sleep(0.02)

    def wait(self) -> None:
        """Block until the server stops (the CLI's main thread; Ctrl+C interrupts)."""
        while self.running:
            time.sleep(0.2)

    def __enter__(self) -> "ApiServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ----- dispatcher (api-dispatch thread) ----------------------------------------------
    def _dispatch_loop(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            with job._lock:
                if job._cancelled:
                    continue
                job.state = "running"
            if self.locked:  # queued before the lock: it must not reach the closed services
                from assistant.vault.vault import locked_message

                self._fail(job, "locked", locked_message())
                continue
            try:
                self._run(job)
            except (LibraryError, ChatError) as exc:
                self._fail(job, "bad_request", str(exc))
            except EngineRequestError as exc:  # the engine is closed or failed to start
                self._fail(job, exc.kind, str(exc))
            except Exception as exc:  # one failed request must not stop the server
                log.exception("API request %s failed", job.id)
                self._fail(job, "internal", f"The request failed: {type(exc).__name__}: {exc}")

    def _fail(self, job: _Job, kind: str, message: str) -> None:
        self._finish(job, kind)
        job.deliver({"event": "error", "kind": kind, "message": message})

    def _run(self, job: _Job) -> None:
        if job.kind == "chat":
            self._run_chat(job)
            return
        engine = self.services.engine
        if job.kind == "complete":
            handle = engine.complete(job.model.path, job.params["prompt"], job.params["sampling"])
        else:
            handle = engine.request("embed", {"model": self._embed_path(job.model), "texts": job.params["texts"],
                                              "encoding": "base64"})
        with job._lock:
            job.handle = handle
            cancelled = job._cancelled
        if cancelled:
            handle.cancel()
        while not handle.finished:
            try:
                for event in handle.events(timeout=1.0):
                    if event.get("event") in ("done", "error"):
                        job.metrics = event.get("metrics") or {}
                        self._finish(job, "done" if event["event"] == "done" else event.get("kind", "error"))
                    job.deliver(event)
            except TimeoutError:
                if self._stopping:
                    handle.cancel()

    def _run_chat(self, job: _Job) -> None:
        """A chat request is one turn of a :class:`ChatSession` that writes nothing (the request
        carries the whole conversation), so the API replies as the window does: the same prompt
        building, the adapter chosen for chat. Its events go out in the engine's protocol,
        which the HTTP side already speaks. Dispatcher thread."""
        messages = job.params["messages"]
        system = "\n\n".join(m["content"] for m in messages if m["role"] == "system")
        session = ChatSession(self.services, persist=False, model_id=job.model.id, system_prompt=system,
                              documents=None, sampling=SamplingParams.from_dict(job.params["sampling"]),
                              history=[m for m in messages if m["role"] != "system"], worked_examples=False)
        with job._lock:
            job.handle = session  # _cancel() calls its cancel(): the engine stops, prompt processing too
            cancelled = job._cancelled
        if cancelled:
            session.cancel()
        for event in session.reply():
            if isinstance(event, Token):
                job.deliver({"event": "token", "text": event.text})
            elif isinstance(event, Reasoning):
                job.deliver({"event": "reasoning", "text": event.text})
            elif isinstance(event, ReplyDone):
                job.metrics = event.metrics
                self._finish(job, "done")
                job.deliver({"event": "done", "metrics": event.metrics,
                             "result": {"text": event.message.text, "finish_reason": event.finish_reason,
                                        "reasoning": event.message.reasoning}})
            elif isinstance(event, ReplyFailed):
                job.metrics = event.metrics
                self._finish(job, event.kind)
                job.deliver({"event": "error", "kind": event.kind, "message": event.text})

    def _embed_path(self, record: ModelRecord) -> str:
        """The GGUF the worker embeds with: MiniLM ships as safetensors, converted once."""
        cached = self._embed_paths.get(record.path)
        if cached is None:
            from engine.convert_bert import ensure_gguf

            path = Path(record.path)
            cached = str(path if path.is_file() else ensure_gguf(path, self.services.paths.models_dir))
            self._embed_paths[record.path] = cached
        return cached

    def _finish(self, job: _Job, outcome: str, started: bool = True) -> None:
        with job._lock:
            if job.state == "finished":
                return
            job.state = "finished"
            job.outcome = outcome
        with self._jobs_lock:
            self._jobs.discard(job)
        self.finished.append(JobRecord(job.id, job.kind, job.client, job.model.id, outcome,
                                       int(job.metrics.get("completion_tokens") or 0), started))

    # ----- submitting and cancelling (event loop) -----------------------------------------
    def _submit(self, job: _Job) -> None:
        if self._stopping:
            raise ApiError(503, "The API server is shutting down.", "shutting_down", kind="server_error")
        if self.locked:  # authorized a moment before the window locked
            from assistant.vault.vault import locked_message

            raise ApiError(423, locked_message(), "locked")
        with self._jobs_lock:
            self._jobs.add(job)
        try:
            self._queue.put(job.client, job)
        except QueueFullError as exc:
            with self._jobs_lock:
                self._jobs.discard(job)
            if exc.per_client:
                raise ApiError(429, f"This client already has {self.config.max_pending_per_client} requests "
                                    "waiting for the engine; wait for them to finish.", "too_many_pending",
                               kind="rate_limit_error", headers={"Retry-After": "2"}) from None
            raise ApiError(503, f"The engine is busy: {self.config.max_pending} requests are already waiting. "
                                "Try again shortly.", "queue_full", kind="server_error",
                           headers={"Retry-After": "2"}) from None

    def _cancel(self, job: _Job) -> None:
        """The client went away (or the server stops): drop the job or stop it in the engine."""
        with job._lock:
            if job.state == "finished" or job._cancelled:
                return
            job._cancelled = True
            handle = job.handle
            queued = job.state == "queued"
        if queued and self._queue.remove(job.client, job):
            self._finish(job, "cancelled", started=False)
        elif handle is not None:
            handle.cancel()  # the dispatcher records the outcome when the engine confirms

    # ----- HTTP (api-http thread, the event loop) -----------------------------------------
    def _app(self):
        routes = [
            Route("/v1/models", self._endpoint(self._models), methods=["GET"]),
            Route("/v1/models/{model_id:path}", self._endpoint(self._model), methods=["GET"]),
            Route("/v1/chat/completions", self._endpoint(self._chat), methods=["POST"]),
            Route("/v1/completions", self._endpoint(self._completions), methods=["POST"]),
            Route("/v1/embeddings", self._endpoint(self._embeddings), methods=["POST"]),
        ]
        # A web page can point a name at 127.0.0.1 (DNS rebinding); such requests carry that
        # name in Host, so on loopback only loopback names are served.
        hosts = ["*"] if not is_loopback(self.host) else ["127.0.0.1", "localhost", "::1", "[::1]"]
        return Starlette(routes=routes, middleware=[Middleware(TrustedHostMiddleware, allowed_hosts=hosts)])

    def _endpoint(self, handler):
        async def endpoint(request):
            try:
                self._authorize(request)
                return await handler(request)
            except ApiError as exc:
                return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)
            except _ClientGone:
                return JSONResponse({}, status_code=499)  # nobody reads it; uvicorn drops it
            except Exception as exc:
                log.exception("API handler failed")
                error = ApiError(500, f"The server failed: {type(exc).__name__}: {exc}", "internal",
                                 kind="server_error")
                return JSONResponse(error.body(), status_code=500)

        return endpoint

    def _authorize(self, request) -> None:
        header = request.headers.get("authorization", "")
        scheme, _, given = header.partition(" ")
        # compare_digest takes as long for a wrong token as for a right one of the same length.
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), self.token.encode()):
            raise ApiError(401, "Missing or wrong API token. Send `Authorization: Bearer TOKEN` with the token "
                                "shown in the assistant's Settings (or by `assistant serve --show-token`).",
                           "invalid_api_key", headers={"WWW-Authenticate": "Bearer"})
        # Checked per request (one stat and a pid probe): the window may lock at any time, and a
        # locked app answers nothing from the user's data until it is unlocked (423 Locked).
        # ``locked`` is the window's own lock of the server it runs, set before its marker is.
        from assistant.vault.vault import Vault, locked_message

        if self.locked or Vault(self.services.paths.data_dir, self.services.paths.database).is_locked():
            raise ApiError(423, locked_message(), "locked")

    async def _json(self, request) -> dict:
        size = 0
        parts = []
        async for chunk in request.stream():
            size += len(chunk)
            if size > self.config.max_body_bytes:
                raise ApiError(413, f"The request is larger than {self.config.max_body_bytes // (1024 * 1024)} MiB.",
                               "request_too_large")
            parts.append(chunk)
        try:
            body = json.loads(b"".join(parts) or b"null")
        except ValueError as exc:
            raise ApiError(400, f"The request body is not valid JSON ({exc}).", "invalid_json") from None
        if not isinstance(body, dict):
            raise ApiError(400, "The request body must be a JSON object.", "invalid_json")
        return body

    def _client(self, request, body: dict) -> str:
        """Whose lane a request waits in: the OpenAI ``user`` field, else the connection."""
        user = body.get("user")
        if isinstance(user, str) and user:
            return "user:" + user[:200]
        peer = request.client
        return f"peer:{peer.host}:{peer.port}" if peer else "peer:?"

    # ----- models ---------------------------------------------------------------------------
    def _model_entry(self, record: ModelRecord) -> dict:
        return {"id": record.id, "object": "model", "created": int(record.added_at or 0),
                "owned_by": "user" if record.source == "user" else "local-pack",
                "name": record.display_name, "tasks": record.tasks}

    async def _models(self, request):
        records = self.services.library.list()
        return JSONResponse({"object": "list", "data": [self._model_entry(r) for r in records]})

    async def _model(self, request):
        return JSONResponse(self._model_entry(self._resolve(request.path_params["model_id"], None)))

    def _resolve(self, name: Any, task: str | None) -> ModelRecord:
        library = self.services.library
        if name in (None, "") and task is not None:
            try:
                return library.for_task(task)
            except LibraryError as exc:
                raise ApiError(404, str(exc), "model_not_found", "model") from None
        if not isinstance(name, str):
            raise ApiError(400, "'model' must be a string: a model id from /v1/models.", "invalid_model", "model")
        try:
            record = library.get(name)
        except LibraryError as exc:
            raise ApiError(404, f"The model {name!r} does not exist here. {exc}", "model_not_found", "model") from None
        if task is not None and task not in record.tasks and not (task == "complete" and record.is_gguf):
            raise ApiError(400, f"The model {record.id} cannot serve {_ENDPOINT_OF[task]}; it is for "
                                f"{', '.join(record.tasks) or 'nothing'}.", "model_not_supported", "model")
        return record

    # ----- generation ---------------------------------------------------------------------
    def _sampling(self, body: dict) -> dict:
        """The window's sampling defaults with the request's OpenAI parameters on top."""
        for name, allowed in (("n", (None, 1)), ("best_of", (None, 1))):
            if body.get(name) not in allowed:
                raise ApiError(400, f"'{name}' must be 1: one reply per request.", "unsupported_parameter", name)
        for name in ("tools", "functions", "logit_bias", "suffix"):
            if body.get(name):
                raise ApiError(400, f"'{name}' is not supported by this server.", "unsupported_parameter", name)
        if body.get("logprobs") not in (None, False, 0):
            raise ApiError(400, "'logprobs' is not supported by this server.", "unsupported_parameter", "logprobs")
        sampling = self.services.settings.sampling.to_dict()
        for name in ("temperature", "top_p", "seed"):
            if body.get(name) is not None:
                sampling[name] = body[name]
        limit = body.get("max_completion_tokens", body.get("max_tokens"))
        if limit is not None:
            sampling["max_tokens"] = limit
        stop = body.get("stop")
        if stop is not None:
            stop = [stop] if isinstance(stop, str) else stop
            if not isinstance(stop, list) or len(stop) > 16 or not all(isinstance(s, str) and s for s in stop):
                raise ApiError(400, "'stop' must be a string or a list of up to 16 non-empty strings.",
                               "invalid_stop", "stop")
            sampling["stop"] = stop
        for name, kind in (("temperature", (int, float)), ("top_p", (int, float)), ("seed", int),
                           ("max_tokens", int)):
            if isinstance(sampling[name], bool) or not isinstance(sampling[name], kind):
                raise ApiError(400, f"'{name}' must be a number.", "invalid_value", name)
        try:
            return SamplingParams.from_dict(sampling).to_dict()
        except (TypeError, ValueError) as exc:
            raise ApiError(400, str(exc), "invalid_value") from None

    @staticmethod
    def _messages(body: dict) -> list[dict]:
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise ApiError(400, "'messages' must be a non-empty list.", "invalid_messages", "messages")
        out = []
        for i, message in enumerate(messages):
            if not isinstance(message, dict) or message.get("role") not in ("system", "developer", "user", "assistant"):
                raise ApiError(400, f"messages[{i}] needs a role of system, user or assistant.", "invalid_messages",
                               "messages")
            content = message.get("content")
            if isinstance(content, list):  # content parts: only text is understood
                texts = []
                for part in content:
                    if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                        raise ApiError(400, f"messages[{i}] has a non-text part; these models read text only.",
                                       "unsupported_content", "messages")
                    texts.append(part["text"])
                content = "\n".join(texts)
            if content is None:
                content = ""
            if not isinstance(content, str):
                raise ApiError(400, f"messages[{i}].content must be text.", "invalid_messages", "messages")
            role = "system" if message["role"] == "developer" else message["role"]
            out.append({"role": role, "content": content})
        return out

    async def _chat(self, request):
        body = await self._json(request)
        record = self._resolve(body.get("model"), "chat")
        params = {"messages": self._messages(body), "sampling": self._sampling(body)}
        return await self._generate(request, body, record, "chat", params)

    async def _completions(self, request):
        body = await self._json(request)
        record = self._resolve(body.get("model"), "complete")
        prompt = body.get("prompt")
        if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
            prompt = prompt[0]
        if not isinstance(prompt, str) or not prompt:
            raise ApiError(400, "'prompt' must be one non-empty string.", "invalid_prompt", "prompt")
        params = {"prompt": prompt, "sampling": self._sampling(body)}
        return await self._generate(request, body, record, "complete", params)

    async def _generate(self, request, body: dict, record: ModelRecord, kind: str, params: dict):
        job = _Job(kind, self._client(request, body), record, params, asyncio.get_running_loop())
        self._submit(job)
        created = int(time.time())
        prefix = "chatcmpl-" if kind == "chat" else "cmpl-"
        headers = {"X-Request-Id": job.id}
        echo = params.get("prompt", "") if kind == "complete" and body.get("echo") else ""
        if body.get("stream"):
            options = body.get("stream_options") or {}
            usage = isinstance(options, dict) and bool(options.get("include_usage"))
            chunks = self._stream_chunks(job, kind, prefix + job.id, created, record.id, usage, echo)
            return _JobStream(chunks, on_close=lambda: self._cancel(job), headers=headers)
        try:
            done = await self._until_done(request, job)
        finally:
            self._cancel(job)  # no-op once finished; stops the engine if this handler is cancelled
        result = done.get("result") or {}
        metrics = done.get("metrics") or {}
        text = echo + (result.get("text") or "")
        finish = _finish_reason(result.get("finish_reason"))
        if kind == "chat":
            message = {"role": "assistant", "content": text}
            if result.get("reasoning"):
                # A reasoning model's thinking, apart from the answer, as DeepSeek's and vLLM's APIs give it.
                message["reasoning_content"] = result["reasoning"]
            choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": finish}
            obj = "chat.completion"
        else:
            choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": finish}
            obj = "text_completion"
        return JSONResponse({"id": prefix + job.id, "object": obj, "created": created, "model": record.id,
                             "choices": [choice], "usage": _usage(metrics)}, headers=headers)

    async def _until_done(self, request, job: _Job) -> dict:
        """The job's ``done`` event; raises ApiError on an engine error, _ClientGone if the
        client disconnects first (the job is cancelled then)."""

        async def collect() -> dict:
            while True:
                event = await job.events.get()
                if event.get("event") == "done":
                    return event
                if event.get("event") == "error":
                    raise _engine_error(event)

        async def disconnected() -> None:
            while (await request.receive())["type"] != "http.disconnect":
                pass

        result = asyncio.ensure_future(collect())
        watcher = asyncio.ensure_future(disconnected())
        try:
            await asyncio.wait({result, watcher}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (result, watcher):
                if not task.done():
                    task.cancel()
        if result.done() and not result.cancelled():
            return result.result()
        self._cancel(job)
        raise _ClientGone()

    async def _stream_chunks(self, job: _Job, kind: str, response_id: str, created: int, model: str,
                             usage: bool, echo: str) -> AsyncIterator[str]:
        """Server-sent events in OpenAI's chunk format, ending with ``data: [DONE]``."""

        def chunk(delta_text: str | None, finish: str | None, first: bool = False, reasoning: str | None = None) -> str:
            if kind == "chat":
                delta: dict = {}
                if first:
                    delta["role"] = "assistant"
                if delta_text is not None:
                    delta["content"] = delta_text
                if reasoning is not None:
                    delta["reasoning_content"] = reasoning
                choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
                obj = "chat.completion.chunk"
            else:
                choice = {"index": 0, "text": delta_text or "", "logprobs": None, "finish_reason": finish}
                obj = "text_completion"
            return _sse({"id": response_id, "object": obj, "created": created, "model": model, "choices": [choice]})

        if kind == "chat":
            yield chunk("", None, first=True)
        elif echo:
            yield chunk(echo, None)
        while True:
            event = await job.events.get()
            name = event.get("event")
            if name == "token":
                if event.get("text"):
                    yield chunk(event["text"], None)
            elif name == "reasoning":
                if event.get("text") and kind == "chat":
                    yield chunk(None, None, reasoning=event["text"])
            elif name == "done":
                result = event.get("result") or {}
                yield chunk(None if kind == "chat" else "", _finish_reason(result.get("finish_reason")))
                if usage:
                    yield _sse({"id": response_id, "object": "chat.completion.chunk" if kind == "chat"
                                else "text_completion", "created": created, "model": model, "choices": [],
                                "usage": _usage(event.get("metrics") or {})})
                break
            elif name == "error":
                yield _sse(_engine_error(event).body())
                break
        yield "data: [DONE]\n\n"

    # ----- embeddings ---------------------------------------------------------------------
    async def _embeddings(self, request):
        import numpy as np
        body = await self._json(request)
        record = self._resolve(body.get("model"), "embed")
        texts = body.get("input")
        if isinstance(texts, str):
            texts = [texts]
        if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
            raise ApiError(400, "'input' must be a string or a non-empty list of strings (token arrays are not "
                                "accepted).", "invalid_input", "input")
        if len(texts) > self.config.max_embedding_inputs:
            raise ApiError(400, f"At most {self.config.max_embedding_inputs} inputs per request.", "invalid_input",
                           "input")
        encoding = body.get("encoding_format") or "float"
        if encoding not in ("float", "base64"):
            raise ApiError(400, "'encoding_format' must be float or base64.", "invalid_value", "encoding_format")
        dimension = record.metadata.get("embedding_length")
        if body.get("dimensions") not in (None, dimension):
            raise ApiError(400, f"{record.id} makes {dimension}-dimensional vectors; 'dimensions' cannot change "
                                "that.", "unsupported_parameter", "dimensions")
        job = _Job("embed", self._client(request, body), record, {"texts": texts}, asyncio.get_running_loop())
        self._submit(job)
        try:
            done = await self._until_done(request, job)
        finally:
            self._cancel(job)
        result = done["result"]
        vectors = np.frombuffer(base64.b64decode(result["base64"]), dtype="<f4").reshape(result["count"],
                                                                                         result["dim"])
        data = []
        for i, row in enumerate(vectors):
            value: Any = (base64.b64encode(row.astype("<f4").tobytes()).decode("ascii") if encoding == "base64"
                          else row.tolist())
            data.append({"object": "embedding", "index": i, "embedding": value})
        tokens = int((done.get("metrics") or {}).get("tokens") or 0)
        return JSONResponse({"object": "list", "data": data, "model": record.id,
                             "usage": {"prompt_tokens": tokens, "total_tokens": tokens}},
                            headers={"X-Request-Id": job.id})


_ENDPOINT_OF = {"chat": "/v1/chat/completions", "complete": "/v1/completions", "embed": "/v1/embeddings"}


class _ClientGone(Exception):
    """The client disconnected before its answer was ready."""


def _sse(obj: dict) -> str:
    return "data: " + json.dumps(obj, ensure_ascii=False) + "\n\n"


def _finish_reason(reason: str | None) -> str:
    return "length" if reason == "length" else "stop"


def _usage(metrics: dict) -> dict:
    prompt = int(metrics.get("prompt_tokens") or 0)
    completion = int(metrics.get("completion_tokens") or 0)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


class _JobStream(StreamingResponse):
    """A streamed reply that cancels its job however the response ends: finished, client
    gone (Starlette cancels the stream on ``http.disconnect``) or server stopping."""

    def __init__(self, content, on_close, headers=None):
        super().__init__(content, media_type="text/event-stream",
                         headers={"Cache-Control": "no-cache", **(headers or {})})
        self._on_close = on_close

    async def __call__(self, scope, receive, send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._on_close()
