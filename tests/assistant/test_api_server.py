"""The local OpenAI-compatible API, driven by the real `openai` client against a running
server with the real default models (SmolLM2 chat, Gemma completions, MiniLM embeddings).

One server and one engine serve the module (started before the first test, so the
leftover-thread check sees only what a test itself starts). Tests that use the same model
sit together: the worker keeps one generation model loaded at a time.
"""

from __future__ import annotations

import base64
import os
import signal
import stat
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx2 as httpx
import numpy as np
import openai
import pytest

from assistant.api.server import ApiServer, ApiServerConfig, ApiServerError, FairQueue, QueueFullError, is_loopback
from assistant.app import build_services
from assistant.config import AppPaths
from assistant.settings import api_token_path, load_or_create_api_token

ROOT = Path(__file__).resolve().parents[2]
GEMMA = "gemma-3-270m"
SMOLLM = "smollm2-135m-instruct"
MINILM = "all-minilm-l6-v2"
#: Bounded waits for a condition the server reaches on its own; generous, the CI box is shared.
WAIT_S = 300


@pytest.fixture(scope="module")
def services(tmp_path_factory, joined_pack_dir):
    folder = tmp_path_factory.mktemp("api") / "data"
    (folder / "models").mkdir(parents=True)
    for item in joined_pack_dir.iterdir():
        os.link(item, folder / "models" / item.name)
    services = build_services(AppPaths(folder))
    ids = {m.id for m in services.library.list()}
    assert {GEMMA, SMOLLM, MINILM} <= ids, f"the default model pack is incomplete: {sorted(ids)}; run `make test`"
    services.engine  # noqa: B018 (start the worker now: its threads belong to the module, not a test)
    yield services
    services.close()


@pytest.fixture(scope="module")
def server(services):
    server = ApiServer(services, ApiServerConfig(port=0)).start()
    yield server
    server.stop()
    assert not server.running


@pytest.fixture
def client(server):
    with openai.OpenAI(base_url=server.url, api_key=server.token, max_retries=0, timeout=WAIT_S) as client:
        yield client


def copy_prompt(word: str) -> str:
    """A few-shot pattern a base model continues with exactly ``word``."""
    return f"Word: red\nCopy: red\n\nWord: blue\nCopy: blue\n\nWord: {word}\nCopy:"


def wait_for(condition, what: str):
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def record_of(server: ApiServer, request_id: str):
    return next((r for r in server.finished if r.id == request_id), None)


# ----- no engine needed ----------------------------------------------------------------------
def test_token_file_is_private_stable_and_rotates(tmp_path):
    token = load_or_create_api_token(tmp_path)
    path = api_token_path(tmp_path)
    assert len(token) >= 40 and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_or_create_api_token(tmp_path) == token
    os.chmod(path, 0o644)
    assert load_or_create_api_token(tmp_path) == token
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    fresh = load_or_create_api_token(tmp_path, rotate=True)
    assert fresh != token and path.read_text().strip() == fresh
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_fair_queue_round_robins_clients_and_is_bounded():
    queue = FairQueue(max_pending=5, max_per_client=3)
    for item in ("a1", "a2", "a3"):
        queue.put("a", item)
    with pytest.raises(QueueFullError) as full:
        queue.put("a", "a4")
    assert full.value.per_client
    queue.put("b", "b1")
    queue.put("c", "c1")
    with pytest.raises(QueueFullError) as full:
        queue.put("d", "d1")
    assert not full.value.per_client
    assert queue.remove("a", "a2") and not queue.remove("a", "a2")
    assert [queue.get() for _ in range(4)] == ["a1", "b1", "c1", "a3"]
    queue.put("b", "b2")
    assert queue.close() == ["b2"] and queue.get() is None


def test_models_list_matches_the_library_and_unknown_model_is_404(server, services, client):
    listed = client.models.list().data
    assert [m.id for m in listed] == [m.id for m in services.library.list()]
    assert client.models.retrieve(SMOLLM).id == SMOLLM
    with pytest.raises(openai.NotFoundError) as err:
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    assert err.value.code == "model_not_found" and err.value.body["param"] == "model"
    assert "gpt-4o" in err.value.body["message"]


def test_requests_without_or_with_a_wrong_token_get_401(server):
    with openai.OpenAI(base_url=server.url, api_key="not-the-token", max_retries=0) as wrong:
        with pytest.raises(openai.AuthenticationError) as err:
            wrong.models.list()
    assert err.value.code == "invalid_api_key"
    with httpx.Client() as raw:
        for headers in ({}, {"Authorization": "Bearer"}, {"Authorization": f"Basic {server.token}"},
                        {"Authorization": f"Bearer {server.token}x"}):
            response = raw.post(server.url + "/chat/completions", headers=headers,
                                json={"model": SMOLLM, "messages": [{"role": "user", "content": "hi"}]})
            assert response.status_code == 401, headers
            assert response.headers["www-authenticate"] == "Bearer"
            assert response.json()["error"]["type"] == "invalid_request_error"
        # A page that rebinds its own name to 127.0.0.1 sends that name as Host: refused.
        response = raw.get(server.url + "/models", headers={"Authorization": f"Bearer {server.token}",
                                                            "Host": "attacker.example"})
        assert response.status_code == 400


