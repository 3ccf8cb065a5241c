"""Chat templates render only in the sandbox; hostile ones fall back harmlessly."""

from __future__ import annotations

import pytest

from engine.chat_template import MAX_RENDERED_CHARS, fallback_source, render_chat

CHATML = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Héllo 👋 {{ 7*7 }}"}]


def test_model_template_renders_and_user_text_is_not_evaluated():
    rendered = render_chat(MESSAGES, CHATML)
    assert rendered.template_name == "model" and rendered.warning is None
    assert "<|im_start|>user\nHéllo 👋 {{ 7*7 }}<|im_end|>" in rendered.text
    assert rendered.text.endswith("<|im_start|>assistant\n")


@pytest.mark.parametrize("name", ["chatml", "gemma", "plain"])
def test_fallbacks_render_every_role(name):
    text = render_chat(MESSAGES + [{"role": "assistant", "content": "Hi."}, {"role": "user", "content": "Again"}],
                       None, fallback=name, bos_token="<bos>").text
    assert "Héllo" in text and "Hi." in text and "Again" in text


def test_gemma_fallback_matches_the_gemma_turn_format():
    text = render_chat([{"role": "user", "content": "Hi"}], None, fallback="gemma", bos_token="<bos>").text
    assert text == "<bos><start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\n"


@pytest.mark.parametrize("payload", [
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ self.__init__.__globals__.__builtins__.__import__('os').system('id') }}",
    "{{ (messages|attr('__class__'))|attr('__mro__') }}",
    "{{ '{0.__class__}'.format(messages) }}",
    "{{ messages.append({'role': 'user', 'content': 'x'}) }}",
    "{% for i in range(10**9) %}x{% endfor %}",
])
def test_hostile_templates_fall_back(payload):
    rendered = render_chat(MESSAGES, payload, fallback="chatml")
    assert rendered.template_name == "chatml"
    assert rendered.warning
    assert "Héllo" in rendered.text


def test_oversized_output_is_stopped():
    payload = "{% for i in range(100000) %}" + "y" * 100 + "{% endfor %}{{ messages[-1]['content'] }}"
    assert 100000 * 100 > MAX_RENDERED_CHARS
    rendered = render_chat(MESSAGES, payload, fallback="plain")
    assert rendered.template_name == "plain" and "oversized" in rendered.warning


def test_forced_fallback_ignores_the_model_template():
    assert render_chat(MESSAGES, CHATML, fallback="plain", force_fallback=True).template_name == "plain"


def test_unknown_fallback_name_is_a_clear_error():
    with pytest.raises(ValueError, match="Unknown fallback"):
        fallback_source("nope")


def test_loop_controls_and_tojson_render_as_transformers_renders_them():
    """{% break %} / {% continue %} (Jinja's loopcontrols, which transformers enables) and its
    tojson (non-ASCII and <, >, & kept) render with the model's template, not a fallback."""
    source = ("{% for m in messages %}{% if m.role == 'system' %}{% continue %}{% endif %}"
              "<|{{ m.role }}|>{{ m.content }}{% if loop.index > 2 %}{% break %}{% endif %}{% endfor %}"
              "{{ {'tool': 'café <&>'} | tojson }}")
    messages = [{"role": "system", "content": "S"}, {"role": "user", "content": "a"},
                {"role": "assistant", "content": "b"}, {"role": "user", "content": "c"}]
    rendered = render_chat(messages, source)
    assert rendered.template_name == "model" and rendered.warning is None
    assert rendered.text == '<|user|>a<|assistant|>b{"tool": "café <&>"}'
