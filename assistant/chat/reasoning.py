"""A reasoning model's thinking, kept apart from its answer.

Reasoning models (Qwen3, DeepSeek-R1 distills, SmolLM3, ...) write their thinking between
markers such as ``<think>`` and ``</think>`` before the answer; some chat templates open the
block themselves (the prompt ends with ``<think>``), so the reply starts inside it and only
the closing marker arrives. :class:`ThinkParser` splits a stream of tokens into reasoning and
answer as they arrive, with a marker split over several tokens held back until it is whole.

Only the answer is the message's text: it is what history search, titles, copies and the next
turn's prompt use (these models' templates expect earlier turns without their thinking); the
reasoning is stored beside it and kept in exports.

Pure Python, no state beyond one parser per reply: any thread (the session's worker thread).
"""

from __future__ import annotations

from dataclasses import dataclass

#: (opening, closing) markers of a reasoning block, the common ones first. Kimi writes ◁think▷.
MARKERS: tuple[tuple[str, str], ...] = (
    ("<think>", "</think>"),
    ("<thinking>", "</thinking>"),
    ("<reasoning>", "</reasoning>"),
    ("<|begin_of_thought|>", "<|end_of_thought|>"),
    ("◁think▷", "◁/think▷"),
)
#: What separates two reasoning blocks of one reply in the stored reasoning.
BLOCK_SEPARATOR = "\n\n"
#: Shown under reasoning that never closed (the reply hit its token limit while thinking).
UNCLOSED_NOTE = ("The model stopped while still thinking (it reached its length limit), so there is no "
                 "answer: what it had is shown as its reasoning. Raise “Max tokens” in the model's "
                 "settings, or ask again.")

REASONING = "reasoning"
ANSWER = "answer"


@dataclass(frozen=True)
class Piece:
    """A run of streamed text and which part of the reply it belongs to."""

    kind: str  # REASONING or ANSWER
    text: str


def template_opens_think(rendered_prompt_tail: str) -> bool:
    """Whether a prompt rendered with the generation prompt ends inside a reasoning block (the
    template opened it: DeepSeek-R1 distills), so the reply starts as reasoning."""
    tail = rendered_prompt_tail.rstrip()
    return any(tail.endswith(opening) for opening, _closing in MARKERS)


def template_reasons(template_source: str | None) -> bool:
    """Whether a chat template belongs to a reasoning model: it mentions a thinking marker."""
    return bool(template_source) and any(marker in template_source for pair in MARKERS for marker in pair)


class ThinkParser:
    """Splits a streamed reply into reasoning and answer (see the module docstring).

    ``feed(text)`` returns the :class:`Piece` objects that are certain so far; ``close()``
    returns what was held back (a partial marker is text after all). ``reasoning`` and
    ``answer`` are the whole of each so far, tidied (no marker, no blank lines at the edges).
    ``starts_in_reasoning``: the template opened the block, so text before a closing marker is
    reasoning. A closing marker with no block open and no reasoning yet also means that: what was
    taken for the answer was reasoning (``revised`` is then True and the totals say so).
    """

    def __init__(self, starts_in_reasoning: bool = False):
        self._in_reasoning = starts_in_reasoning
        self._closing = MARKERS[0][1] if starts_in_reasoning else ""
        self._held = ""  # text that may be the start of a marker
        self._reasoning_blocks: list[list[str]] = [[]] if starts_in_reasoning else []
        self._answer: list[str] = []
        self._answer_started = False  # leading blank space of the answer is dropped
        self.revised = False
        self.saw_marker = starts_in_reasoning

    # ----- state -----------------------------------------------------------------------------
    @property
    def in_reasoning(self) -> bool:
        """True while the reply is inside an unclosed reasoning block."""
        return self._in_reasoning

    @property
    def reasoning(self) -> str:
        blocks = ("".join(block).strip() for block in self._reasoning_blocks)
        return BLOCK_SEPARATOR.join(block for block in blocks if block)

    @property
    def answer(self) -> str:
        return "".join(self._answer).rstrip()

    # ----- feeding ---------------------------------------------------------------------------
    def feed(self, text: str) -> list[Piece]:
        pieces: list[Piece] = []
        buffer = self._held + text
        self._held = ""
        while buffer:
            if self._in_reasoning:
                index = buffer.find(self._closing)
                if index >= 0:
                    self._emit(pieces, REASONING, buffer[:index])
                    buffer = buffer[index + len(self._closing):]
                    self._in_reasoning = False
                    self._answer_started = False  # the blank line after the block is not the answer
                    continue
                keep = _partial_tail(buffer, (self._closing,))
            else:
                found = self._next_marker(buffer)
                if found is not None:
                    index, marker, opens, closing = found
                    self._emit(pieces, ANSWER, buffer[:index])
                    buffer = buffer[index + len(marker):]
                    self.saw_marker = True
                    if opens:
                        self._in_reasoning, self._closing = True, closing
                        self._reasoning_blocks.append([])
                    elif not self._reasoning_blocks:
                        # A close with no open: the template opened the block, so the "answer"
                        # so far was thinking.
                        self._reasoning_blocks.append(list(self._answer))
                        self._answer, self.revised = [], True
                        self._answer_started = False
                    continue
                keep = _partial_tail(buffer, [m for pair in MARKERS for m in pair])
            certain = buffer[:len(buffer) - keep]
            self._held = buffer[len(buffer) - keep:]
            self._emit(pieces, REASONING if self._in_reasoning else ANSWER, certain)
            break
        return pieces

    def close(self) -> list[Piece]:
        """The end of the reply: text held back as a possible marker is plain text."""
        pieces: list[Piece] = []
        held, self._held = self._held, ""
        self._emit(pieces, REASONING if self._in_reasoning else ANSWER, held)
        return pieces

    def _next_marker(self, buffer: str):
        """The first opening or closing marker in ``buffer``: (index, marker, opens, closing)."""
        best = None
        for opening, closing in MARKERS:
            for marker, opens in ((opening, True), (closing, False)):
                index = buffer.find(marker)
                if index >= 0 and (best is None or index < best[0]):
                    best = (index, marker, opens, closing)
        return best

    def _emit(self, pieces: list[Piece], kind: str, text: str) -> None:
        if not text:
            return
        if kind == ANSWER:
            if not self._answer_started:
                text = text.lstrip()
                if not text:
                    return
                self._answer_started = True
            self._answer.append(text)
        else:
            self._reasoning_blocks[-1].append(text)
        pieces.append(Piece(kind, text))


