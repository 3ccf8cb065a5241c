"""The one adapter between the core's long work and Qt.

Work runs as a :class:`QRunnable` on the window's own :class:`QThreadPool` (never a QThread
subclass, never the GUI thread). Results come back through signals named
``sig_<noun>_<verb>``; the signal objects are created on the GUI thread, so Qt queues every
emission from a pool thread and the connected callbacks run on the GUI thread.

:class:`Jobs` owns the pool and keeps each job (and its signal object) alive until its
result is delivered; after :meth:`Jobs.shutdown` no callback runs, so a closing window
never receives a result for a widget that is gone.
"""

from __future__ import annotations

import sys
import threading
import time
import traceback
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Callable, Iterator

from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal

from ui import operations

if TYPE_CHECKING:
    from assistant.app import Services
    from ui.operations import Turn

#: How often a streaming reply's worker wakes to look for a Stop request.
_POLL_S = 0.1
#: After Stop, how long to wait for the engine to confirm before saving what arrived anyway.
_CANCEL_GRACE_S = 10.0
#: How often (in tokens) a reply from the documents is checked for a loop: the check is a regex
#: over the whole text so far (~10 ms at 2,000 characters), cheap at this rate.
_LOOP_CHECK_TOKENS = 16


@contextmanager
def _foreign_thread_bookkeeping() -> Iterator[None]:
    """Undo Python's bookkeeping for a Qt pool thread when a job ends on it.

    The first time code on a thread Python did not start calls ``threading.current_thread()``
    (``logging`` does, for every record), Python registers a ``_DummyThread`` for it, and
    before 3.13 never removes it: the thread would look alive to ``threading.enumerate()``
    for ever (and the test suite's leak check would blame the job). The pool reuses its
    threads, so each job removes a registration that it caused itself.
    """
    ident = threading.get_ident()
    active = getattr(threading, "_active", None)
    registered_before = active is not None and ident in active
    try:
        yield
    finally:
        if active is not None and not registered_before:
            entry = active.get(ident)
            if isinstance(entry, threading._DummyThread):  # never a thread Python started
                with threading._active_limbo_lock:
                    active.pop(ident, None)


def user_message(exc: BaseException) -> str:
    """One clear sentence for the user: the core's errors carry theirs in str()."""
    names = {cls.__name__ for cls in type(exc).__mro__}
    expected = {"LibraryError", "ConversationError", "HistoryError", "StoreError", "EngineRequestError",
                "ValueError", "OSError", "PackError"}
    if names & expected and str(exc):
        return str(exc)
    return f"Something went wrong ({type(exc).__name__}: {exc}). Nothing you wrote was lost."


class JobSignals(QObject):
    sig_job_finished = Signal(object)  # the function's return value
    sig_job_failed = Signal(str, object)  # a message for the user, the exception


class Job(QRunnable):
    """Calls ``fn(*args, **kwargs)`` on a pool thread and reports the outcome."""

    def __init__(self, fn: Callable[..., Any], *args: Any, **kwargs: Any):
        super().__init__()
        self.setAutoDelete(False)  # Jobs holds the reference; Qt must not delete it under Python
        self.signals = JobSignals()
        self._call = (fn, args, kwargs)

    def run(self) -> None:
        """Runs on a pool thread."""
        fn, args, kwargs = self._call
        with _foreign_thread_bookkeeping():
            try:
                result = fn(*args, **kwargs)
            except Exception as exc:  # reported to the user, never raised into Qt
                if not _is_expected(exc):
                    traceback.print_exc(file=sys.stderr)
                self.signals.sig_job_failed.emit(user_message(exc), exc)
            else:
                self.signals.sig_job_finished.emit(result)


def _is_expected(exc: BaseException) -> bool:
    return bool({c.__name__ for c in type(exc).__mro__} & {"LibraryError", "ConversationError", "HistoryError",
                                                          "StoreError", "ValueError"})


class ReplySignals(QObject):
    sig_reply_started = Signal(str)  # the id of the stored (streaming) reply
    sig_token_received = Signal(str)  # the next piece of text
    sig_engine_loading = Signal(str)  # the model path being loaded for this reply
    sig_reply_finished = Signal(object)  # the stored Message, status complete, with metrics
    sig_reply_failed = Signal(str, str, object)  # kind, message, the stored Message (interrupted) or None


