"""The one adapter between the core's work and Qt (after superqt's ``thread_worker``).

Every pane hands the core's functions and generators to :class:`Jobs`:

- :meth:`Jobs.run` calls a function on a pool thread; its return value comes back as
  ``sig_job_finished``, a raised error as ``sig_job_failed`` (one sentence for people);
- :meth:`Jobs.stream` iterates a generator on a pool thread; each yielded event comes back as
  ``sig_event_received``, then ``sig_job_finished`` with the generator's return value (or
  ``sig_job_failed``). :meth:`Job.cancel` asks it to stop: through the ``cancel`` hook the caller
  gave (``ChatSession.cancel``, a ``threading.Event``'s ``set``), else by closing the generator
  at its next ``yield``.

Work runs as a :class:`QRunnable` on the window's one :class:`QThreadPool`, never a QThread
subclass and never the GUI thread. The signal objects are created on the GUI thread, so Qt
queues every emission from a pool thread and the connected callbacks run on the GUI thread.
:class:`Jobs` keeps each job alive until its last signal is delivered; after
:meth:`Jobs.shutdown` no callback runs, so a closing window never receives a result for a
widget that is gone. Errors are worded by the core's one handler
(:func:`assistant.errors.user_message`); only a bug's traceback is written, to stderr.
"""

from __future__ import annotations

import sys
import threading
import traceback
from contextlib import contextmanager
from typing import Any, Callable, Iterator

from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal

from assistant.errors import is_expected, user_message

__all__ = ["Jobs", "Job", "JobSignals", "EngineStatusBridge", "user_message"]


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


class JobSignals(QObject):
    sig_event_received = Signal(object)  # one event a streamed generator yielded
    sig_job_finished = Signal(object)  # the function's (or the generator's) return value
    sig_job_failed = Signal(str, object)  # a message for the user, the exception


class Job(QRunnable):
    """Calls ``fn(*args, **kwargs)`` on a pool thread; with ``stream``, iterates what it returns."""

    def __init__(self, fn: Callable[..., Any], args: tuple, kwargs: dict, *, stream: bool = False,
                 cancel: Callable[[], None] | None = None):
        super().__init__()
        self.setAutoDelete(False)  # Jobs holds the reference; Qt must not delete it under Python
        self.signals = JobSignals()
        self._call = (fn, args, kwargs)
        self._stream = stream
        self._cancel_hook = cancel
        self._cancelled = threading.Event()
        self.done = threading.Event()
        #: Set by :meth:`Jobs.abandon`: the widgets that asked for the result are gone, so its
        #: callbacks never run (the work itself still ends, and may be waited for on ``done``).
        self.abandoned = False

    def cancel(self) -> None:
        """Any thread: ask the work to stop. The GUI thread never waits for it."""
        self._cancelled.set()
        if self._cancel_hook is not None:
            self._cancel_hook()

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    def run(self) -> None:
        """Runs on a pool thread."""
        fn, args, kwargs = self._call
        with _foreign_thread_bookkeeping():
            try:
                result = fn(*args, **kwargs)
                if self._stream:
                    result = self._iterate(result)
            except Exception as exc:  # reported to the user, never raised into Qt
                if not is_expected(exc):
                    traceback.print_exc(file=sys.stderr)
                self.signals.sig_job_failed.emit(user_message(exc), exc)
            else:
                self.signals.sig_job_finished.emit(result)
            finally:
                self.done.set()

    def _iterate(self, generator) -> Any:
        try:
            while True:
                if self._cancelled.is_set() and self._cancel_hook is None:
                    generator.close()  # no hook: the generator stops at the yield it is paused at
                    return None
                self.signals.sig_event_received.emit(next(generator))
        except StopIteration as stop:
            return stop.value


class EngineStatusBridge(QObject):
    """Carries the engine client's status callbacks (its reader thread) to the GUI thread."""

    sig_engine_status_changed = Signal(str, object)  # state, info dict

    def callback(self, state: str, info: dict) -> None:
        """Runs on the engine client's reader thread (or whichever thread changed the state)."""
        self.sig_engine_status_changed.emit(state, dict(info or {}))


