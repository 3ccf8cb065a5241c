"""Load: many requests in a row through the real engine client, pipelined so that replies
could be confused if ids were ever mixed up; the worker's memory stays flat."""

from __future__ import annotations

import random

import psutil
import pytest

from engine.client import EngineClient
from engine.settings import EngineSettings

from .test_durability import rounds

WORDS = "harbour lighthouse garden bread storm ledger river orchard copper lantern meadow".split()
WINDOW = 4  # requests in flight at once: a mix-up between neighbours would show


def _texts(n: int) -> list[str]:
    rng = random.Random(1)
    return [f"Note {k}: " + " ".join(rng.choice(WORDS) for _ in range(1 + k % 9)) for k in range(n)]


@pytest.mark.parametrize("n_requests", rounds(100, 1000))
def test_requests_in_a_row_keep_their_replies_and_memory_is_stable(smollm2_path, n_requests):
    texts = _texts(40)
    with EngineClient(EngineSettings()) as engine:
        # The right answers, one request at a time (nothing can be mixed up when nothing overlaps).
        tokens = [engine.tokenize(smollm2_path, t) for t in texts]
        assert len({tuple(t) for t in tokens}) == len(texts)
        prompt_tokens = []
        for text in texts:
            done = engine.complete(smollm2_path, text, {"max_tokens": 1, "temperature": 0}).result(timeout=300)
            prompt_tokens.append(done["metrics"]["prompt_tokens"])
        process = psutil.Process(engine.pid)
        rng = random.Random(2)
        plan = [(i, rng.randrange(len(texts)), rng.choice(("tokenize", "complete")), rng.randint(1, 4))
                for i in range(n_requests)]
        warm_up = max(20, n_requests // 10)
        baseline = peak = None
        answered = 0
        for start in range(0, n_requests, WINDOW):
            batch = plan[start:start + WINDOW]
            handles = []
            for i, k, kind, max_tokens in batch:
                if kind == "tokenize":
                    handles.append(engine.request("tokenize", {"model": smollm2_path, "text": texts[k]}))
                else:
                    handles.append(engine.complete(smollm2_path, texts[k], {"max_tokens": max_tokens, "temperature": 0}))
            for (i, k, kind, max_tokens), handle in zip(batch, handles):
                done = handle.result(timeout=300)
                assert done["id"] == handle.id
                if kind == "tokenize":
                    assert done["result"]["tokens"] == tokens[k], f"request {i} got another request's tokens"
                else:
                    assert done["metrics"]["prompt_tokens"] == prompt_tokens[k], f"request {i} got another's reply"
                    assert done["metrics"]["completion_tokens"] <= max_tokens
                answered += 1
            if baseline is None and start + WINDOW >= warm_up:
                baseline = process.memory_info().rss
            elif baseline is not None:
                peak = max(peak or 0, process.memory_info().rss)
        final = process.memory_info().rss
        assert answered == n_requests
        assert engine.restarts == 0 and engine.pid == process.pid
    growth = final / baseline
    print(f"\n{n_requests} requests: worker RSS after warm-up {baseline / 2**20:.1f} MiB, "
          f"peak {peak / 2**20:.1f} MiB, final {final / 2**20:.1f} MiB, growth {100 * (growth - 1):+.1f}%")
    assert growth <= 1.10, f"the worker grew by {100 * (growth - 1):.1f}% over {n_requests} requests"
    assert peak <= baseline * 1.10


COPY_WORDS = ["apple", "violet", "copper", "saffron"]  # words the base model is known to copy (test_api_server)


def _copy_prompt(word: str) -> str:
    """A few-shot pattern the base model continues with exactly ``word`` (as in test_api_server)."""
    return f"Word: red\nCopy: red\n\nWord: blue\nCopy: blue\n\nWord: {word}\nCopy:"


@pytest.mark.parametrize("per_client", rounds(25, 250))
def test_four_clients_at_once_on_the_local_api_server(per_client):
    from concurrent.futures import ThreadPoolExecutor

    import openai

    from assistant.api.server import ApiServer, ApiServerConfig
    from assistant.app import build_services
    from assistant.config import default_paths

    services = build_services(default_paths())
    try:
        model = services.library.for_task("translate").id  # Gemma 3 base: the copy pattern needs a base model
        with ApiServer(services, ApiServerConfig(port=0)) as server:
            worker = psutil.Process(services.engine.ping()["pid"])

            def client(lane: int, n: int = per_client) -> list[tuple[str, str]]:
                rng = random.Random(lane)
                got = []
                with openai.OpenAI(base_url=server.url, api_key=server.token, max_retries=0, timeout=600) as own:
                    for _ in range(n):
                        word = rng.choice(COPY_WORDS)
                        reply = own.completions.create(model=model, prompt=_copy_prompt(word), max_tokens=4,
                                                       temperature=0, stop=["\n"])
                        got.append((word, reply.choices[0].text.strip()))
                return got

            assert all(a == b for a, b in client(99, 8))  # warm-up: the model is loaded and its first buffers are allocated
            baseline = worker.memory_info().rss
            with ThreadPoolExecutor(4) as pool:
                lanes = list(pool.map(client, range(4)))
            final = worker.memory_info().rss
            assert worker.is_running() and services.engine.restarts == 0
    finally:
        services.close()
    pairs = [pair for lane in lanes for pair in lane]
    assert len(pairs) == 4 * per_client
    wrong = [(asked, answered) for asked, answered in pairs if asked != answered]
    assert not wrong, f"{len(wrong)} replies did not belong to their request: {wrong[:5]}"
    growth = final / baseline
    print(f"\n4 clients x {per_client}: worker RSS {baseline / 2**20:.1f} -> {final / 2**20:.1f} MiB "
          f"({100 * (growth - 1):+.1f}%)")
    assert growth <= 1.10
