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


class _ScriptedHandle:
    """Plays a fixed token stream with the engine client's event protocol (tokens, then ``done``;
    after ``cancel``, the worker's ``error`` of kind ``cancelled`` with the metrics so far)."""

    def __init__(self, tokens: list[str]):
        self.tokens = tokens
        self.sent = 0
        self.cancelled_at: int | None = None
        self.finished = False

    def cancel(self) -> None:
        if self.cancelled_at is None:
            self.cancelled_at = self.sent

    def events(self, timeout=None):
        while not self.finished:
            if self.cancelled_at is not None:
                self.finished = True
                yield {"event": "error", "kind": "cancelled", "message": "Stopped.", "metrics": {"tokens": self.sent}}
            elif self.sent == len(self.tokens):
                self.finished = True
                yield {"event": "done", "metrics": {"tokens": self.sent}}
            else:
                self.sent += 1
                yield {"event": "token", "text": self.tokens[self.sent - 1]}


def _run_reply(services, tokens: list[str], sources: list[dict]):
    """One ReplyJob over the real store, with the engine's stream scripted: a 135M model's loop
    cannot be produced on demand, the job's handling of one can."""
    from types import SimpleNamespace

    from ui.jobs import ReplyJob
    from ui.operations import Turn

    conversation = services.conversations.create("Moving")
    user = services.conversations.add_message(conversation.id, "user", "What is the key to a moving checklist?")
    handle = _ScriptedHandle(tokens)
    engine = SimpleNamespace(chat=lambda path, prompt, sampling, adapters=None: handle)
    turn = Turn(conversation, user, [{"role": "user", "content": user.text}], services.library.list()[0],
                services.settings.sampling, sources=sources)
    job = ReplyJob(SimpleNamespace(conversations=services.conversations, store=services.store, engine=engine), turn)
    finished, failed = [], []
    job.signals.sig_reply_finished.connect(finished.append)
    job.signals.sig_reply_failed.connect(lambda *args: failed.append(args))
    job.run()  # on this thread: the signals arrive directly
    return handle, finished, failed, services.conversations.messages(conversation.id)[-1]


SOURCE = {"number": 1, "chunk_id": 1, "file": "moving.md", "passage": "Start early; label every box."}


def test_a_reply_from_the_documents_that_loops_is_stopped_early_and_kept_tidied(services):
    looped = ["The key is here [3]. "] + ["The key to a moving ", "checklist: "] * 200
    handle, finished, failed, stored = _run_reply(services, looped, [SOURCE])
    assert failed == [] and len(finished) == 1
    # Stopped within a few checks of the third saying, not streamed to the end of its 401 tokens.
    assert handle.cancelled_at is not None and handle.cancelled_at < 40
    assert stored.status == "complete"
    assert stored.text == "The key is here. The key to a moving checklist: …"  # loop cut, [3] names no source
    assert finished[0].text == stored.text


def test_a_reply_from_the_documents_keeps_its_real_citations(services):
    handle, finished, failed, stored = _run_reply(services, ["Start early [1]", " and label boxes [2]."], [SOURCE])
    assert handle.cancelled_at is None and failed == []
    assert stored.status == "complete" and stored.text == "Start early [1] and label boxes."


def test_a_plain_chat_reply_is_kept_as_the_model_said_it(services):
    said = ["ha ha ha ha ha ha ha ha ha ha ha ha ha ha ha ha ha ha ha ha ha ha ha ha ha ha ha [2]"] * 3
    handle, finished, failed, stored = _run_reply(services, said, [])
    assert handle.cancelled_at is None and failed == []
    assert stored.status == "complete" and stored.text == "".join(said)
