"""Per-model settings: kept in the store per model, layered above the app's settings and the
model's defaults (below a session's own choice), applied to the chat's sampling, persona and
the engine's context length; a context that does not fit is refused with the one that does."""

from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace

import pytest

from assistant.chat import model_defaults
from assistant.chat.events import ReplyDone
from assistant.chat.session import ChatSession
from assistant.errors import SettingsError
from assistant.models import model_settings
from assistant.models.model_settings import (
    FROM_APP,
    FROM_CONVERSATION,
    FROM_MODEL_DEFAULTS,
    FROM_MODEL_SETTINGS,
    ModelSettings,
)
from assistant.store import model_scope
from engine.library import largest_context
from engine.settings import SamplingParams
from tests.assistant.test_chat_session import ScriptedHandle

GIB = 1024 ** 3


def chat_model(services):
    return services.library.for_task("chat")


def capture(services) -> list[dict]:
    """An engine whose chat replies "ok" and records what each request was given."""
    calls: list[dict] = []

    def chat(path, prompt, sampling, adapters=None, **options):
        calls.append({"prompt": prompt, "sampling": sampling, **options})
        return ScriptedHandle(["ok"])

    services._engine = SimpleNamespace(chat=chat, close=lambda: None)
    return calls


def test_settings_round_trip_and_reset(services):
    model = chat_model(services)
    assert model_settings.load(services.store, model.id).is_empty
    kept = ModelSettings(n_ctx=2048, temperature=0.3, top_p=0.9, top_k=20, min_p=0.1, repeat_penalty=1.2,
                         max_tokens=300, system_prompt="You are terse.")
    model_settings.save(services.store, model, kept, free_bytes=64 * GIB)
    assert model_settings.load(services.store, model.id) == kept
    # Kept under the model's own scope, as the store's layered settings read them.
    assert services.store.load_settings(model_scope(model.id), ModelSettings) == kept
    assert model_settings.update(services.store, model, free_bytes=64 * GIB, temperature=0.9) \
        == replace(kept, temperature=0.9)
    model_settings.reset(services.store, model.id)
    assert model_settings.load(services.store, model.id).is_empty


def test_values_out_of_range_are_refused_in_words(services):
    model = chat_model(services)
    both = "context length must be at least 256 tokens; temperature must be between 0 and 5"
    with pytest.raises(SettingsError, match=both):
        model_settings.save(services.store, model, ModelSettings(n_ctx=10, temperature=9.0), free_bytes=64 * GIB)
    with pytest.raises(SettingsError, match="context length must be at least"):
        model_settings.save(services.store, model, ModelSettings(n_ctx=10), free_bytes=64 * GIB)
    assert model_settings.load(services.store, model.id).is_empty


def test_a_context_that_does_not_fit_is_refused_with_the_longest_that_does(services):
    model = chat_model(services)
    meta = model.metadata
    free = model.size_bytes + 300 * 1024 ** 2  # the model and a few thousand tokens of KV cache
    fits = largest_context(model.size_bytes, meta["kv_bytes_per_token"], free, n_vocab=meta.get("vocab_size"),
                           n_embd=meta.get("embedding_length"), trained=meta.get("context_length"))
    assert 0 < fits < meta["context_length"]
    with pytest.raises(SettingsError) as refused:
        model_settings.save(services.store, model, ModelSettings(n_ctx=meta["context_length"]), free_bytes=free)
    assert f"Up to {fits:,} tokens of context fit" in str(refused.value)
    assert f"{meta['context_length']:,}-token context" in str(refused.value)
    assert model_settings.load(services.store, model.id).is_empty  # nothing was kept
    model_settings.save(services.store, model, ModelSettings(n_ctx=fits), free_bytes=free)  # the number given fits
    assert model_settings.largest_context(model, free) == fits


def test_layers_model_settings_over_app_over_model_defaults(services, monkeypatch):
    model = chat_model(services)
    tuned = model_defaults.ChatDefaults(system_prompt="Tuned persona.",
                                        sampling=SamplingParams(temperature=0.2, top_k=10, max_tokens=200))
    monkeypatch.setattr(model_defaults, "for_model", lambda _model: tuned)
    services.settings.sampling = replace(SamplingParams(), top_k=30)  # the user changed top-k for the app
    model_settings.save(services.store, model, ModelSettings(max_tokens=99), free_bytes=64 * GIB)
    shown = model_settings.effective(services, model)
    assert shown["max_tokens"] == (99, FROM_MODEL_SETTINGS)
    assert shown["top_k"] == (30, FROM_APP)
    assert shown["temperature"] == (0.2, FROM_MODEL_DEFAULTS)
    assert shown["system_prompt"] == ("Tuned persona.", FROM_MODEL_DEFAULTS)
    assert shown["n_ctx"][1] == FROM_APP


