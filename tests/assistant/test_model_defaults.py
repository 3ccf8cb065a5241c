"""The default chat model's tuned defaults (issue 23): worked examples before a plain chat, its
sampling under the app's, and the user's own choices winning over both."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from assistant.chat import model_defaults
from assistant.chat.session import ChatSession
from engine.settings import SamplingParams

ROOT = Path(__file__).resolve().parents[2]


def _prepare(services, **choices):
    model = services.library.for_task("chat")
    session = ChatSession(services, model_id=model.id, documents=None, persist=False,
                          history=[{"role": "user", "content": "What is the capital of Peru?"}], **choices)
    return model, session._prepare_reply()[1]


def test_the_worked_examples_are_not_prompts_of_the_benchmark():
    prompts = {p["prompt"].lower() for p in json.loads((ROOT / "benchmarks" / "data" / "chat_prompts.json").read_text())}
    assert len(prompts) >= 150
    for question, _answer in model_defaults.WORKED_EXAMPLES:
        assert question.lower() not in prompts


def test_the_app_sampling_wins_where_the_user_changed_it():
    defaults = model_defaults.ChatDefaults(sampling=replace(SamplingParams(), temperature=0.0, top_k=20))
    untouched = model_defaults.under(SamplingParams(), defaults)
    assert untouched.temperature == 0.0 and untouched.top_k == 20
    changed = model_defaults.under(replace(SamplingParams(), temperature=0.9), defaults)
    assert changed.temperature == 0.9 and changed.top_k == 20  # only the value the user set is theirs


def test_a_plain_chat_with_the_default_model_gets_its_examples_and_sampling(services):
    services.settings.sampling = SamplingParams()  # a new user's settings (the fixture sets its own)
    model, turn = _prepare(services)
    chosen = model_defaults.for_model(model)
    assert chosen.examples, f"{model.id} should be the tuned default chat model"
    assert turn.prompt[: 2 * len(chosen.examples)] == chosen.example_turns()
    assert turn.prompt[-1] == {"role": "user", "content": "What is the capital of Peru?"}
    assert turn.sampling.temperature == chosen.sampling.temperature


def test_a_persona_or_the_users_sampling_replaces_the_defaults(services):
    services.settings.sampling = replace(SamplingParams(), temperature=0.9)
    _model, turn = _prepare(services, system_prompt="You are a pirate.")
    assert turn.prompt[0] == {"role": "system", "content": "You are a pirate."} and len(turn.prompt) == 2
    assert turn.sampling.temperature == 0.9


def test_a_regenerated_reply_samples_even_when_the_reply_was_greedy(services):
    services.settings.sampling = SamplingParams()
    model = services.library.for_task("chat")
    session = ChatSession(services, model_id=model.id, documents=None, persist=False,
                          history=[{"role": "user", "content": "Name a colour."},
                                   {"role": "assistant", "content": "Blue."}])
    _prepared, turn = session._prepare_regenerate(None)
    assert turn.sampling.temperature == SamplingParams().temperature > 0


def test_the_api_sends_the_clients_conversation_as_it_is(services):
    """An API client chooses what the model sees: no worked examples are added to its messages."""
    services.settings.sampling = SamplingParams()
    model = services.library.for_task("chat")
    session = ChatSession(services, model_id=model.id, documents=None, persist=False, worked_examples=False,
                          history=[{"role": "user", "content": "What is the capital of Peru?"}])
    assert session._prepare_reply()[1].prompt == [{"role": "user", "content": "What is the capital of Peru?"}]
