"""ui.jobs: results come back on the GUI thread, errors as one message, nothing lingers."""

from __future__ import annotations

import logging
import threading

from ui.jobs import Jobs, user_message


def test_results_and_errors_arrive_on_the_gui_thread(qtbot, qapp):
    jobs = Jobs()
    gui = threading.get_ident()
    seen = {}

    def work() -> int:
        seen["worker"] = threading.get_ident()
        return 42

    def boom() -> None:
        raise ValueError("That file is not a model.")

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