def test_bad_requests_get_one_clear_400(server, client):
    cases = [
        ({"model": SMOLLM, "messages": []}, "messages"),
        ({"model": SMOLLM, "messages": [{"role": "user", "content": "hi"}], "temperature": 9}, "temperature"),
        ({"model": SMOLLM, "messages": [{"role": "user", "content": "hi"}], "n": 2}, "'n'"),
        ({"model": SMOLLM, "messages": [{"role": "user", "content": "hi"}], "stop": 5}, "'stop'"),
        ({"model": GEMMA, "messages": [{"role": "user", "content": "hi"}]}, "cannot serve /v1/chat/completions"),
        ({"model": SMOLLM, "messages": [{"role": "user", "content": [{"type": "image_url"}]}]}, "text only"),
    ]
    for body, expected in cases:
        with pytest.raises(openai.BadRequestError) as err:
            client.chat.completions.create(**body)
        assert expected in err.value.body["message"], (body, err.value.body)
    with pytest.raises(openai.BadRequestError) as err:
        client.embeddings.create(model=MINILM, input="x", dimensions=128)
    assert "384" in err.value.body["message"]
    with httpx.Client() as raw:
        response = raw.post(server.url + "/completions", content=b"{not json",
                            headers={"Authorization": f"Bearer {server.token}"})
    assert response.status_code == 400 and "not valid JSON" in response.json()["error"]["message"]


def test_non_loopback_bind_is_refused_without_the_explicit_flag(services, data_dir, capsys):
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.10")
    for host in ("0.0.0.0", "192.168.1.10", "::"):
        server = ApiServer(services, ApiServerConfig(host=host, port=0))
        with pytest.raises(ApiServerError, match="--i-understand-this-exposes-the-api"):
            server.start()
        assert not server.running
    from assistant.cli import main as cli
    assert cli.main(["serve", "--host", "0.0.0.0", "--port", "0"]) == 2
    assert "Refusing to listen on 0.0.0.0" in capsys.readouterr().err


def test_port_in_use_is_one_clear_error(services, server):
    other = ApiServer(services, ApiServerConfig(port=server.port))
    with pytest.raises(ApiServerError, match="already in use"):
        other.start()


def test_cli_serve_shows_url_and_token_and_stops_on_sigterm(data_dir):
    process = subprocess.Popen([sys.executable, "-m", "assistant", "serve", "--port", "0", "--show-token"],
                               cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "ASSISTANT_DATA_DIR": str(data_dir)})
    try:
        lines = []
        for line in process.stdout:
            lines.append(line.strip())
            if line.startswith("Ctrl+C stops."):
                break
        url = next(x for x in lines if x.startswith("OpenAI-compatible API at ")).rsplit(" ", 1)[1]
        token = next(x for x in lines if x.startswith("Token: ")).split(" ", 1)[1]
        assert url.startswith("http://127.0.0.1:") and url.endswith("/v1")
        assert token == api_token_path(data_dir).read_text().strip()
        assert stat.S_IMODE(api_token_path(data_dir).stat().st_mode) == 0o600
        with openai.OpenAI(base_url=url, api_key=token, max_retries=0) as client:
            assert MINILM in {m.id for m in client.models.list().data}
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=WAIT_S) == 0, process.stderr.read()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        process.stdout.close()
        process.stderr.close()


# ----- embeddings (MiniLM, loaded beside the generation model) --------------------------------
def test_embeddings_have_384_dimensions_and_rank_similar_texts_higher(client):
    texts = ["A cat is sleeping on the sofa.", "The kitten naps on the couch.",
             "Quarterly interest rates rose by half a percent."]
    # Left out, the openai client asks for base64 and decodes it itself; asked for, it does not.
    for encoding in (openai.NOT_GIVEN, "base64", "float"):
        response = client.embeddings.create(model=MINILM, input=texts, encoding_format=encoding)
        rows = [d.embedding for d in sorted(response.data, key=lambda d: d.index)]
        if encoding == "base64":
            rows = [np.frombuffer(base64.b64decode(row), dtype="<f4") for row in rows]
        vectors = np.array(rows)
        assert vectors.shape == (3, 384)
        assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-3)
        similar, unrelated = vectors[0] @ vectors[1], vectors[0] @ vectors[2]
        assert similar > unrelated + 0.3, (similar, unrelated)
        assert response.model == MINILM and response.usage.prompt_tokens > 10
    single = client.embeddings.create(model=MINILM, input=texts[0], encoding_format="float")
    assert np.allclose(single.data[0].embedding, vectors[0], atol=1e-4)


