"""Conversations and messages over a real store, streaming saves, and the SIGKILL crash test."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from assistant.history.conversations import (
    DEFAULT_TITLE,
    ConversationError,
    ConversationNotFoundError,
    Conversations,
)
from assistant.store import Store, conversation_scope
from engine.settings import SamplingParams
from tests.assistant import crash_writer
from tests.assistant.test_store import fts_in_sync
from tests.keyring_for_tests import TEST_DATABASE_KEY


class FakeClock:
    """Both clocks of the service, moved by hand: no sleeping, no wall-clock assertions."""

    def __init__(self, start: float = 1_700_000_000.0):
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def store(data_dir):
    s = Store(data_dir / "assistant.sqlite3", key=TEST_DATABASE_KEY)
    yield s
    s.close()


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def conversations(store, clock):
    return Conversations(store, clock=clock, monotonic=clock)


def test_create_get_rename(conversations):
    conv = conversations.create("  Holiday\nplans  ")
    assert conv.title == "Holiday plans"
    assert conversations.get(conv.id) == conv
    assert len(conv.id) == 32 and int(conv.id, 16) >= 0
    assert conversations.create().title == DEFAULT_TITLE
    assert conversations.rename(conv.id, "Trip").title == "Trip"
    assert conversations.rename(conv.id, "   ").title == DEFAULT_TITLE


def test_unknown_ids_give_a_clear_error(conversations):
    for call in (
        lambda: conversations.get("nope"),
        lambda: conversations.rename("nope", "x"),
        lambda: conversations.pin("nope"),
        lambda: conversations.delete("nope"),
        lambda: conversations.add_message("nope", "user", "hi"),
        lambda: conversations.messages("nope"),
    ):
        with pytest.raises(ConversationNotFoundError) as info:
            call()
        assert str(info.value) == "No conversation with id nope."


def test_list_by_last_activity_pinned_first(conversations, clock):
    a = conversations.create("a")
    clock.advance(1)
    b = conversations.create("b")
    clock.advance(1)
    c = conversations.create("c")
    assert [x.title for x in conversations.list()] == ["c", "b", "a"]
    clock.advance(1)
    conversations.add_message(a.id, "user", "bump")
    assert [x.title for x in conversations.list()] == ["a", "c", "b"]
    conversations.pin(b.id)
    assert [x.title for x in conversations.list()] == ["b", "a", "c"]
    assert conversations.get(a.id).message_count == 1
    conversations.pin(b.id, False)
    assert [x.title for x in conversations.list()] == ["a", "c", "b"]
    assert [x.title for x in conversations.list(limit=2, offset=1)] == ["c", "b"]
    del c


def test_archive_and_trash_are_hidden_unless_asked(conversations, clock):
    keep, old, gone = (conversations.create(t) for t in ("keep", "old", "gone"))
    conversations.archive(old.id)
    conversations.delete(gone.id)
    assert [x.title for x in conversations.list()] == ["keep"]
    assert {x.title for x in conversations.list(include_archived=True)} == {"keep", "old"}
    assert [x.title for x in conversations.list(only_archived=True)] == ["old"]
    assert [x.title for x in conversations.trash()] == ["gone"]
    assert conversations.get(gone.id).in_trash
    with pytest.raises(ConversationError, match="trash"):
        conversations.add_message(gone.id, "user", "hello?")
    # Undo: back out of the trash with everything it had.
    restored = conversations.restore(gone.id)
    assert not restored.in_trash
    assert {x.title for x in conversations.list()} == {"keep", "gone"}
    conversations.archive(old.id, False)
    assert len(conversations.list()) == 3
    del keep


def test_delete_is_recoverable_until_the_trash_is_emptied(conversations, store, tmp_path):
    doomed = conversations.create("doomed")
    other = conversations.create("other")
    trashed_too = conversations.create("also in trash")
    for conv in (doomed, other, trashed_too):
        conversations.add_message(conv.id, "user", f"unique words for {conv.title}")
        conversations.set_setting(conv.id, "colour", "blue")
    conversations.delete(doomed.id)
    conversations.delete(trashed_too.id)
    assert conversations.messages(doomed.id)[0].text == "unique words for doomed"
    # Emptying only some of the trash, and never something that is not in it.
    assert conversations.empty_trash([doomed.id, other.id]) == 1
    with pytest.raises(ConversationNotFoundError):
        conversations.get(doomed.id)
    assert conversations.get(other.id).message_count == 1
    assert conversations.empty_trash() == 1
    assert conversations.trash() == []
    with store.reading() as conn:
        assert conn.execute("SELECT count(*) FROM messages").fetchone()[0] == 1
        scopes = {r[0] for r in conn.execute("SELECT scope FROM settings")}
    assert scopes == {conversation_scope(other.id)}
    fts_in_sync(store, tmp_path)


def test_message_keeps_every_field(conversations):
    conv = conversations.create("fields")
    sampling = SamplingParams(temperature=0.2, stop=["###"])
    metrics = {"prompt_tokens": 31, "completion_tokens": 7, "ttft_ms": 84.5, "tokens_per_s": 41.25}
    message = conversations.add_message(
        conv.id,
        "assistant",
        "Bonjour 👋\n\nligne deux",
        model="smollm2-135m",
        sampling=sampling,
        metrics=metrics,
        documents=["doc-1", "doc-2"],
        adapter="my-lora",
        status="interrupted",
    )
    (stored,) = conversations.messages(conv.id)
    assert stored == message
    assert stored.sampling == sampling.to_dict()
    assert stored.metrics == metrics
    assert stored.documents == ["doc-1", "doc-2"]
    assert stored.adapter == "my-lora" and stored.model == "smollm2-135m"
    assert stored.status == "interrupted"
    assert stored.created_at == stored.updated_at
    assert conversations.get_message(message.id) == message


def test_bad_messages_are_refused_and_nothing_is_written(conversations):
    conv = conversations.create("strict")
    with pytest.raises(ConversationError, match="role"):
        conversations.add_message(conv.id, "robot", "beep")
    with pytest.raises(ConversationError, match="NaN|Cannot store"):
        conversations.add_message(conv.id, "assistant", "x", metrics={"ttft_ms": float("nan")})
    with pytest.raises(ConversationError):
        conversations.add_messages(conv.id, [{"role": "user", "text": "fine"}, {"role": "user", "text": 3}])
    assert conversations.messages(conv.id) == []


def test_messages_come_back_in_order(conversations, clock):
    conv = conversations.create("order")
    texts = [f"turn {i}" for i in range(30)]
    for i, text in enumerate(texts):
        if i % 3:
            clock.advance(0.001)  # some share a timestamp: insertion order breaks the tie
        conversations.add_message(conv.id, "user" if i % 2 else "assistant", text)
    assert [m.text for m in conversations.messages(conv.id)] == texts
    batch = conversations.add_messages(conv.id, [{"role": "user", "text": "b1"}, {"role": "assistant", "text": "b2"}])
    assert [m.text for m in conversations.messages(conv.id)][-2:] == ["b1", "b2"] == [m.text for m in batch]


def test_reply_is_saved_while_it_streams_at_most_every_interval(conversations, store, clock):
    conv = conversations.create("stream")
    conversations.add_message(conv.id, "user", "Tell me a story")
    reply = conversations.begin_reply(conv.id, model="smollm2", sampling={"temperature": 0.7}, documents=["d"])
    row = conversations.get_message(reply.message_id)
    assert (row.text, row.status, row.role) == ("", "streaming", "assistant")

    saved = []
    for i in range(20):
        clock.advance(0.06)  # a token every 60 ms
        saved.append(reply.append(f"w{i} "))
    # 60 ms apart with a 250 ms interval: a save every fifth token, no more.
    assert saved == [i % 5 == 4 for i in range(20)]
    assert conversations.get_message(reply.message_id).text == "".join(f"w{i} " for i in range(20))
    clock.advance(0.06)
    reply.append("tail")
    assert conversations.get_message(reply.message_id).text.endswith("w19 ")  # not saved yet
    reply.flush()
    assert conversations.get_message(reply.message_id).text.endswith("tail")

    done = reply.finish({"completion_tokens": 21, "ttft_ms": 50.0, "tokens_per_s": 20.0})
    assert done.status == "complete" and done.metrics["completion_tokens"] == 21
    assert done.text == reply.text and done.documents == ["d"] and done.sampling == {"temperature": 0.7}
    assert conversations.get(conv.id).last_activity_at == clock.now
    with pytest.raises(RuntimeError):
        reply.append("more")


def test_interrupted_reply_keeps_what_arrived(conversations, clock):
    conv = conversations.create("cut")
    with pytest.raises(KeyError):
        with conversations.begin_reply(conv.id) as reply:
            reply.append("half a ")
            raise KeyError("engine died")
    message = conversations.get_message(reply.message_id)
    assert (message.text, message.status) == ("half a ", "interrupted")
    stopped = conversations.begin_reply(conv.id)
    stopped.append("stop")
    assert stopped.interrupt().status == "interrupted"


def test_replies_left_streaming_by_a_crash_are_marked_interrupted(conversations):
    conv = conversations.create("crash")
    reply = conversations.begin_reply(conv.id)
    reply.flush()
    assert conversations.recover_interrupted() == 1
    assert conversations.get_message(reply.message_id).status == "interrupted"
    assert conversations.recover_interrupted() == 0


def test_per_conversation_typed_settings(conversations):
    conv = conversations.create("settings")
    assert conversations.load_settings(conv.id, SamplingParams) == SamplingParams()
    conversations.save_settings(conv.id, SamplingParams(temperature=0.1, max_tokens=64))
    got = conversations.load_settings(conv.id, SamplingParams)
    assert (got.temperature, got.max_tokens, got.top_k) == (0.1, 64, SamplingParams().top_k)
    other = conversations.create("other")
    assert conversations.load_settings(other.id, SamplingParams) == SamplingParams()


def test_writes_from_several_worker_threads_are_serialised(store, tmp_path):
    conversations = Conversations(store)
    conv = conversations.create("threads")
    errors = []

    def writer(n: int) -> None:
        try:
            for i in range(40):
                conversations.add_message(conv.id, "user", f"thread {n} message {i}")
        except Exception as exc:  # surfaced below; a thread cannot fail the test itself
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,), name=f"writer-{n}") for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(conversations.messages(conv.id)) == 160
    fts_in_sync(store, tmp_path)


# ----- crash test --------------------------------------------------------------------------
#: Kill rounds: a quick count in `make test`, the full count in `make soak` (SECURITY.md).
CRASH_ROUNDS = {"quick": 20, "soak": 100}
WRITER = Path(crash_writer.__file__)


def _run_and_kill(db_path: Path, seed: int, rng: random.Random, errors: Path) -> list[str]:
    with errors.open("w+") as stderr:
        child = subprocess.Popen(
            [sys.executable, str(WRITER), str(db_path), str(seed)], stdout=subprocess.PIPE, stderr=stderr, text=True
        )
        try:
            first = child.stdout.readline()
            if first != "ready\n":
                child.wait(timeout=30)
                stderr.seek(0)
                pytest.fail(f"writer did not start: {first!r} {stderr.read()}")
            time.sleep(rng.uniform(0.020, 0.200))
            os.kill(child.pid, signal.SIGKILL)
            # Read through the same buffered stream as readline(): it may already hold lines.
            out = child.stdout.read()
            child.wait(timeout=30)
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
            child.stdout.close()
    assert child.returncode == -signal.SIGKILL
    # A line cut by the kill has no newline: it was never fully reported, so it is ignored.
    return [line for line in out.splitlines(keepends=True) if line.endswith("\n")]


@pytest.mark.parametrize("crash_rounds", [pytest.param(CRASH_ROUNDS["quick"], id="quick"),
                                          pytest.param(CRASH_ROUNDS["soak"], id="soak", marks=pytest.mark.slow)])
def test_sigkill_at_random_moments_never_loses_committed_messages(data_dir, tmp_path, crash_rounds):
    db_path = data_dir / "crash.sqlite3"
    data_dir.mkdir(parents=True, exist_ok=True)
    rng = random.Random(20240611)
    committed: dict[str, str] = {}  # message id -> exact text reported committed
    streamed: dict[str, tuple[str, int]] = {}  # reply id -> (full text, chars reported committed)
    finished: set[str] = set()
    total_reports = 0
    for seed in range(crash_rounds):
        lines = _run_and_kill(db_path, seed, rng, tmp_path / "writer-stderr.txt")
        reply_text: dict[str, str] = {}
        for line in lines:
            kind, message_id, *rest = line.split()
            total_reports += 1
            if kind == "M":
                committed[message_id] = crash_writer.expected_text(seed, int(rest[0]), int(rest[1]))
            elif kind == "B":
                reply_text[message_id] = crash_writer.expected_stream(seed, int(rest[0]))
                streamed[message_id] = (reply_text[message_id], 0)
            elif kind == "S":
                streamed[message_id] = (reply_text[message_id], int(rest[0]))
            elif kind == "F":
                finished.add(message_id)

        store = Store(db_path, key=TEST_DATABASE_KEY)  # recovers the WAL the killed writer left
        try:
            assert store.integrity_problems() == [], f"round {seed}"
            with store.reading() as conn:
                conn.execute("INSERT INTO messages_fts (messages_fts) VALUES ('integrity-check')")
                rows = dict(conn.execute("SELECT id, text FROM messages"))
                statuses = dict(conn.execute("SELECT id, status FROM messages"))
            missing = set(committed) - set(rows)
            assert not missing, f"round {seed}: {len(missing)} committed messages lost"
            for message_id, text in committed.items():
                assert rows[message_id] == text
            for message_id, (full, chars) in streamed.items():
                assert message_id in rows, f"round {seed}: a begun reply is gone"
                got = rows[message_id]
                assert len(got) >= chars and full.startswith(got), f"round {seed}: reply lost saved text"
                if message_id in finished:
                    assert (got, statuses[message_id]) == (full, "complete")
            Conversations(store).recover_interrupted()
        finally:
            store.close()
    # The test means something only if the writer got real work done before the kills.
    assert len(committed) > crash_rounds and total_reports > 3 * crash_rounds
    # ...and some kills landed in the middle of a reply that had already saved part of itself.
    assert any(chars and reply_id not in finished for reply_id, (_full, chars) in streamed.items())
    final = Store(db_path, key=TEST_DATABASE_KEY)
    try:
        fts_in_sync(final, tmp_path)
    finally:
        final.close()
