"""Child process of the crash test: writes messages as fast as it can until it is killed.

Usage: python crash_writer.py DB_PATH SEED

Runs on its own main thread. After opening the store it prints ``ready``; then, only once
each commit has returned, it prints one line (flushed) that the parent checks after SIGKILL:

- ``M <id> <k> <n>``: a whole message committed with the text ``expected_text(seed, k, n)``.
- ``S <id> <chars>``: a streaming reply committed at least the first ``chars`` characters
  of ``expected_stream(seed, k)`` (``k`` given by its ``B`` line).
- ``B <id> <k>``: a streaming reply began (its empty row is committed).
- ``F <id>``: that reply was finished: status complete, the whole text.
"""

from __future__ import annotations

import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root

from assistant.history.conversations import Conversations  # noqa: E402
from assistant.store import Store  # noqa: E402
from tests.keyring_for_tests import TEST_DATABASE_KEY

STREAM_TOKENS = 100
# From a few bytes to a few pages, so that commits touch one page or many (and the FTS index).
SIZES = (0, 1, 10, 100, 400)


def expected_text(seed: int, k: int, n: int) -> str:
    return f"round{seed} item{k} " + "lorem ipsum dolor sit amet " * n


def stream_token(i: int) -> str:
    return f"tok{i} "


def expected_stream(seed: int, k: int) -> str:
    return f"round{seed} reply{k} " + "".join(stream_token(i) for i in range(STREAM_TOKENS))


def report(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def main() -> None:
    db_path, seed = sys.argv[1], int(sys.argv[2])
    rng = random.Random(seed)
    conversations = Conversations(Store(db_path, key=TEST_DATABASE_KEY))
    conversation = conversations.create(f"crash round {seed}")
    report("ready")
    k = 0
    while True:
        k += 1
        if rng.random() < 0.25:
            # Saved every 2 ms rather than 250 ms, so that kills often land mid-reply.
            reply = conversations.begin_reply(conversation.id, model="crash-model", save_interval=0.002)
            report(f"B {reply.message_id} {k}")
            reply.append(f"round{seed} reply{k} ")
            for i in range(STREAM_TOKENS):
                time.sleep(0.0005)  # tokens arrive over time, as from the engine
                if reply.append(stream_token(i)):
                    report(f"S {reply.message_id} {reply.saved_chars}")
            reply.finish({"completion_tokens": STREAM_TOKENS})
            report(f"F {reply.message_id}")
        else:
            n = rng.choice(SIZES)
            role = rng.choice(("user", "assistant"))
            message = conversations.add_message(conversation.id, role, expected_text(seed, k, n), model="crash-model")
            report(f"M {message.id} {k} {n}")


if __name__ == "__main__":
    main()