def test_the_chat_uses_the_models_settings_and_its_context(services):
    calls = capture(services)
    model = chat_model(services)
    list(ChatSession(services, model_id=model.id).turn("Hello"))
    without = calls[-1]  # the app's settings over the model's defaults
    model_settings.save(services.store, model, ModelSettings(n_ctx=1024, temperature=0.25, max_tokens=77,
                                                             system_prompt="Answer like a pirate."),
                        free_bytes=64 * GIB)
    session = ChatSession(services, model_id=model.id)
    assert isinstance(list(session.turn("Hello"))[-1], ReplyDone)
    sent = calls[-1]
    assert sent["engine"] == {"n_ctx": 1024}  # the engine loads the model with its own context
    assert (sent["sampling"].temperature, sent["sampling"].max_tokens) == (0.25, 77)
    assert replace(sent["sampling"], temperature=0, max_tokens=1) \
        == replace(without["sampling"], temperature=0, max_tokens=1)  # the fields it does not set are unchanged
    assert sent["prompt"][0] == {"role": "system", "content": "Answer like a pirate."}
    assert services.conversations.messages(session.conversation_id)[-1].sampling["temperature"] == 0.25

    # A persona typed for a conversation, and a session's own sampling (CLI flags, an API request), win.
    list(ChatSession(services, model_id=model.id, system_prompt="Be brief.",
                     sampling=SamplingParams(temperature=1.0)).turn("Hi"))
    assert calls[-1]["prompt"][0]["content"] == "Be brief." and calls[-1]["sampling"].temperature == 1.0

    # Reset: the app's settings again, and no context of its own.
    model_settings.reset(services.store, model.id)
    list(ChatSession(services, model_id=model.id).turn("Hello"))
    assert "engine" not in calls[-1] and calls[-1]["sampling"] == without["sampling"]
    assert calls[-1]["prompt"] == without["prompt"]


def test_the_chat_view_shows_the_persona_a_turn_uses_and_where_it_comes_from(services, tmp_path):
    from assistant.chat import views as chat_views
    from assistant.chat.incognito import IncognitoConversations
    from assistant.chat.prompt import SETTING_SYSTEM_PROMPT
    from tests.engine.gguf_corpus import write_valid_gguf

    calls = capture(services)
    model = chat_model(services)
    other = services.library.add(write_valid_gguf(tmp_path / "tiny.gguf"))
    services.settings.default_system_prompt = "You are helpful."
    assert chat_views.new_conversation_view(services).persona == chat_views.Persona("You are helpful.", FROM_APP)

    model_settings.save(services.store, model, ModelSettings(system_prompt="Answer like a pirate."),
                        free_bytes=64 * GIB)
    new = chat_views.new_conversation_view(services)
    assert new.persona == chat_views.Persona("Answer like a pirate.", FROM_MODEL_SETTINGS)
    assert new.system_prompt == "You are helpful."  # the conversation's choice stays the app's: it follows the model
    # Another model, without a persona of its own, takes the app's; with nothing chosen anywhere, none.
    assert chat_views.persona_for(services, other.id, new.system_prompt) == chat_views.Persona("You are helpful.",
                                                                                               FROM_APP)
    assert chat_views.persona_for(services, other.id, "") == chat_views.Persona("", FROM_MODEL_DEFAULTS)

    # A stored conversation that chose nothing shows the model's persona, the one its turns were sent.
    session = ChatSession(services, model_id=model.id, system_prompt=new.system_prompt)
    list(session.turn("Hello"))
    shown = chat_views.load_conversation(services, session.conversation_id)
    assert shown.persona == chat_views.Persona("Answer like a pirate.", FROM_MODEL_SETTINGS)
    assert calls[-1]["prompt"][0] == {"role": "system", "content": shown.persona.text}
    # Its own persona wins, and is shown as its own.
    chat_views.set_conversation_setting(services, session.conversation_id, SETTING_SYSTEM_PROMPT, "Be brief.")
    shown = chat_views.load_conversation(services, session.conversation_id)
    assert shown.persona == chat_views.Persona("Be brief.", FROM_CONVERSATION)

    # An incognito chat the same, its choice kept in memory.
    incognito = IncognitoConversations()
    hidden = ChatSession(services, model_id=model.id, system_prompt=new.system_prompt, conversations=incognito)
    list(hidden.turn("Hello"))
    assert chat_views.load_conversation(services, hidden.conversation_id, incognito).persona \
        == chat_views.Persona("Answer like a pirate.", FROM_MODEL_SETTINGS)
    chat_views.set_conversation_setting(services, hidden.conversation_id, SETTING_SYSTEM_PROMPT, "Be kind.", incognito)
    assert chat_views.load_conversation(services, hidden.conversation_id, incognito).persona \
        == chat_views.Persona("Be kind.", FROM_CONVERSATION)
    incognito.discard()