class ReplyJob(QRunnable):
    """Streams one reply from the engine into the store and the window.

    Runs on a pool thread. The reply row is committed before the engine is asked, and the
    :class:`~assistant.conversations.ReplyWriter` saves the text while it streams, so a
    crash or a dead engine loses at most the last fraction of a second.
    """

    def __init__(self, services: "Services", turn: "Turn", engine_lock: threading.Lock | None = None):
        super().__init__()
        self.setAutoDelete(False)
        self.signals = ReplySignals()
        self.engine_lock = engine_lock or threading.Lock()
        self.services = services
        self.turn = turn
        self._stop = threading.Event()
        self.done = threading.Event()

    def stop(self) -> None:
        """Any thread. The worker passes the cancel on: the GUI thread never writes to the engine."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def run(self) -> None:
        with _foreign_thread_bookkeeping():
            try:
                self._run()
            except Exception as exc:
                traceback.print_exc(file=sys.stderr)
                self.signals.sig_reply_failed.emit("error", user_message(exc), None)
            finally:
                self.done.set()

    def _run(self) -> None:
        turn = self.turn
        from assistant.adapters import ActiveAdapters
        from assistant.grounded import has_loop, tidy_reply

        sources = getattr(turn, "sources", None) or []
        # The adapter the user chose for chat, if it was trained for this conversation's model.
        adapters = ActiveAdapters(self.services.store).for_model("chat", turn.model.path)
        writer = self.services.conversations.begin_reply(
            turn.conversation.id, model=turn.model.id, sampling=turn.sampling,
            documents=operations.source_refs(sources),
            adapter=adapters[0]["path"] if adapters else None,
        )
        self.signals.sig_reply_started.emit(writer.message_id)
        try:
            if self._stop.is_set():
                self.signals.sig_reply_failed.emit("cancelled", "Stopped.", writer.interrupt())
                return
            if getattr(turn, "refuse", False):
                # "Only from my documents" and nothing relevant was found: a small model would
                # make an answer up, so the reply says so without asking it.
                from assistant.grounded import DONT_KNOW

                writer.append(DONT_KNOW)
                self.signals.sig_token_received.emit(DONT_KNOW)
                self.signals.sig_reply_finished.emit(writer.finish({}))
                return
            with self.engine_lock:  # Services.engine starts the worker on first use: once, not twice
                engine = self.services.engine
            handle = engine.chat(turn.model.path, turn.prompt, turn.sampling, adapters=adapters)
        except Exception as exc:
            message = writer.interrupt()
            self.signals.sig_reply_failed.emit(getattr(exc, "kind", "error"), user_message(exc), message)
            return
        # A reply from the documents is tidied as on the Documents page (grounded.tidy_reply),
        # and one that starts looping is stopped there rather than streamed to its token limit.
        looped = False
        tokens = 0

        def finish_tidied(metrics: dict) -> None:
            writer.revise(tidy_reply(writer.text, len(sources)))
            self.signals.sig_reply_finished.emit(writer.finish(metrics))

        cancelled_at: float | None = None
        while not handle.finished:
            if (self._stop.is_set() or looped) and cancelled_at is None:
                handle.cancel()
                cancelled_at = time.monotonic()
            if cancelled_at is not None and time.monotonic() - cancelled_at > _CANCEL_GRACE_S:
                # The engine did not confirm; keep what arrived rather than wait for ever.
                if looped and not self._stop.is_set():
                    finish_tidied({})
                else:
                    self.signals.sig_reply_failed.emit("cancelled", "Stopped.", writer.interrupt())
                return
            try:
                for event in handle.events(timeout=_POLL_S):
                    kind = event.get("event")
                    if kind == "token":
                        text = event.get("text", "")
                        writer.append(text)
                        self.signals.sig_token_received.emit(text)
                        tokens += 1
                        if sources and not looped and tokens % _LOOP_CHECK_TOKENS == 0 and has_loop(writer.text):
                            looped = True
                            break  # back to the loop head, which sends the cancel
                    elif kind == "status" and event.get("state") == "loading":
                        self.signals.sig_engine_loading.emit(str(event.get("model", "")))
                    elif kind == "done":
                        if sources:
                            finish_tidied(event.get("metrics") or {})
                        else:
                            self.signals.sig_reply_finished.emit(writer.finish(event.get("metrics") or {}))
                        return
                    elif kind == "error" and looped and not self._stop.is_set() \
                            and event.get("kind") == "cancelled":
                        finish_tidied(event.get("metrics") or {})  # the loop's cancel, not the user's
                        return
                    elif kind == "error":
                        partial = event.get("partial") or ""
                        if partial and not writer.text:
                            writer.append(partial)
                        stored = writer.interrupt(event.get("metrics") or None)
                        err_kind = event.get("kind", "error")
                        text = "Stopped." if err_kind == "cancelled" else event.get("message", "The engine failed.")
                        self.signals.sig_reply_failed.emit(err_kind, text, stored)
                        return
                    if self._stop.is_set() and cancelled_at is None:
                        break  # back to the loop head, which sends the cancel
            except TimeoutError:
                continue


class EngineStatusBridge(QObject):
    """Carries the engine client's status callbacks (its reader thread) to the GUI thread."""

    sig_engine_status_changed = Signal(str, object)  # state, info dict

    def callback(self, state: str, info: dict) -> None:
        """Runs on the engine client's reader thread (or whichever thread changed the state)."""
        self.sig_engine_status_changed.emit(state, dict(info or {}))


