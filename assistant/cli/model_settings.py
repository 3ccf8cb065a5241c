"""``assistant models settings MODEL``: show, change or reset one model's own settings (context
length, sampling, system prompt), then print the settings a chat with it uses and where each
comes from. CLI main thread. The settings themselves: :mod:`assistant.models.model_settings`."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from assistant.models import model_settings

if TYPE_CHECKING:
    from assistant.app import Services

#: How each setting is named on screen, in the order printed.
LABELS = {
    "n_ctx": "context length",
    "temperature": "temperature",
    "top_p": "top-p",
    "top_k": "top-k",
    "min_p": "min-p",
    "repeat_penalty": "repeat penalty",
    "max_tokens": "max tokens",
    "system_prompt": "system prompt",
}


def add_model_settings_command(models_sub) -> None:
    """Add ``settings`` to the ``assistant models`` subcommands."""
    p = models_sub.add_parser("settings", help="this model's own context length, sampling and system prompt "
                                               "(over the app's settings); prints what applies")
    p.add_argument("name", metavar="MODEL")
    p.add_argument("--ctx", "--context", dest="n_ctx", type=int, help="context length in tokens")
    p.add_argument("--temperature", type=float)
    p.add_argument("--top-p", dest="top_p", type=float)
    p.add_argument("--top-k", dest="top_k", type=int)
    p.add_argument("--min-p", dest="min_p", type=float)
    p.add_argument("--repeat-penalty", dest="repeat_penalty", type=float)
    p.add_argument("--max-tokens", dest="max_tokens", type=int)
    p.add_argument("--system", dest="system_prompt", help="system prompt of chats with this model ('' for the app's)")
    p.add_argument("--reset", action="store_true", help="forget this model's settings (before any others given)")
    p.set_defaults(handler=cmd_models_settings)


def cmd_models_settings(args: argparse.Namespace, services: "Services") -> int:
    model = services.library.get(args.name)
    if args.reset:
        model_settings.reset(services.store, model.id)
        print(f"{model.display_name}: back to the app's settings and the model's defaults.")
    changes = {name: getattr(args, name) for name in LABELS if getattr(args, name, None) is not None}
    if changes:
        current = model_settings.load(services.store, model.id)
        if changes.get("system_prompt") == "":
            current.system_prompt = None  # an empty persona means: the app's
            changes.pop("system_prompt")
        # SettingsError (out of range, a context that does not fit) is the CLI's one-line error.
        model_settings.save(services.store, model, _with(current, changes))
    print(describe(services, model))
    return 0


def _with(settings: model_settings.ModelSettings, changes: dict) -> model_settings.ModelSettings:
    from dataclasses import replace

    return replace(settings, **changes)


def describe(services: "Services", model) -> str:
    """The effective settings of ``model``, one per line, each with where it comes from."""
    lines = [f"Settings for {model.display_name} ({model.id}):"]
    for name, (value, source) in model_settings.effective(services, model).items():
        if name == "system_prompt":
            shown = repr(value) if value else "(none)"
        elif name == "n_ctx":
            shown = f"{int(value):,} tokens"
        else:
            shown = f"{value:g}" if isinstance(value, float) else str(value)
        lines.append(f"  {LABELS[name]:<15} {shown}  [{source}]")
    return "\n".join(lines)