def _partial_tail(buffer: str, markers) -> int:
    """How many characters at the end of ``buffer`` could be the start of one of ``markers``."""
    longest = 0
    for marker in markers:
        for size in range(min(len(marker) - 1, len(buffer)), longest, -1):
            if marker.startswith(buffer[-size:]):
                longest = size
                break
    return longest


def split_reasoning(text: str, starts_in_reasoning: bool = False) -> tuple[str, str, bool]:
    """(reasoning, answer, unclosed) of a whole reply; the same rules as the streamed parser."""
    parser = ThinkParser(starts_in_reasoning)
    parser.feed(text)
    parser.close()
    return parser.reasoning, parser.answer, parser.in_reasoning


#: Keys of a model record's metadata set at import (assistant/models/library.py).
META_REASONS = "reasoning"  # the chat template mentions a thinking marker
META_OPENS_THINK = "think_opened_by_template"  # its generation prompt ends inside a block
#: Keys of a reply's metrics.
METRIC_THINKING_S = "thinking_s"  # seconds from the first thought to the end of the block
METRIC_UNCLOSED = "reasoning_unclosed"  # the reply ended inside its reasoning


def template_flags(template_source: str | None) -> dict:
    """The two metadata flags of a chat template (:data:`META_REASONS`, :data:`META_OPENS_THINK`):
    one sandboxed render of a one-line conversation, a few milliseconds. Any thread."""
    if not template_reasons(template_source):
        return {META_REASONS: False, META_OPENS_THINK: False}
    from engine.chat_template import render_chat

    try:
        rendered = render_chat([{"role": "user", "content": "Hello"}], template_source)
        opens = rendered.template_name == "model" and template_opens_think(rendered.text)
    except Exception:  # noqa: BLE001 - a template that cannot render is the engine's to report
        opens = False
    return {META_REASONS: True, META_OPENS_THINK: opens}


def thinking_line(seconds: float | None, unclosed: bool = False, streaming: bool = False) -> str:
    """The heading of a reply's reasoning: 'Thinking…' while it streams, 'Thought for 12 s'."""
    if streaming:
        return "Thinking…"
    if unclosed:
        return "Thinking (stopped before an answer)"
    if seconds is None:
        return "Thoughts"
    return f"Thought for {max(1, round(seconds))} s"


class TimedThinking:
    """A :class:`ThinkParser` that also times the thinking, for the reply's metrics
    (:data:`METRIC_THINKING_S`, :data:`METRIC_UNCLOSED`). ``clock``: injectable for tests."""

    def __init__(self, starts_in_reasoning: bool = False, clock=None):
        import time

        self.parser = ThinkParser(starts_in_reasoning)
        self._clock = clock or time.monotonic
        self._began: float | None = self._clock() if starts_in_reasoning else None
        self._ended: float | None = None

    def feed(self, text: str) -> list[Piece]:
        return self._timed(self.parser.feed(text))

    def close(self) -> list[Piece]:
        return self._timed(self.parser.close())

    def _timed(self, pieces: list[Piece]) -> list[Piece]:
        now = self._clock()
        if self._began is None and (self.parser.saw_marker or any(p.kind == REASONING for p in pieces)):
            self._began = now
        if self._began is not None and not self.parser.in_reasoning and self._ended is None \
                and any(p.kind == ANSWER for p in pieces):
            self._ended = now
        return pieces

    def metrics(self, metrics: dict) -> dict:
        """``metrics`` with the thinking's figures added (unchanged for a reply without reasoning)."""
        if not self.parser.reasoning:
            return dict(metrics)
        end = self._ended if self._ended is not None else self._clock()
        added = {METRIC_THINKING_S: round(end - (self._began or end), 2)}
        if self.parser.in_reasoning:
            added[METRIC_UNCLOSED] = True
        return {**metrics, **added}
