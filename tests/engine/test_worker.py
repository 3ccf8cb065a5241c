"""The engine worker through EngineClient, with the real SmolLM2 from the default pack."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from engine.client import EngineClient, EngineRequestError
from engine.settings import EngineSettings
from tests.engine.gguf_corpus import build_malformed_corpus, write_valid_gguf

GREEDY = {"temperature": 0, "max_tokens": 48}
LONG_STORY = [{"role": "user", "content": "Write a very long story about a lighthouse keeper and the sea."}]


def test_chat_answer_from_smollm2(engine, smollm2_path):
    done = engine.chat(smollm2_path, [{"role": "user", "content": "What is the capital of France?"}], GREEDY).result()
    assert "Paris" in done["result"]["text"]
    metrics = done["metrics"]
    assert metrics["completion_tokens"] > 0
    assert metrics["prompt_tokens"] > 10
    assert metrics["ttft_ms"] > 0
    assert metrics["tokens_per_s"] > 0
    assert metrics["llama_tokens_per_s"] > 0


def test_streaming_order_and_text(engine, smollm2_path):
    handle = engine.chat(smollm2_path, [{"role": "user", "content": "Count from one to five in words."}], GREEDY)
    events = list(handle.events())
    kinds = [e["event"] for e in events]
    assert kinds[-1] == "done"
    assert "done" not in kinds[:-1] and "error" not in kinds
    tokens = [e["text"] for e in events if e["event"] == "token"]
    assert len(tokens) > 3, "the reply must arrive in pieces, not at once"
    assert "".join(tokens) == events[-1]["result"]["text"]


def test_multi_turn_reuses_the_kv_cache(engine, smollm2_path):
    history = [{"role": "system", "content": "You are terse."},
               {"role": "user", "content": "Name a fruit that is yellow."}]
    first = engine.chat(smollm2_path, history, GREEDY).result()
    history += [{"role": "assistant", "content": first["result"]["text"]},
                {"role": "user", "content": "And one that is red?"}]
    second = engine.chat(smollm2_path, history, GREEDY).result()
    metrics = second["metrics"]
    assert metrics["prompt_tokens"] > first["metrics"]["prompt_tokens"]
    assert metrics["prompt_tokens_evaluated"] < metrics["prompt_tokens"] - first["metrics"]["prompt_tokens"] // 2
    assert metrics["prompt_tokens_cached"] > 0


def test_sampling_settings_seed_stop_and_max_tokens(engine, smollm2_path):
    messages = [{"role": "user", "content": "Tell me about cats."}]
    sampling = {"temperature": 0.9, "top_p": 0.9, "top_k": 50, "min_p": 0.02, "repeat_penalty": 1.2,
                "seed": 1234, "max_tokens": 24}
    a = engine.chat(smollm2_path, messages, sampling).result()
    b = engine.chat(smollm2_path, messages, sampling).result()
    assert a["result"]["text"] == b["result"]["text"], "the same seed must give the same reply"
    assert a["metrics"]["completion_tokens"] <= 24
    assert a["result"]["finish_reason"] in ("length", "stop")
    stopped = engine.chat(smollm2_path, [{"role": "user", "content": "List three animals, one per line."}],
                          {"temperature": 0, "max_tokens": 80, "stop": ["\n"]}).result()
    assert "\n" not in stopped["result"]["text"]
    assert stopped["result"]["finish_reason"] == "stop"


def test_invalid_sampling_is_a_clear_error(engine, smollm2_path):
    with pytest.raises(EngineRequestError, match="top-p"):
        engine.chat(smollm2_path, [{"role": "user", "content": "hi"}], {"top_p": 7}).result()


def test_cancel_during_generation_then_next_request_works(engine, smollm2_path):
    handle = engine.chat(smollm2_path, LONG_STORY, {"temperature": 0.7, "max_tokens": 2000, "seed": 1})
    tokens_after_cancel = 0
    cancelled_at = None
    outcome = None
    for event in handle.events(timeout=120):
        if event["event"] == "token":
            if cancelled_at is None:
                handle.cancel()
                cancelled_at = time.perf_counter()
            else:
                tokens_after_cancel += 1
        else:
            outcome = event
    assert outcome["event"] == "error" and outcome["kind"] == "cancelled"
    assert outcome["partial"], "the partial reply comes back with the cancellation"
    # One decode step is ~12 ms; a cancel honoured between tokens leaves at most a couple behind.
    assert tokens_after_cancel <= 3
    done = engine.chat(smollm2_path, [{"role": "user", "content": "Say hello."}], GREEDY).result()
    assert done["result"]["text"]


def test_cancel_during_prompt_processing(engine, smollm2_path):
    # ~3,000 tokens of prompt: evaluating it takes seconds, so a cancel lands inside it and
    # must stop llama_decode through the abort callback, not wait for the first token.
    long_text = " ".join(f"Sentence number {i} talks about rivers, bridges and old maps." for i in range(260))
    handle = engine.chat(smollm2_path, [{"role": "user", "content": long_text}], {"max_tokens": 8, "temperature": 0})
    time.sleep(0.3)
    handle.cancel()
    events = list(handle.events(timeout=120))
    assert events[-1]["event"] == "error" and events[-1]["kind"] == "cancelled"
    assert not [e for e in events if e["event"] == "token"], "cancelled before any token was produced"
    assert events[-1]["metrics"]["prompt_tokens_done"] < events[-1]["metrics"]["prompt_tokens"], "the prompt was cut short, not finished"
    done = engine.chat(smollm2_path, [{"role": "user", "content": "Say hello."}], GREEDY).result()
    assert done["result"]["text"]


def test_cancel_of_a_queued_request(engine, smollm2_path):
    first = engine.chat(smollm2_path, LONG_STORY, {"max_tokens": 40, "temperature": 0})
    second = engine.chat(smollm2_path, LONG_STORY, {"max_tokens": 40, "temperature": 0})
    second.cancel()
    assert first.result()["result"]["text"]
    with pytest.raises(EngineRequestError) as info:
        second.result()
    assert info.value.kind == "cancelled"


def test_worker_killed_mid_reply_gives_clear_error_and_recovers(smollm2_path):
    statuses = []
    with EngineClient(EngineSettings(), on_status=lambda state, info: statuses.append(state)) as client:
        handle = client.chat(smollm2_path, LONG_STORY, {"max_tokens": 2000, "temperature": 0.7})
        first_pid = client.pid
        received = []
        with pytest.raises(EngineRequestError) as info:
            def on_text(text):
                received.append(text)
                if len(received) == 3:
                    os.kill(first_pid, signal.SIGKILL)
            handle.stream(on_text, timeout=120)
        assert info.value.kind == "engine_died"
        assert "SIGKILL" in str(info.value) and "restarted" in str(info.value)
        done = client.chat(smollm2_path, [{"role": "user", "content": "Say hello."}], GREEDY).result(timeout=120)
        assert done["result"]["text"]
        assert client.pid != first_pid
        assert client.restarts == 1
        assert "error" in statuses


def test_malformed_models_are_rejected_and_the_worker_survives(engine, tmp_path):
    corpus = build_malformed_corpus(tmp_path / "bad")
    assert len(corpus) >= 12
    pid = engine.pid
    for path, expected in corpus:
        with pytest.raises(EngineRequestError) as info:
            engine.chat(str(path), [{"role": "user", "content": "hi"}]).result(timeout=60)
        assert expected.lower() in str(info.value).lower(), (path.name, str(info.value))
        assert info.value.kind in ("malformed_model", "load_failed")
    assert engine.ping()["pid"] == pid, "no malformed file may crash or restart the worker"


def test_a_valid_header_llama_cannot_load_is_a_clear_error(engine, tmp_path):
    # Passes the header check but lacks most tensors: llama.cpp itself must refuse it cleanly.
    path = write_valid_gguf(tmp_path / "tiny.gguf")
    with pytest.raises(EngineRequestError) as info:
        engine.chat(str(path), [{"role": "user", "content": "hi"}]).result(timeout=60)
    assert info.value.kind == "load_failed"
    assert "could not load" in str(info.value)
    assert engine.ping()["pid"] == engine.pid


PAYLOADS = [
    # CVE-2024-34359 (llama-cpp-python): reach os through a class's globals.
    "{% for c in [].__class__.__base__.__subclasses__() %}{% if c.__name__ == 'catch_warnings' %}"
    "{{ c()._module.__builtins__['__import__']('os').system('touch /tmp/pwned-by-template') }}{% endif %}{% endfor %}",
    # The |attr filter escape fixed in jinja2 3.1.5/3.1.6.
    "{{ (messages|attr('__class__'))|attr('__mro__') }}",
    # str.format reaching attributes.
    "{{ '{0.__class__.__mro__}'.format(messages) }}",
    "{{ cycler.__init__.__globals__.os.popen('id').read() }}",
]


@pytest.mark.parametrize("payload", PAYLOADS)
def test_template_injection_is_harmless_through_the_worker(engine, smollm2_path, payload):
    marker = "/tmp/pwned-by-template"
    if os.path.exists(marker):
        os.unlink(marker)
    done = engine.chat(smollm2_path, [{"role": "user", "content": "Say hi."}], GREEDY, chat_template=payload).result()
    assert not os.path.exists(marker)
    assert done["result"]["template"] == "chatml"
    assert done["result"]["template_warning"]
    assert done["result"]["text"]


def test_long_conversation_keeps_system_prompt_and_newest_turns(smollm2_path):
    settings = EngineSettings(n_ctx=512)
    history = [{"role": "system", "content": "You are a pirate."}]
    for i in range(30):
        history += [{"role": "user", "content": f"Question {i}: tell me about ships and harbours."},
                    {"role": "assistant", "content": "Ships sail between harbours carrying cargo and people. " * 2}]
    history.append({"role": "user", "content": "What are you?"})
    with EngineClient(settings) as client:
        done = client.chat(smollm2_path, history, {"max_tokens": 16, "temperature": 0}).result(timeout=120)
    assert done["result"]["messages_dropped"] > 0
    assert done["metrics"]["prompt_tokens"] <= 512


def test_concurrent_callers_get_their_own_replies(engine, smollm2_path):
    results = {}

    def ask(name, question):
        results[name] = engine.chat(smollm2_path, [{"role": "user", "content": question}], GREEDY).result()

    threads = [threading.Thread(target=ask, args=(f"t{i}", q)) for i, q in
               enumerate(["What is the capital of France?", "What colour is the sky?"])]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert "Paris" in results["t0"]["result"]["text"]
    assert "blue" in results["t1"]["result"]["text"].lower()


def test_a_model_that_would_not_fit_is_refused_with_the_numbers(engine, smollm2_path):
    # Under a 64 MiB memory cap the 94 MiB model cannot fit: refused before llama.cpp allocates.
    with pytest.raises(EngineRequestError) as info:
        engine.chat(smollm2_path, [{"role": "user", "content": "hi"}], GREEDY,
                    engine={"memory_limit_bytes": 64 * 1024 * 1024}).result(timeout=60)
    assert info.value.kind == "too_large"
    assert "needs about" in str(info.value) and "is free" in str(info.value)
    assert engine.ping()["pid"] == engine.pid


def test_models_stay_warm_across_tasks_and_the_least_recent_goes_first(smollm2_path, gemma_path, tmp_path):
    import shutil

    third = tmp_path / "smollm2-copy.gguf"
    shutil.copyfile(smollm2_path, third)
    settings = EngineSettings(max_loaded_models=2, n_ctx=512)
    with EngineClient(settings=settings) as client:
        def loads(path: str) -> int:
            handle = client.request("complete", {"model": path, "prompt": "Hello", "sampling": {"max_tokens": 1, "temperature": 0}})
            return sum(1 for event in handle.events() if event.get("event") == "status" and event.get("state") == "loading")

        assert loads(smollm2_path) == 1
        assert loads(gemma_path) == 1
        assert loads(smollm2_path) == 0, "switching back to a warm model does not reload it"
        assert set(client.ping()["loaded"]) == {smollm2_path, gemma_path}
        assert loads(str(third)) == 1
        loaded = client.ping()["loaded"]
        assert gemma_path not in loaded, "the least recently used model was unloaded"
        assert set(loaded) == {smollm2_path, str(third)}
