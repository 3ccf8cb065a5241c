"""The engine worker keeps a few embedding encoders warm (the documents' MiniLM and a sentiment
student's own encoder) and closes the least recently used one at its bound."""

from __future__ import annotations

import os
import shutil

import pytest

from engine.client import EngineClient
from engine.encoders import EncoderCache
from engine.library import inspect_model, memory_needed
from engine.settings import EngineSettings


@pytest.fixture(scope="module")
def encoders(minilm_gguf, tmp_path_factory) -> list[str]:
    """MiniLM and two more encoder files (a fine-tuned student's encoder is a MiniLM GGUF of
    its own beside the student's file; copies stand in for them)."""
    folder = tmp_path_factory.mktemp("students")
    copies = []
    for name in ("student-a.encoder.gguf", "student-b.encoder.gguf"):
        shutil.copyfile(minilm_gguf, folder / name)
        copies.append(str(folder / name))
    return [minilm_gguf, *copies]


def _loads(client: EngineClient, path: str) -> int:
    """Embed one text with ``path``; how many times the worker said it was loading it."""
    handle = client.request("embed", {"model": path, "texts": ["A short sentence."]})
    events = list(handle.events(timeout=120))
    assert events[-1]["event"] == "done", events[-1]
    return sum(1 for e in events if e.get("event") == "status" and e.get("state") == "loading"
               and e.get("role") == "embedder")


def test_switching_between_minilm_and_a_student_loads_each_once(encoders):
    minilm, student, _ = encoders
    with EngineClient(EngineSettings(n_ctx=512)) as client:
        assert [_loads(client, p) for p in (minilm, student, minilm, student, minilm)] == [1, 1, 0, 0, 0]
        info = client.ping()
        assert info["encoder_loads"] == 2
        assert info["encoders"] == [student, minilm], "least recently used first"


def test_the_bound_closes_the_least_recently_used_encoder(encoders):
    minilm, student_a, student_b = encoders
    with EngineClient(EngineSettings(n_ctx=512, max_loaded_encoders=2)) as client:
        assert [_loads(client, p) for p in (minilm, student_a, minilm)] == [1, 1, 0]
        assert _loads(client, student_b) == 1
        assert client.ping()["encoders"] == [minilm, student_b], "student A was the least recently used"
        assert _loads(client, minilm) == 0
        assert _loads(client, student_a) == 1, "the closed one loads again"
        assert client.ping()["encoder_loads"] == 4


class _FakeEmbedder:
    closed: list[str] = []

    def __init__(self, path: str, n_threads: int = 2, **shape):
        self.path = path
        self.shape = shape

    def close(self) -> None:
        _FakeEmbedder.closed.append(self.path)


def test_short_memory_closes_the_least_recently_used_encoder_first(encoders, monkeypatch):
    """The memory estimate, not the count, is the bound here: room for one encoder only."""
    import engine.embedder

    monkeypatch.setattr(engine.embedder, "Embedder", _FakeEmbedder)
    _FakeEmbedder.closed = []
    summary = inspect_model(encoders[0], with_hash=False).summary
    one = memory_needed(summary["file_size"], summary["kv_bytes_per_token"], engine.embedder.MAX_SEQ_TOKENS,
                        n_vocab=summary["vocab_size"], n_embd=summary["embedding_length"],
                        n_batch=engine.embedder.MAX_SEQ_TOKENS)
    cache = EncoderCache(lambda settings: int(one * 1.5) - one * len(cache.loaded()))
    statuses: list[str] = []
    settings = EngineSettings(max_loaded_encoders=3)
    first = cache.get(encoders[0], {}, settings, statuses.append)
    assert cache.get(encoders[0], {}, settings, statuses.append) is first
    cache.get(encoders[1], {}, settings, statuses.append)
    assert cache.loaded() == [encoders[1]] and _FakeEmbedder.closed == [encoders[0]]
    assert statuses == ["loading", "ready", "loading", "ready"] and cache.loads == 2
    # Another context shape for the same file is a new copy; the old one goes.
    reshaped = cache.get(encoders[1], {"n_batch": 512}, settings, statuses.append)
    assert reshaped.shape == {"n_batch": 512} and _FakeEmbedder.closed[-1] == encoders[1]
    assert cache.get(encoders[1], {}, settings, statuses.append) is reshaped
    cache.close_all()
    assert cache.loaded() == [] and os.path.exists(encoders[1])