class Jobs(QObject):
    """The window's worker pool. Create, use and shut down on the GUI thread."""

    def __init__(self, parent: QObject | None = None, max_threads: int = 4):
        super().__init__(parent)
        # A private pool, not the global one: shutting the window down waits for exactly
        # its own work, and tests can check nothing is left running.
        self.pool = QThreadPool(self)
        self.pool.setMaxThreadCount(max_threads)
        self._live: set[QRunnable] = set()
        self._closed = False
        self.replies: list[ReplyJob] = []
        # Held around the first use of ``services.engine``, which creates and starts the
        # client: two pool threads doing it at once would start two engine workers.
        self.engine_lock = threading.Lock()

    @property
    def closed(self) -> bool:
        return self._closed

    def run(
        self,
        fn: Callable[..., Any],
        *args: Any,
        on_done: Callable[[Any], None] | None = None,
        on_error: Callable[[str, BaseException], None] | None = None,
        **kwargs: Any,
    ) -> Job | None:
        """Run ``fn`` on the pool; ``on_done(result)`` / ``on_error(message, exc)`` on the GUI thread."""
        if self._closed:
            return None
        job = Job(fn, *args, **kwargs)
        self._live.add(job)

        def finished(result: Any) -> None:
            self._live.discard(job)
            if not self._closed and on_done is not None:
                on_done(result)

        def failed(message: str, exc: BaseException) -> None:
            self._live.discard(job)
            if not self._closed and on_error is not None:
                on_error(message, exc)

        job.signals.sig_job_finished.connect(finished)
        job.signals.sig_job_failed.connect(failed)
        self.pool.start(job)
        return job

    def start_reply(
        self,
        services: "Services",
        turn: "Turn",
        *,
        on_started: Callable[[str], None] | None = None,
        on_token: Callable[[str], None] | None = None,
        on_finished: Callable[[Any], None] | None = None,
        on_failed: Callable[[str, str, Any], None] | None = None,
    ) -> ReplyJob | None:
        """Stream a reply; the callbacks run on the GUI thread, connected before the job starts
        (a signal emitted before anyone listens is lost)."""
        if self._closed:
            return None
        job = ReplyJob(services, turn, self.engine_lock)
        self._live.add(job)
        self.replies.append(job)

        def guard(callback: Callable[..., None] | None, last: bool) -> Callable[..., None]:
            def deliver(*args: Any) -> None:
                if last:
                    self._live.discard(job)
                    if job in self.replies:
                        self.replies.remove(job)
                if not self._closed and callback is not None:
                    callback(*args)
            return deliver

        job.signals.sig_reply_started.connect(guard(on_started, False))
        job.signals.sig_token_received.connect(guard(on_token, False))
        job.signals.sig_reply_finished.connect(guard(on_finished, True))
        job.signals.sig_reply_failed.connect(guard(on_failed, True))
        self.pool.start(job)
        return job

    def shutdown(self, timeout_ms: int = 30000) -> bool:
        """Stop every reply, wait for all work to end; no callback runs afterwards.

        Runs on the GUI thread when the window closes, the one moment waiting is right.
        """
        self._closed = True
        for reply in list(self.replies):
            reply.stop()
        done = self.pool.waitForDone(timeout_ms)
        self._live.clear()
        self.replies.clear()
        return done
