"""Chat templates rendered only inside Jinja's immutable sandbox.

A GGUF file carries its chat template as Jinja source, so a downloaded model can carry
code (CVE-2024-34359 ran shell commands through llama-cpp-python's unsandboxed render).
Here every template runs in :class:`jinja2.sandbox.ImmutableSandboxedEnvironment`
(jinja2 >= 3.1.6 closes the ``|attr`` and ``str.format`` escapes), with a cap on the
output size; a template that trips the sandbox or fails is replaced by a known-good
fallback for the model family, and the caller is told.

Pure functions; any thread, any process (in practice the engine worker).
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass
from functools import lru_cache

import jinja2
from jinja2 import nodes
from jinja2.ext import Extension
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError

import resources

from engine.errors import UserError

#: Rendered prompts longer than this are refused: no honest template needs more than the
#: messages themselves plus a little markup, and a hostile loop must not eat memory.
MAX_RENDERED_CHARS = 4_000_000
FALLBACK_TEMPLATES = ("chatml", "gemma", "plain")


class TemplateError(UserError, ValueError):
    pass


@dataclass
class RenderedPrompt:
    text: str
    template_name: str  # "model" when the file's own template was used, else a fallback name
    warning: str | None = None


def _raise_exception(message: str) -> None:
    raise TemplateError(f"The chat template refused the conversation: {message}")


def _strftime_now(fmt: str) -> str:
    return _dt.datetime.now().strftime(fmt)


class _RefusingSandbox(ImmutableSandboxedEnvironment):
    """The stock sandbox renders a forbidden attribute as an empty string; a template that
    reaches for one is hostile or broken, so here it fails and the fallback takes over."""

    def unsafe_undefined(self, obj, attribute):
        raise SecurityError(f"access to attribute {attribute!r} of a {type(obj).__name__} object is unsafe")

    # The sandbox guards attributes, not sizes: ``'a' * 10**10`` or ``9 ** (9 ** 9)`` would
    # allocate gigabytes or compute for minutes before the output cap could see anything.
    intercepted_binops = frozenset({"*", "**", "+"})

    def call_binop(self, context, operator, left, right):
        if operator == "**" and isinstance(left, int) and isinstance(right, int) \
                and abs(left) > 1 and right * max(abs(left).bit_length(), 1) > 4096:
            raise SecurityError("a power larger than 4096 bits is unsafe")
        if operator in ("*", "+"):
            size = 0
            if operator == "*":
                for seq, n in ((left, right), (right, left)):
                    if isinstance(seq, (str, bytes, list, tuple)) and isinstance(n, int):
                        size = len(seq) * n
            elif isinstance(left, (str, bytes, list, tuple)) and isinstance(right, (str, bytes, list, tuple)):
                size = len(left) + len(right)
            if size > MAX_RENDERED_CHARS:
                raise SecurityError(f"a value of {size} items is larger than a prompt may be")
        return super().call_binop(context, operator, left, right)


def _tojson(value, ensure_ascii: bool = False, indent=None, separators=None, sort_keys: bool = False) -> str:
    import json

    return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


class _GenerationBlock(Extension):
    """``{% generation %}...{% endgeneration %}``: transformers marks the assistant's tokens with it
    (for training masks) and renders the body unchanged; templates of some families (LFM2.5) use it.
    Parsed as transformers parses it, a call block, so ``set`` inside it stays inside it."""

    tags = {"generation"}

    def parse(self, parser):
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
        return nodes.CallBlock(self.call_method("_render_body"), [], [], body).set_lineno(lineno)

    def _render_body(self, caller):
        return caller()


@lru_cache(maxsize=1)
def _environment() -> ImmutableSandboxedEnvironment:
    env = _RefusingSandbox(
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.ChainableUndefined,
        autoescape=False,
        # transformers' apply_chat_template enables {% break %} and {% continue %} and knows
        # {% generation %}; templates of popular families use them, and without them they would fall back.
        extensions=["jinja2.ext.loopcontrols", _GenerationBlock],
    )
    # transformers' tojson keeps non-ASCII text and <, >, & as they are (Jinja's own escapes them
    # for HTML), and takes indent, separators and sort_keys: a template renders the same here.
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = _strftime_now
    return env


@lru_cache(maxsize=32)
def _compile(source: str) -> jinja2.Template:
    return _environment().from_string(source)


def fallback_source(name: str) -> str:
    if name not in FALLBACK_TEMPLATES:
        raise TemplateError(f"Unknown fallback template {name!r}; choose one of {', '.join(FALLBACK_TEMPLATES)}.")
    return resources.path("templates", f"{name}.jinja").read_text(encoding="utf-8")


def choose_fallback(architecture: str | None, template_source: str | None, has_chatml_tokens: bool) -> str:
    """The known-good template for a model family."""
    if has_chatml_tokens or (template_source and "<|im_start|>" in template_source):
        return "chatml"
    if (architecture or "").startswith("gemma") or (template_source and "<start_of_turn>" in template_source):
        return "gemma"
    return "plain"


def _render(source: str, messages: list[dict], bos_token: str, eos_token: str, add_generation_prompt: bool) -> str:
    template = _compile(source)
    pieces: list[str] = []
    size = 0
    # tools and documents are given as None, as transformers gives them when there are none: a
    # template that tests ``tools is not none`` must see the same value there as here.
    for piece in template.generate(
        messages=messages,
        tools=None,
        documents=None,
        add_generation_prompt=add_generation_prompt,
        bos_token=bos_token,
        eos_token=eos_token,
    ):
        size += len(piece)
        if size > MAX_RENDERED_CHARS:
            raise TemplateError("The chat template produced an oversized prompt and was stopped.")
        pieces.append(piece)
    return "".join(pieces)


def render_chat(
    messages: list[dict],
    template_source: str | None,
    *,
    bos_token: str = "",
    eos_token: str = "",
    fallback: str = "plain",
    force_fallback: bool = False,
    add_generation_prompt: bool = True,
) -> RenderedPrompt:
    """Render ``messages`` ([{"role", "content"}]) with the model's template, sandboxed.

    ``force_fallback`` is the per-model switch for users who distrust a file's template.
    """
    clean = [{"role": str(m.get("role", "user")), "content": str(m.get("content", ""))} for m in messages]
    warning = None
    if template_source and not force_fallback:
        try:
            text = _render(template_source, clean, bos_token, eos_token, add_generation_prompt)
            last = clean[-1]["content"].strip() if clean else ""
            if last and last not in text:
                # A template that drops the user's words would make the model answer nothing.
                raise TemplateError("The model's chat template left out the conversation.")
            return RenderedPrompt(text=text, template_name="model")
        except SecurityError as exc:
            warning = f"The model's chat template tried something unsafe and was replaced by the {fallback} template ({exc})."
        except TemplateError as exc:
            if "refused the conversation" in str(exc):
                raise
            warning = f"{exc} The {fallback} template was used instead."
        except (jinja2.TemplateError, TypeError, ValueError, AttributeError, IndexError, KeyError,
                RecursionError, OverflowError, ArithmeticError, MemoryError) as exc:
            # MemoryError: a template that grows a value past the worker's address-space cap.
            warning = f"The model's chat template failed ({type(exc).__name__}: {exc}); the {fallback} template was used instead."
    text = _render(fallback_source(fallback), clean, bos_token, eos_token, add_generation_prompt)
    return RenderedPrompt(text=text, template_name=fallback, warning=warning)
