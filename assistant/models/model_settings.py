"""The user's own settings for one model of the library: context length, sampling, system prompt.

Edited from the Models page ("Settings…") and ``assistant models settings MODEL``; kept in the
store's settings table under :func:`~assistant.store.model_scope` (``Store.save_settings``).
Every field left None falls through, so the layers are, winning first:

1. a choice made for one request or conversation (the CLI's flags, an API request, a persona typed
   for a conversation);
2. these per-model settings;
3. the app's settings (Settings page), where the user changed them;
4. the model's own tuned defaults (:mod:`assistant.chat.model_defaults`), then the sampling its
   file recommends (``general.sampling.*`` keys, or an Ollama manifest's parameters; kept in the
   record's metadata as ``recommended_sampling`` when it is added), then the engine's defaults.

A context length is checked against this machine's free memory before it is kept and again
before a reply (:func:`check_context`): a model never loads with a context larger than fits, and
the refusal names the longest one that does. The engine checks once more when it loads. A model
linked from Ollama starts with the context its Modelfile sets (``num_ctx``), lowered to what fits
(:func:`adopt_context`).

Qt-free; the store and the memory reading run on a worker thread or the CLI's main thread.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import TYPE_CHECKING

from assistant.errors import SettingsError
from assistant.store import model_scope
from engine.units import human_size

if TYPE_CHECKING:
    from assistant.app import Services
    from assistant.models.library import ModelRecord
    from assistant.store import Store
    from engine.settings import SamplingParams

#: The sampling fields a model's settings may set (the rest stay the app's: seed, stop words).
SAMPLING_FIELDS = ("temperature", "top_p", "top_k", "min_p", "repeat_penalty", "max_tokens")
#: Shortest context a user may choose: below this a system prompt and a question barely fit.
MIN_CONTEXT = 256

# Where an effective value came from, as `assistant models settings` prints it.
FROM_MODEL_SETTINGS = "this model's settings"
FROM_APP = "app settings"
FROM_MODEL_DEFAULTS = "model default"
FROM_FILE = "the model file's recommendation"
#: A persona typed for one conversation (the chat's Persona… box), which wins over all the rest.
FROM_CONVERSATION = "this conversation"
#: The record's metadata key of the sampling its file (or the tool it is linked from) recommends.
META_RECOMMENDED = "recommended_sampling"


@dataclass
class ModelSettings:
    """One model's settings; None everywhere means "as the app and the model say"."""

    # Tokens of context the engine loads this model with (None: the app's Settings value).
    n_ctx: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    min_p: float | None = None
    repeat_penalty: float | None = None
    max_tokens: int | None = None
    # The persona of conversations with this model that chose none of their own (None: the app's).
    system_prompt: str | None = None

    @property
    def is_empty(self) -> bool:
        return all(getattr(self, f.name) is None for f in fields(self))

    def sampling_overrides(self) -> dict:
        return {name: getattr(self, name) for name in SAMPLING_FIELDS if getattr(self, name) is not None}

    def over_sampling(self, base: "SamplingParams") -> "SamplingParams":
        """``base`` with this model's sampling values in place of its own."""
        return replace(base, **self.sampling_overrides())

    def validate(self) -> None:
        """SettingsError naming every value out of range (the sampling's own limits)."""
        from engine.settings import SamplingParams

        problems = []
        if self.n_ctx is not None and int(self.n_ctx) < MIN_CONTEXT:
            problems.append(f"the context length must be at least {MIN_CONTEXT} tokens")
        try:
            SamplingParams.from_dict(self.sampling_overrides())
        except ValueError as exc:
            problems.append(str(exc).removeprefix("Invalid sampling settings: ").rstrip("."))
        if problems:
            raise SettingsError("These settings cannot be kept: " + "; ".join(problems) + ".")


# ----- the store ------------------------------------------------------------------------
def load(store: "Store", model_id: str) -> ModelSettings:
    return store.load_settings(model_scope(model_id), ModelSettings)


def save(store: "Store", model: "ModelRecord", settings: ModelSettings, free_bytes: int | None = None) -> ModelSettings:
    """Keep ``settings`` for ``model`` after checking them (ranges, and that its context fits in
    ``free_bytes``, this machine's free memory when None); SettingsError otherwise."""
    settings.validate()
    if settings.n_ctx is not None:
        check_context(model, int(settings.n_ctx), free_bytes)
    store.save_settings(model_scope(model.id), settings)
    return settings


