"""Real chat templates of popular model families render exactly as transformers renders them.

The corpus lives in tests/engine/data/chat_templates: each ``NAME.jinja`` is a template
copied from a public repository (``sources.json`` names the repository, path, commit and
hash), ``references.json`` holds transformers' renderings of fixed conversations (made
by ``make_references.py`` there), and ``deliberate.json`` lists any rendering where the
app differs on purpose, with the reason.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import pathlib
import sys
import types

import pytest

from engine import chat_template
from engine.chat_template import TemplateError, render_chat

CORPUS = pathlib.Path(__file__).resolve().parent / "data" / "chat_templates"
sys.path.insert(0, str(CORPUS))
import make_references  # noqa: E402  (the corpus folder is not a package)

sys.path.remove(str(CORPUS))

SOURCES = json.loads((CORPUS / "sources.json").read_text(encoding="utf-8"))
REFERENCES = json.loads((CORPUS / "references.json").read_text(encoding="utf-8"))
DELIBERATE = json.loads((CORPUS / "deliberate.json").read_text(encoding="utf-8"))

CASES = [(name, conversation) for name in sorted(SOURCES)
         for conversation in REFERENCES["references"][name]]


@pytest.fixture(autouse=True)
def _fixed_clock(monkeypatch):
    """Templates that print today's date see the moment the references were made at."""
    fixed = _dt.datetime.fromisoformat(REFERENCES["fixed_now"])

    class _FixedDatetime(_dt.datetime):
        @classmethod
        def now(cls, tz=None):
            return fixed

    monkeypatch.setattr(chat_template, "_dt", types.SimpleNamespace(datetime=_FixedDatetime))


MIN_TEMPLATES = 32
FAMILIES = ("Llama 3", "Qwen 2.5", "Qwen 3", "Gemma 2", "Gemma 4", "Phi-3", "Phi-4", "Mistral", "DeepSeek-R1 distill",
            "Granite", "LFM2", "SmolLM3", "command-r", "GLM", "Kimi", "Nemotron", "gpt-oss")


def test_the_corpus_holds_templates_of_the_families_the_issue_names():
    families = {entry["family"] for entry in SOURCES.values()}
    assert len(SOURCES) >= MIN_TEMPLATES, sorted(SOURCES)
    for expected in FAMILIES:
        assert any(f.startswith(expected) for f in families), expected


@pytest.mark.parametrize("name", sorted(SOURCES))
def test_each_template_is_the_file_its_source_names(name):
    entry = SOURCES[name]
    text = (CORPUS / f"{name}.jinja").read_bytes()
    assert hashlib.sha256(text).hexdigest() == entry["sha256"]
    assert entry["repo"] and entry["path"] and len(entry["commit"]) == 40


def test_references_cover_every_template_and_conversation():
    assert set(REFERENCES["references"]) == set(SOURCES)
    for name, renderings in REFERENCES["references"].items():
        source = (CORPUS / f"{name}.jinja").read_text(encoding="utf-8")
        assert set(renderings) == set(make_references.conversations_for(source)), name


@pytest.mark.parametrize("name,conversation", CASES)
def test_app_renders_exactly_as_transformers(name, conversation):
    entry = SOURCES[name]
    source = (CORPUS / f"{name}.jinja").read_text(encoding="utf-8")
    messages, add_prompt = make_references.conversations_for(source)[conversation]
    expected = REFERENCES["references"][name][conversation]
    reason = DELIBERATE.get(name, {}).get(conversation)
    if reason:
        pytest.skip(f"deliberate difference: {reason}")
    if expected.get("error", "").startswith("TemplateError:"):
        # The template refuses the conversation (raise_exception): the app refuses it too, no fallback.
        with pytest.raises(TemplateError, match="refused the conversation"):
            render_chat(messages, source, bos_token=entry["bos_token"], eos_token=entry["eos_token"],
                        add_generation_prompt=add_prompt)
        return
    if "error" in expected:
        # The template fails under transformers (a bug in it): the app does not use it either.
        rendered = render_chat(messages, source, bos_token=entry["bos_token"], eos_token=entry["eos_token"],
                               add_generation_prompt=add_prompt, fallback="chatml")
        assert rendered.template_name == "chatml" and rendered.warning
        return
    rendered = render_chat(messages, source, bos_token=entry["bos_token"], eos_token=entry["eos_token"],
                           add_generation_prompt=add_prompt)
    assert rendered.warning is None and rendered.template_name == "model", rendered.warning
    assert rendered.text == expected["text"]
