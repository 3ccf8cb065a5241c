"""Regenerate references.json: each corpus template rendered by transformers' own renderer.

Run from the repository root after adding or changing a template (``sources.json`` names
where each ``NAME.jinja`` came from and the model's bos/eos tokens)::

    .venv/bin/python tests/engine/data/chat_templates/make_references.py

The renderer is ``transformers.utils.chat_template_utils.render_jinja_template``, called
the way ``PreTrainedTokenizerBase.apply_chat_template`` calls it for one conversation
(tools and documents None, no continued final message, the special tokens as keyword
arguments). Only ``bos_token`` and ``eos_token`` are passed because those are the special
tokens the app passes; no corpus template reads another. ``strftime_now`` is pinned to
:data:`FIXED_NOW` so templates that print today's date render the same on any day; the
corpus test pins the app's renderer to the same moment.

Deliberate differences between the app and transformers are kept in ``deliberate.json``
(name -> conversation -> reason) and survive regeneration; this script never writes it.

A developer tool, run by hand in a single process; it imports transformers, which the
app itself never does.
"""

from __future__ import annotations

import datetime as _dt
import json
import pathlib
import sys

HERE = pathlib.Path(__file__).resolve().parent
FIXED_NOW = _dt.datetime(2025, 3, 14, 9, 26, 53)

#: The fixed conversations every template renders: (messages, add_generation_prompt).
#: The user's text carries non-ASCII characters and Jinja-looking braces on purpose.
CONVERSATIONS: dict[str, tuple[list[dict], bool]] = {
    "system_user": ([
        {"role": "system", "content": "You are a concise assistant."},
        {"role": "user", "content": "Héllo 👋 what is {{ 7*7 }}?"},
    ], True),
    "multi_turn": ([
        {"role": "system", "content": "You are a concise assistant."},
        {"role": "user", "content": "Name a colour."},
        {"role": "assistant", "content": "Blue."},
        {"role": "user", "content": "And another one, in French?"},
    ], True),
    "multi_turn_no_system": ([
        {"role": "user", "content": "Name a colour."},
        {"role": "assistant", "content": "Blue."},
        {"role": "user", "content": "And another one, in French?"},
    ], True),
    "closed_turn": ([
        {"role": "user", "content": "Say hi."},
        {"role": "assistant", "content": "Hi."},
    ], False),
}

#: Only for families whose template knows about thinking (its source mentions "think").
REASONING_CONVERSATION: tuple[list[dict], bool] = ([
    {"role": "user", "content": "What is 2 + 3?"},
    {"role": "assistant", "content": "<think>\nTwo plus three makes five.\n</think>\n\nIt is 5."},
    {"role": "user", "content": "And 4 + 4?"},
], True)


def conversations_for(source: str) -> dict[str, tuple[list[dict], bool]]:
    chosen = dict(CONVERSATIONS)
    if "think" in source:
        chosen["reasoning"] = REASONING_CONVERSATION
    return chosen


def _render_with_transformers(source: str, messages: list[dict], add_generation_prompt: bool,
                              bos_token: str, eos_token: str) -> str:
    from transformers.utils import chat_template_utils

    class _FixedDatetime(_dt.datetime):
        @classmethod
        def now(cls, tz=None):
            return FIXED_NOW

    original = chat_template_utils.datetime
    chat_template_utils.datetime = _FixedDatetime
    try:
        rendered, _ = chat_template_utils.render_jinja_template(
            conversations=[messages],
            tools=None,
            documents=None,
            chat_template=source,
            return_assistant_tokens_mask=False,
            continue_final_message=False,
            add_generation_prompt=add_generation_prompt,
            bos_token=bos_token,
            eos_token=eos_token,
        )
    finally:
        chat_template_utils.datetime = original
    return rendered[0]


def main() -> int:
    import transformers

    sources = json.loads((HERE / "sources.json").read_text(encoding="utf-8"))
    references: dict[str, dict] = {}
    for name, entry in sorted(sources.items()):
        source = (HERE / f"{name}.jinja").read_text(encoding="utf-8")
        renderings: dict[str, dict] = {}
        for conversation, (messages, add_prompt) in conversations_for(source).items():
            try:
                text = _render_with_transformers(source, messages, add_prompt, entry["bos_token"], entry["eos_token"])
                renderings[conversation] = {"text": text}
            except Exception as exc:  # the template refused or failed; the app must not render it either
                renderings[conversation] = {"error": f"{type(exc).__name__}: {exc}"}
        references[name] = renderings
    payload = {
        "transformers_version": transformers.__version__,
        "fixed_now": FIXED_NOW.isoformat(),
        "references": references,
    }
    (HERE / "references.json").write_text(json.dumps(payload, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    total = sum(len(r) for r in references.values())
    errors = sum(1 for r in references.values() for v in r.values() if "error" in v)
    print(f"{len(references)} templates, {total} renderings ({errors} refused by the template)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