def test_the_engine_loads_the_model_with_its_own_context(services):
    model = chat_model(services)
    model_settings.save(services.store, model, ModelSettings(n_ctx=1024, max_tokens=4), free_bytes=64 * GIB)
    done = list(ChatSession(services, model_id=model.id, persist=False).turn("Hi"))[-1]
    assert isinstance(done, ReplyDone)
    # A request that says nothing of the context takes the model as the chat loaded it.
    assert services.engine.load(model.path)["n_ctx"] == 1024


def test_the_cli_changes_prints_and_resets_a_models_settings(services, capsys, monkeypatch):
    from assistant.cli.main import main
    from engine import library as engine_library

    model_id = chat_model(services).id
    services.close()  # the command opens the same database itself
    assert main(["models", "settings", model_id, "--temperature", "0.3", "--ctx", "1024",
                 "--system", "You are terse."]) == 0
    out = capsys.readouterr().out
    assert "temperature     0.3  [this model's settings]" in out
    assert "context length  1,024 tokens  [this model's settings]" in out
    assert "system prompt   'You are terse.'  [this model's settings]" in out
    assert "top-p" in out and "[this model's settings]" not in out.split("top-p")[1].splitlines()[0]

    # Out of range, or a context larger than the machine holds: one line, exit code 2, nothing kept.
    assert main(["models", "settings", model_id, "--temperature", "9"]) == 2
    assert "temperature must be between 0 and 5" in capsys.readouterr().err
    assert main(["models", "settings", model_id, "--ctx", str(2 ** 40)]) == 2
    assert "was trained for at most 8,192 tokens of context" in capsys.readouterr().err
    with monkeypatch.context() as crowded:
        crowded.setattr(engine_library, "available_memory", lambda: 400 * 1024 ** 2)
        assert main(["models", "settings", model_id, "--ctx", "8192"]) == 2
    refused = capsys.readouterr().err
    assert "cannot load with a 8,192-token context" in refused and "tokens of context fit" in refused
    assert main(["models", "settings", model_id]) == 0
    assert "temperature     0.3  [this model's settings]" in capsys.readouterr().out

    assert main(["models", "settings", model_id, "--reset"]) == 0
    out = capsys.readouterr().out
    assert "back to the app's settings" in out and "[this model's settings]" not in out


def test_a_files_recommended_sampling_applies_where_nothing_else_was_chosen(services, tmp_path):
    from tests.engine.gguf_corpus import write_valid_gguf

    path = write_valid_gguf(tmp_path / "recommends.gguf", name="Recommends",
                            floats={"general.sampling.temp": 0.6, "general.sampling.top_p": 0.8,
                                    "general.sampling.min_p": 7.0})  # out of range: left out
    model = services.library.add(path)
    assert model.metadata["recommended_sampling"] == pytest.approx({"temperature": 0.6, "top_p": 0.8, "min_p": 7.0})
    assert model_settings.recommended(model) == pytest.approx({"temperature": 0.6, "top_p": 0.8})
    services.settings.sampling = replace(SamplingParams(), top_p=0.9)  # the user chose top-p for the app
    shown = model_settings.effective(services, model)
    assert shown["temperature"] == (pytest.approx(0.6), model_settings.FROM_FILE)
    assert shown["top_p"] == (0.9, FROM_APP)
    used = model_settings.for_chat(ModelSettings(), model, services.settings.sampling)
    assert (used.temperature, used.top_p) == (pytest.approx(0.6), 0.9)
    used = model_settings.for_chat(ModelSettings(temperature=1.1), model, services.settings.sampling)
    assert used.temperature == 1.1  # the user's own setting for the model wins