def update(store: "Store", model: "ModelRecord", free_bytes: int | None = None, **changes) -> ModelSettings:
    """The model's settings with ``changes`` (None leaves a field as it is), checked and kept."""
    current = load(store, model.id)
    changed = replace(current, **{k: v for k, v in changes.items() if v is not None})
    return save(store, model, changed, free_bytes)


def adopt_context(store: "Store", model: "ModelRecord", requested: int, free_bytes: int | None = None) -> int | None:
    """Make ``requested`` tokens (the context the tool ``model`` is linked from runs it with,
    an Ollama Modelfile's ``num_ctx``) the model's context length, lowered to the longest that
    fits in ``free_bytes`` (free memory now when None) and that it was trained for. Nothing
    changes when the user already chose a context for it, or not even :data:`MIN_CONTEXT` fits.
    Returns the context kept (None: none)."""
    from engine.library import available_memory

    own = load(store, model.id)
    if own.n_ctx is not None or not model.is_gguf:
        return None
    free = available_memory() if free_bytes is None else int(free_bytes)
    kept = min(int(requested), largest_context(model, free))
    if kept < MIN_CONTEXT:
        return None
    save(store, model, replace(own, n_ctx=kept), free)
    return kept


def reset(store: "Store", model_id: str) -> ModelSettings:
    """Forget the model's settings: the app's and the model's defaults apply again."""
    empty = ModelSettings()
    store.save_settings(model_scope(model_id), empty)
    return empty


# ----- memory ---------------------------------------------------------------------------
def check_context(model: "ModelRecord", n_ctx: int, free_bytes: int | None = None) -> None:
    """SettingsError when ``model`` with ``n_ctx`` tokens of context does not fit in
    ``free_bytes`` (free memory now when None), naming the longest context that fits."""
    from assistant.models.fit import TOO_LARGE, ModelShape, assess
    from engine.library import available_memory

    if not model.is_gguf:
        return
    shape = ModelShape.from_metadata(model.metadata, model.size_bytes)
    if shape.trained_context and n_ctx > shape.trained_context:
        longest = shape.trained_context
        raise SettingsError(f"{model.display_name} was trained for at most {longest:,} tokens of context; a longer "
                            f"one only gives worse answers. Choose {longest:,} or less.")
    free = available_memory() if free_bytes is None else int(free_bytes)
    fit = assess(shape, n_ctx, free, None)
    if fit.label != TOO_LARGE:
        return
    fits = (f"Up to {fit.largest_context:,} tokens of context fit; choose that or less, or close other programs."
            if fit.largest_context else "Not even a short context fits; close other programs or pick a smaller model.")
    raise SettingsError(f"{model.display_name} cannot load with a {fit.n_ctx:,}-token context: it would need about "
                        f"{human_size(fit.needed_bytes)} of memory, and {human_size(free)} is free. {fits}")


def largest_context(model: "ModelRecord", free_bytes: int | None = None) -> int:
    """The longest context ``model`` fits with in free memory now (0: none)."""
    from assistant.models.fit import ModelShape, assess
    from engine.library import available_memory

    free = available_memory() if free_bytes is None else int(free_bytes)
    return assess(ModelShape.from_metadata(model.metadata, model.size_bytes), MIN_CONTEXT, free, None).largest_context


# ----- what applies ---------------------------------------------------------------------
def recommended(model: "ModelRecord") -> dict:
    """The sampling ``model``'s file recommends, by SamplingParams name (only the fields a
    model's settings may set; values out of range left out)."""
    from engine.settings import SamplingParams

    given = (model.metadata or {}).get(META_RECOMMENDED) or {}
    kept = {}
    for name in SAMPLING_FIELDS:
        value = given.get(name) if isinstance(given, dict) else None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            try:
                SamplingParams.from_dict({name: value})
            except (ValueError, TypeError):
                continue
            kept[name] = value
    return kept


def for_chat(own: ModelSettings, model: "ModelRecord", sampling: "SamplingParams") -> "SamplingParams":
    """A chat's sampling for ``model``: ``sampling`` (the app's over the model's defaults) with
    the file's recommendation where that value is still the engine's default, then the user's
    own settings for the model over all of it."""
    from engine.settings import SamplingParams

    engine = SamplingParams()
    seeded = {name: value for name, value in recommended(model).items()
              if getattr(sampling, name) == getattr(engine, name)}
    return own.over_sampling(replace(sampling, **seeded))


def _model_defaults(model: "ModelRecord"):
    """The model's tuned defaults (assistant/chat/model_defaults.py)."""
    from assistant.chat import model_defaults

    return model_defaults.for_model(model)


