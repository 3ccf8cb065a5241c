"""ui.jobs: results come back on the GUI thread, errors as one message, nothing lingers."""

from __future__ import annotations

import logging
import threading

from assistant.errors import LibraryError
from ui.jobs import Jobs, user_message


def test_results_and_errors_arrive_on_the_gui_thread(qtbot, qapp):
    jobs = Jobs()
    gui = threading.get_ident()
    seen = {}

    def work() -> int:
        seen["worker"] = threading.get_ident()
        return 42

    def boom() -> None:
        raise LibraryError("That file is not a model.")

    jobs.run(work, on_done=lambda r: seen.update(result=r, done_on=threading.get_ident()))
    jobs.run(boom, on_error=lambda message, exc: seen.update(error=message, error_on=threading.get_ident()))
    qtbot.waitUntil(lambda: "result" in seen and "error" in seen, timeout=10000)
    assert seen["result"] == 42 and seen["worker"] != gui
    assert seen["done_on"] == gui and seen["error_on"] == gui
    assert seen["error"] == "That file is not a model."
    assert jobs.shutdown()


def test_unexpected_errors_still_read_as_one_sentence():
    text = user_message(KeyError("x"))
    assert text.startswith("Something went wrong") and "Nothing you wrote was lost" in text
    # An error of the disk is the user's to act on: its reason and file, in words.
    assert user_message(PermissionError(13, "Permission denied", "/home/ada/out.csv")) == \
        "Permission denied: /home/ada/out.csv."


def test_logging_on_a_pool_thread_leaves_no_python_thread_behind(qtbot, qapp):
    # logging calls threading.current_thread(), which registers the Qt thread with Python.
    jobs = Jobs()
    before = set(threading.enumerate())
    done = []
    jobs.run(lambda: logging.getLogger("ui.test").warning("from a pool thread"), on_done=done.append)
    qtbot.waitUntil(lambda: bool(done), timeout=10000)
    assert jobs.shutdown()
    assert [t for t in threading.enumerate() if t not in before] == []


def test_after_shutdown_no_callback_runs(qtbot, qapp):
    jobs = Jobs()
    release = threading.Event()
    called = []
    jobs.run(release.wait, 10, on_done=called.append)
    release.set()
    assert jobs.shutdown()
    qapp.processEvents()
    assert called == []
    assert jobs.run(lambda: 1) is None


def test_a_stream_delivers_each_event_then_the_return_value_on_the_gui_thread(qtbot, qapp):
    jobs = Jobs()
    gui = threading.get_ident()
    seen = {"events": [], "threads": set()}

    def count():
        for n in range(3):
            yield n
        return "done"

    def on_event(event):
        seen["events"].append(event)
        seen["threads"].add(threading.get_ident())

    jobs.stream(count, on_event=on_event, on_done=lambda value: seen.update(value=value))
    qtbot.waitUntil(lambda: "value" in seen, timeout=10000)
    assert seen["events"] == [0, 1, 2] and seen["value"] == "done" and seen["threads"] == {gui}
    assert jobs.shutdown()


def test_cancel_reaches_the_work_through_its_hook_or_closes_the_generator(qtbot, qapp):
    jobs = Jobs()
    stop = threading.Event()
    closed = threading.Event()
    results = {}

    def cooperative():  # stops itself once told, and says how far it got
        n = 0
        while not stop.is_set():
            n += 1
            yield n
            stop.wait(0.01)
        return "stopped after the hook"

    def stubborn():  # knows nothing of cancelling: the adapter closes it at a yield
        try:
            while True:
                yield 1
                threading.Event().wait(0.01)
        finally:
            closed.set()

    with_hook = jobs.stream(cooperative, cancel=stop.set, on_done=lambda v: results.update(hook=v))
    without = jobs.stream(stubborn, on_done=lambda v: results.update(closed=v))
    qtbot.wait(50)
    with_hook.cancel()
    without.cancel()
    qtbot.waitUntil(lambda: len(results) == 2, timeout=10000)
    assert results == {"hook": "stopped after the hook", "closed": None} and closed.is_set()
    assert jobs.shutdown()


def test_a_failing_stream_reports_one_sentence_and_no_more_events(qtbot, qapp):
    from assistant.errors import LibraryError

    jobs = Jobs()
    seen = {"events": []}

    def fails():
        yield "first"
        raise LibraryError("That model file is missing.")

    jobs.stream(fails, on_event=seen["events"].append, on_error=lambda message, exc: seen.update(error=message))
    qtbot.waitUntil(lambda: "error" in seen, timeout=10000)
    assert seen == {"events": ["first"], "error": "That model file is missing."}
    assert jobs.shutdown()