class Jobs(QObject):
    """The window's worker pool. Create, use and shut down on the GUI thread.

    :meth:`scope` gives the window's panes a Jobs of their own on the same pool: when the lock
    or a restore tears those panes down, :meth:`abandon` ends the scope at once (its jobs are
    cancelled and report to nobody, and anything the old panes still ask for is refused), while
    the window's own jobs go on."""

    def __init__(self, parent: QObject | None = None, max_threads: int = 4, pool: QThreadPool | None = None):
        super().__init__(parent)
        if pool is None:
            # A private pool, not the global one: shutting the window down waits for exactly
            # its own work, and tests can check nothing is left running.
            pool = QThreadPool(self)
            pool.setMaxThreadCount(max_threads)
        self.pool = pool
        self._live: set[Job] = set()
        self._closed = False
        self._scopes: list[Jobs] = []

    def scope(self) -> "Jobs":
        """A Jobs on this pool, ended on its own by :meth:`abandon`, and with this one by :meth:`shutdown`."""
        # An ended scope is dropped once its last job has ended (it holds them until then).
        self._scopes = [child for child in self._scopes if not child.closed or child._live]
        child = Jobs(self, pool=self.pool)
        self._scopes.append(child)
        return child

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def busy(self) -> bool:
        """True while a job started here or in a live scope has not delivered its end (GUI thread)."""
        return (not self._closed and bool(self._live)) or any(child.busy for child in self._scopes)

    def abandon(self) -> list[Job]:
        """End this Jobs without waiting: cancel every job, drop its callbacks, refuse new work;
        returns the jobs, whose ``done`` a pool thread may wait on. GUI thread: the window's lock
        and a restore tear down the panes these jobs would have reported to. (They stay
        referenced here until they end: Python must not free a runnable the pool still runs.)"""
        self._closed = True
        jobs = [job for job in self._live if not job.abandoned]
        for child in self._scopes:
            jobs += child.abandon()
        for job in jobs:
            job.abandoned = True
            job.cancel()
        return jobs

    def run(self, fn: Callable[..., Any], *args: Any, on_done: Callable[[Any], None] | None = None,
            on_error: Callable[[str, BaseException], None] | None = None, **kwargs: Any) -> Job | None:
        """Run ``fn`` on the pool; ``on_done(result)`` / ``on_error(message, exc)`` on the GUI thread."""
        return self._start(Job(fn, args, kwargs), None, on_done, on_error)

    def stream(self, fn: Callable[..., Iterator[Any]], *args: Any, on_event: Callable[[Any], None] | None = None,
               on_done: Callable[[Any], None] | None = None,
               on_error: Callable[[str, BaseException], None] | None = None,
               cancel: Callable[[], None] | None = None, **kwargs: Any) -> Job | None:
        """Iterate the generator ``fn(*args, **kwargs)`` on the pool: ``on_event(event)`` for each
        event, then ``on_done(return value)`` or ``on_error(message, exc)``, on the GUI thread.
        ``cancel``: how :meth:`Job.cancel` reaches the work (default: close the generator)."""
        return self._start(Job(fn, args, kwargs, stream=True, cancel=cancel), on_event, on_done, on_error)

    def _start(self, job: Job, on_event, on_done, on_error) -> Job | None:
        if self._closed:
            return None
        self._live.add(job)

        def event(value: Any) -> None:
            if not self._closed and not job.abandoned and on_event is not None:
                on_event(value)

        def finished(result: Any) -> None:
            self._live.discard(job)
            if not self._closed and not job.abandoned and on_done is not None:
                on_done(result)

        def failed(message: str, exc: BaseException) -> None:
            self._live.discard(job)
            if not self._closed and not job.abandoned and on_error is not None:
                on_error(message, exc)

        # Connected before the job starts: a signal emitted before anyone listens is lost.
        job.signals.sig_event_received.connect(event)
        job.signals.sig_job_finished.connect(finished)
        job.signals.sig_job_failed.connect(failed)
        self.pool.start(job)
        return job

    def shutdown(self, timeout_ms: int = 30000) -> bool:
        """Cancel every job, wait for all work to end; no callback runs afterwards.

        Runs on the GUI thread when the window closes, the one moment waiting is right.
        """
        self._closed = True
        for child in self._scopes:
            child.abandon()
        for job in list(self._live):
            job.cancel()
        done = self.pool.waitForDone(timeout_ms)
        self._live.clear()
        return done