# ----- completions (Gemma base) ----------------------------------------------------------------
def test_completions_follow_the_prompt_and_honour_stop_max_tokens_and_echo(client):
    response = client.completions.create(model=GEMMA, prompt=copy_prompt("lantern"), max_tokens=4,
                                         temperature=0, stop=["\n"])
    choice = response.choices[0]
    assert choice.text.strip() == "lantern" and "\n" not in choice.text
    assert choice.finish_reason == "stop" and response.object == "text_completion"
    assert response.usage.prompt_tokens > 10 and 1 <= response.usage.completion_tokens <= 4
    capped = client.completions.create(model=GEMMA, prompt="Once upon a time", max_tokens=3, temperature=0,
                                       echo=True)
    assert capped.choices[0].finish_reason == "length" and capped.usage.completion_tokens == 3
    assert capped.choices[0].text.startswith("Once upon a time")
    streamed = client.completions.create(model=GEMMA, prompt=copy_prompt("meadow"), max_tokens=4, temperature=0,
                                         stop=["\n"], stream=True)
    chunks = list(streamed)
    assert "".join(c.choices[0].text for c in chunks).strip() == "meadow"
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_four_concurrent_clients_get_their_own_replies(server, client):
    words = ["apple", "violet", "copper", "saffron"]
    # Two stream and two do not: a mix-up would show as another client's word or an empty reply.

    def ask(word: str, stream: bool) -> tuple[str, str]:
        with openai.OpenAI(base_url=server.url, api_key=server.token, max_retries=0, timeout=WAIT_S) as own:
            kwargs = dict(model=GEMMA, prompt=copy_prompt(word), max_tokens=4, temperature=0, stop=["\n"])
            if stream:
                raw = own.completions.with_raw_response.create(stream=True, **kwargs)
                text = "".join(c.choices[0].text for c in raw.parse() if c.choices)
            else:
                raw = own.completions.with_raw_response.create(**kwargs)
                text = raw.parse().choices[0].text
            return text, raw.headers["x-request-id"]

    with ThreadPoolExecutor(len(words)) as pool:
        results = list(pool.map(ask, words, [i % 2 == 0 for i in range(len(words))]))
    for word, (text, _) in zip(words, results):
        assert text.strip() == word, (word, results)
    ids = [request_id for _, request_id in results]
    assert len(set(ids)) == 4
    records = [record_of(server, request_id) for request_id in ids]
    assert all(r is not None and r.outcome == "done" for r in records)
    assert len({r.client for r in records}) == 4  # four connections, four fair-queue lanes


# ----- chat (SmolLM2) ------------------------------------------------------------------------
def copy_chat(word: str) -> list[dict]:
    return [{"role": "system", "content": "Reply with the user's word only."},
            {"role": "user", "content": "green"}, {"role": "assistant", "content": "green"},
            {"role": "user", "content": "house"}, {"role": "assistant", "content": "house"},
            {"role": "user", "content": word}]


def test_chat_completion_non_streaming_and_streaming(client):
    response = client.chat.completions.create(model=SMOLLM, messages=copy_chat("apple"), temperature=0,
                                              max_tokens=8)
    message = response.choices[0].message
    assert message.role == "assistant" and "apple" in message.content.lower()
    assert response.object == "chat.completion" and response.model == SMOLLM
    assert response.usage.prompt_tokens > 20 and response.usage.completion_tokens >= 1
    assert response.usage.total_tokens == response.usage.prompt_tokens + response.usage.completion_tokens

    stream = client.chat.completions.create(model=SMOLLM, messages=copy_chat("apple"), temperature=0,
                                            max_tokens=8, stream=True, stream_options={"include_usage": True})
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert "apple" in text.lower()
    finals = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finals in (["stop"], ["length"])
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens >= 1
    assert len({c.id for c in chunks}) == 1 and chunks[0].id.startswith("chatcmpl-")