def effective(services: "Services", model: "ModelRecord", own: ModelSettings | None = None) -> dict:
    """Each setting as a chat with ``model`` uses it, with where it came from:
    ``{name: (value, source)}``. An app sampling value still at the engine's default counts as
    not chosen, so the model's own default shows through (as in the chat). ``own``: these
    settings instead of the stored ones (``ModelSettings()``: what applies without any)."""
    from engine.settings import SamplingParams

    own = load(services.store, model.id) if own is None else own
    defaults = _model_defaults(model)
    file_says = recommended(model)
    app = services.settings
    engine_defaults = SamplingParams()
    result: dict[str, tuple] = {}
    ctx = own.n_ctx if own.n_ctx is not None else int(app.engine.n_ctx)
    trained = model.metadata.get("context_length")
    if isinstance(trained, int) and trained > 0:
        ctx = min(ctx, trained)  # the engine never goes past what the model was trained for
    result["n_ctx"] = (ctx, FROM_MODEL_SETTINGS if own.n_ctx is not None else FROM_APP)
    for name in SAMPLING_FIELDS:
        if getattr(own, name) is not None:
            result[name] = (getattr(own, name), FROM_MODEL_SETTINGS)
        elif getattr(app.sampling, name) != getattr(engine_defaults, name):
            result[name] = (getattr(app.sampling, name), FROM_APP)
        elif name in file_says and getattr(defaults.sampling, name) == getattr(engine_defaults, name):
            result[name] = (file_says[name], FROM_FILE)
        else:
            result[name] = (getattr(defaults.sampling, name), FROM_MODEL_DEFAULTS)
    if own.system_prompt is not None:
        result["system_prompt"] = (own.system_prompt, FROM_MODEL_SETTINGS)
    elif app.default_system_prompt:
        result["system_prompt"] = (app.default_system_prompt, FROM_APP)
    else:
        result["system_prompt"] = (defaults.system_prompt, FROM_MODEL_DEFAULTS)
    return result


@dataclass
class SettingsView:
    """What the Models page's Settings dialog shows for one model, read in one call."""

    model: "ModelRecord"
    own: ModelSettings  # what the user set for this model (None fields: not set)
    inherited: dict  # {name: (value, source)} that applies where ``own`` sets nothing
    largest_context: int  # the longest context that fits in free memory now (0: none)
    trained_context: int | None  # the longest the model was trained for


def settings_view(services: "Services", model_id: str) -> SettingsView:
    """Worker thread: the store, and free memory."""
    model = services.library.get(model_id)
    trained = model.metadata.get("context_length")
    return SettingsView(model, load(services.store, model.id), effective(services, model, ModelSettings()),
                        largest_context(model) if model.is_gguf else 0,
                        int(trained) if isinstance(trained, int) and trained > 0 else None)


def save_for(services: "Services", model_id: str, settings: ModelSettings) -> ModelSettings:
    """Worker thread: check and keep ``settings`` for the model (SettingsError in words)."""
    return save(services.store, services.library.get(model_id), settings)


def reset_for(services: "Services", model_id: str) -> SettingsView:
    """Worker thread: forget the model's settings; returns what now applies."""
    reset(services.store, model_id)
    return settings_view(services, model_id)


def system_prompt_for(own: ModelSettings, chosen: str | None, app_default: str) -> str | None:
    """The persona a turn uses: the conversation's own choice, unless it is only the app's
    default (or empty), which this model's system prompt replaces."""
    if own.system_prompt is None:
        return chosen
    if chosen is None or not chosen.strip() or chosen == app_default:
        return own.system_prompt
    return chosen


def system_prompt_source(own: ModelSettings, chosen: str | None, app_default: str) -> str:
    """Where the persona :func:`system_prompt_for` picks comes from: :data:`FROM_CONVERSATION`,
    :data:`FROM_MODEL_SETTINGS`, :data:`FROM_APP`, or :data:`FROM_MODEL_DEFAULTS` when nothing
    was chosen (the session then falls back to the model's tuned default, often none)."""
    inherits = chosen is None or not chosen.strip() or chosen == app_default
    if own.system_prompt is not None and inherits:
        return FROM_MODEL_SETTINGS
    if chosen is None or not chosen.strip():
        return FROM_MODEL_DEFAULTS
    return FROM_APP if chosen == app_default else FROM_CONVERSATION


def as_dict(settings: ModelSettings) -> dict:
    return asdict(settings)