def test_a_model_linked_from_ollama_takes_its_modelfile_parameters(services, tmp_path):
    from assistant.models import discovery, views
    from tests.engine.gguf_corpus import write_valid_gguf

    model_file = write_valid_gguf(tmp_path / "tiny.gguf", name="Tiny Ollama", floats={"general.sampling.temp": 0.9,
                                                                                      "general.sampling.top_k": 20})
    root = _ollama_tree(tmp_path / "ollama", model_file,
                        {"temperature": 0.6, "top_p": 0.95, "stop": ["<|im_end|>"], "num_ctx": 8192})
    found = discovery.discover([discovery.Location(discovery.OLLAMA, root)]).found
    assert [f.name for f in found] == ["tiny:latest"] and found[0].params_path
    outcome = views.link_models(services, found)
    assert not outcome.errors
    model = outcome.added[0]
    # Ollama's parameters over the file's own; stop is not sampling a model's settings hold.
    assert model.metadata["recommended_sampling"] == pytest.approx({"temperature": 0.6, "top_p": 0.95, "top_k": 20})
    assert model_settings.effective(services, model)["top_p"] == (0.95, model_settings.FROM_FILE)
    # num_ctx becomes its context length, capped at the 256 tokens this file was trained for.
    assert model_settings.load(services.store, model.id).n_ctx == 256


def test_an_ollama_parameters_blob_that_is_not_json_links_the_model_without_it(tmp_path):
    from assistant.models.discovery import read_ollama_params

    bad = tmp_path / "params"
    bad.write_bytes(b"\x00not json")
    assert read_ollama_params(bad) == {}
    bad.write_text('["a list"]')
    assert read_ollama_params(bad) == {}
    assert read_ollama_params(tmp_path / "gone") == {}


def _ollama_tree(root, model_file, params: dict):
    """``model_file`` moved into an Ollama folder at ``root`` as tiny:latest, with ``params``."""
    import hashlib
    import json

    blobs = root / "blobs"
    blobs.mkdir(parents=True)
    digest = hashlib.sha256(model_file.read_bytes()).hexdigest()
    model_file.rename(blobs / f"sha256-{digest}")
    raw = json.dumps(params).encode()
    (blobs / f"sha256-{hashlib.sha256(raw).hexdigest()}").write_bytes(raw)
    manifest = root / "manifests" / "registry.ollama.ai" / "library" / "tiny" / "latest"
    manifest.parent.mkdir(parents=True)
    manifest.write_text(json.dumps({"schemaVersion": 2, "layers": [
        {"mediaType": "application/vnd.ollama.image.model", "digest": f"sha256:{digest}", "size": 1},
        {"mediaType": "application/vnd.ollama.image.params", "digest": f"sha256:{hashlib.sha256(raw).hexdigest()}",
         "size": 1},
    ]}))
    return root


def test_ollamas_num_ctx_becomes_the_models_context_length_as_far_as_it_fits(services, tmp_path):
    from assistant.models import discovery, fit, views
    from tests.engine.gguf_corpus import write_valid_gguf

    model_file = write_valid_gguf(tmp_path / "tiny.gguf", name="Tiny Long", context_length=4096)
    root = _ollama_tree(tmp_path / "ollama", model_file, {"num_ctx": 2048, "temperature": 0.6})
    found = discovery.discover([discovery.Location(discovery.OLLAMA, root)]).found
    (model,) = views.link_models(services, found).added
    assert model_settings.load(services.store, model.id).n_ctx == 2048
    assert model_settings.effective(services, model)["n_ctx"] == (2048, FROM_MODEL_SETTINGS)
    # Linking again keeps what the user chose since.
    model_settings.update(services.store, model, n_ctx=1024)
    views.link_models(services, found)
    assert model_settings.load(services.store, model.id).n_ctx == 1024
    assert model_settings.adopt_context(services.store, model, 2048) is None

    # The fit check caps it: with memory for about 1,000 tokens, that many are kept.
    model_settings.reset(services.store, model.id)
    shape = fit.ModelShape.from_metadata(model.metadata, model.size_bytes)
    free = fit.assess(shape, 1000, 1 << 40, None).needed_bytes
    kept = model_settings.adopt_context(services.store, model, 4096, free_bytes=free)
    assert kept == model_settings.largest_context(model, free) and 256 <= kept < 4096
    assert model_settings.load(services.store, model.id).n_ctx == kept
    model_settings.reset(services.store, model.id)
    too_little = fit.assess(shape, 100, 1 << 40, None).needed_bytes
    assert model_settings.adopt_context(services.store, model, 4096, free_bytes=too_little) is None
    assert model_settings.load(services.store, model.id).n_ctx is None


@pytest.mark.parametrize("value", ["8192", True, 0, -5, 2048.5, None])
def test_a_num_ctx_that_is_not_a_positive_whole_number_is_ignored(tmp_path, value):
    import json

    from assistant.models.discovery import read_ollama_context

    params = tmp_path / "params"
    params.write_text(json.dumps({"num_ctx": value}))
    assert read_ollama_context(params) is None
    params.write_text(json.dumps({"num_ctx": 8192}))
    assert read_ollama_context(params) == 8192
