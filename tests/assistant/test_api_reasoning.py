"""A reasoning model's reply over the local API: the answer is the message's content and the
thinking comes apart as ``reasoning_content`` (DeepSeek's and vLLM's field), streamed or not.
The engine's token stream is scripted (the default models do not think)."""

from __future__ import annotations

from tests.assistant.test_api_server import SMOLLM, client, server, services  # noqa: F401 (fixtures)
from tests.assistant.test_chat_session import ScriptedHandle

THINKING = ["<think>", "The user wants", " a capital.", "</think>", "\n\n", "Paris."]


def test_the_thinking_comes_apart_from_the_answer(client, services, monkeypatch):  # noqa: F811
    monkeypatch.setattr(services.engine, "chat", lambda *args, **kwargs: ScriptedHandle(list(THINKING)))
    question = [{"role": "user", "content": "What is the capital of France?"}]
    reply = client.chat.completions.create(model=SMOLLM, messages=question)
    message = reply.choices[0].message
    assert message.content == "Paris."
    assert getattr(message, "reasoning_content", None) == "The user wants a capital."

    chunks = list(client.chat.completions.create(model=SMOLLM, messages=question, stream=True))
    deltas = [c.choices[0].delta for c in chunks if c.choices]
    assert "".join(d.content or "" for d in deltas) == "Paris."
    assert "".join(getattr(d, "reasoning_content", None) or "" for d in deltas) == "The user wants a capital."


def test_a_reply_without_thinking_has_no_reasoning_field(client, services, monkeypatch):  # noqa: F811
    monkeypatch.setattr(services.engine, "chat", lambda *args, **kwargs: ScriptedHandle(["Just ", "this."]))
    reply = client.chat.completions.create(model=SMOLLM, messages=[{"role": "user", "content": "Hi"}])
    assert reply.choices[0].message.content == "Just this."
    assert getattr(reply.choices[0].message, "reasoning_content", None) is None