def test_chat_sampling_parameters_are_mapped(client):
    messages = [{"role": "user", "content": "Tell me about the sea."}]
    capped = client.chat.completions.create(model=SMOLLM, messages=messages, max_tokens=5, temperature=0)
    assert capped.choices[0].finish_reason == "length" and capped.usage.completion_tokens == 5
    newer = client.chat.completions.create(model=SMOLLM, messages=messages, max_completion_tokens=3, temperature=0)
    assert newer.usage.completion_tokens == 3
    seeded = [client.chat.completions.create(model=SMOLLM, messages=messages, max_tokens=12, temperature=1.2,
                                             top_p=0.9, seed=1234).choices[0].message.content for _ in range(2)]
    assert seeded[0] == seeded[1]
    first_word = capped.choices[0].message.content.split()[0]
    stopped = client.chat.completions.create(model=SMOLLM, messages=messages, max_tokens=5, temperature=0,
                                             stop=[first_word])
    assert first_word not in stopped.choices[0].message.content
    assert stopped.choices[0].finish_reason == "stop"


def test_client_disconnect_mid_stream_cancels_the_engine_request(server, client):
    raw = client.chat.completions.with_raw_response.create(
        model=SMOLLM, messages=[{"role": "user", "content": "Write a very long story about a dragon."}],
        temperature=0.8, max_tokens=1500, stream=True)
    request_id = raw.headers["x-request-id"]
    stream = raw.parse()
    received = 0
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            received += 1
            if received == 3:
                break
    stream.close()  # the client goes away mid-reply
    record = wait_for(lambda: record_of(server, request_id), "the cancelled request's record")
    assert record.outcome == "cancelled" and record.started
    assert 3 <= record.completion_tokens < 1500
    # The engine is free again at once: the next request is answered.
    assert client.chat.completions.create(model=SMOLLM, messages=copy_chat("apple"), max_tokens=4,
                                          temperature=0).choices[0].message.content


def test_full_queue_answers_429_and_503_and_a_waiting_client_that_leaves_is_dropped(services, server):
    small = ApiServer(services, ApiServerConfig(port=0, max_pending=1, max_pending_per_client=1),
                      token=server.token).start()
    try:
        with openai.OpenAI(base_url=small.url, api_key=small.token, max_retries=0, timeout=WAIT_S) as client:
            long = client.chat.completions.with_raw_response.create(
                model=SMOLLM, messages=[{"role": "user", "content": "Write a very long story about a ship."}],
                max_tokens=1500, stream=True)
            long_stream = long.parse()
            for chunk in long_stream:  # a token: it is running, so the queue itself is empty again
                if chunk.choices and chunk.choices[0].delta.content:
                    break
            waiting_done = threading.Event()
            waiting_id: list[str] = []

            def waiting_client() -> None:
                # Waits behind the long reply, gives up after 3 s and disconnects.
                with httpx.Client(timeout=httpx.Timeout(WAIT_S, read=3.0)) as raw:
                    with pytest.raises(httpx.ReadTimeout):
                        raw.post(small.url + "/chat/completions", headers={"Authorization": f"Bearer {small.token}"},
                                 json={"model": SMOLLM, "user": "waiter", "max_tokens": 4,
                                       "messages": [{"role": "user", "content": "hi"}]})
                waiting_done.set()

            with ThreadPoolExecutor(1) as pool:
                future = pool.submit(waiting_client)
                wait_for(lambda: len(small._queue) == 1, "the waiting request to be queued")
                with pytest.raises(openai.RateLimitError) as same_client:
                    client.chat.completions.create(model=SMOLLM, user="waiter", max_tokens=4,
                                                   messages=[{"role": "user", "content": "hi"}])
                assert same_client.value.code == "too_many_pending"
                with pytest.raises(openai.InternalServerError) as busy:
                    client.chat.completions.create(model=SMOLLM, user="someone-else", max_tokens=4,
                                                   messages=[{"role": "user", "content": "hi"}])
                assert busy.value.status_code == 503 and busy.value.code == "queue_full"
                assert busy.value.response.headers["retry-after"] == "2"
                future.result()
            dropped = wait_for(lambda: next((r for r in small.finished if r.client == "user:waiter"), None),
                               "the abandoned request to be dropped")
            assert dropped.outcome == "cancelled" and not dropped.started
            assert len(small._queue) == 0
            long_stream.close()
            wait_for(lambda: record_of(small, long.headers["x-request-id"]), "the long reply to stop")
    finally:
        small.stop()
    assert not small.running


def test_a_locked_app_answers_423(server, services):
    """While the window is locked (its marker names a live process: this one) the API reads
    nothing from the user's data; unlocked, the same request works again."""
    from assistant.vault.vault import Vault

    vault = Vault(services.paths.data_dir, services.paths.database)
    headers = {"Authorization": f"Bearer {server.token}"}
    vault.mark_locked()
    try:
        with httpx.Client() as raw:
            response = raw.get(server.url + "/models", headers=headers)
        assert response.status_code == 423
        assert "locked" in response.json()["error"]["message"]
    finally:
        vault.clear_locked()
    with httpx.Client() as raw:
        assert raw.get(server.url + "/models", headers=headers).status_code == 200
