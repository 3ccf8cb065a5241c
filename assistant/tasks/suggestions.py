"""Writing suggestions: the next few words after the cursor, as grey inline text.

Qt-free core. :meth:`Suggester.request` returns at once (the engine works in its own
process); the window calls it from the GUI thread after a typing pause and gets the
suggestion through a callback on the engine client's reader thread, which the window
turns into a signal. Nothing here ever blocks typing.

Why it is fast: the prompt is the text before the cursor, from a start point that moves
only in big steps, so from one keystroke to the next the engine's KV cache already holds
all but the last few tokens and evaluates only those; then at most 6 greedy tokens. A
new request cancels the one before (typing on dismisses it), and the engine cancels
both between tokens and inside prompt evaluation.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from typing import Callable

from engine.client import EngineRequestError

#: Characters of text before the cursor given to the model.
CONTEXT_CHARS = 1500
#: The context's start moves in steps of this many characters, so that consecutive
#: keystrokes share their prompt's beginning (and the engine's cached keys and values).
WINDOW_STEP = 512
#: At most this many tokens per suggestion (the issue's "next few words").
MAX_TOKENS = 6


@dataclass
class Suggestion:
    text: str  # what to show after the cursor (may start with a space); "" for none
    prompt_chars: int
    metrics: dict


def context_window(text: str) -> str:
    """The last ~CONTEXT_CHARS characters, starting at a word boundary that stays put."""
    if len(text) <= CONTEXT_CHARS:
        return text
    start = ((len(text) - CONTEXT_CHARS) // WINDOW_STEP + 1) * WINDOW_STEP
    space = text.find(" ", start)
    if 0 <= space < start + 100:
        start = space + 1
    return text[start:]


def tidy(completion: str, finished: bool, text_ends_with_space: bool) -> str:
    """Cut a raw completion to what is worth showing: one line, whole words only (the last
    word may be cut by the token limit, unless the model ended on its own)."""
    line = completion.split("\n", 1)[0]
    finished = finished or "\n" in completion  # the line ended, so its last word is whole
    if text_ends_with_space:
        line = line.lstrip()
    if not finished:
        # Keep whole words: drop a trailing partial word unless that is all there is.
        match = re.match(r"^(.*\S)\s+\S*$", line)
        if match and not line.endswith(" "):
            line = match.group(1)
    return line.rstrip()


class Suggester:
    """One suggestion at a time for one text box. Thread-safe."""

    def __init__(self, engine, model_path: str | Callable[[], str], enabled: bool | Callable[[], bool] = True):
        self._engine = engine  # EngineClient or a callable returning one (lazy start)
        self._model_path = model_path
        self._enabled = enabled
        self._lock = threading.Lock()
        self._current = None
        self._generation = 0

    @classmethod
    def from_services(cls, services, task: str = "complete") -> "Suggester":
        return cls(lambda: services.engine, lambda: services.library.for_task(task).path,
                   lambda: bool(services.settings.suggestions_enabled))

    @property
    def engine(self):
        return self._engine() if callable(self._engine) else self._engine

    @property
    def enabled(self) -> bool:
        return bool(self._enabled() if callable(self._enabled) else self._enabled)

    def model_path(self) -> str:
        return self._model_path() if callable(self._model_path) else self._model_path

    def cancel(self) -> None:
        """Dismiss the suggestion in flight (the user typed on)."""
        with self._lock:
            handle, self._current = self._current, None
            self._generation += 1
        if handle is not None:
            handle.cancel()

    def _prompt(self, text: str) -> tuple[str, bool]:
        window = context_window(text)
        ends_with_space = window[-1:].isspace()
        # A prompt ending in a space makes small models predict odd space-less tokens;
        # end on the word and strip the space the model adds back.
        return (window.rstrip() if ends_with_space else window), ends_with_space

    def request(self, text: str, on_result: Callable[[Suggestion], None]) -> bool:
        """Ask for a suggestion after ``text``; ``on_result`` runs on a private thread with
        the result unless a newer request or :meth:`cancel` superseded it. Returns False
        when there is nothing to do (off, empty text)."""
        self.cancel()
        if not self.enabled or not text.strip():
            return False
        prompt, ends_with_space = self._prompt(text)
        handle = self.engine.complete(self.model_path(), prompt,
                                      {"temperature": 0, "max_tokens": MAX_TOKENS, "stop": ["\n"],
                                       "repeat_penalty": 1.0})
        with self._lock:
            self._current = handle
            generation = self._generation

        def wait() -> None:
            try:
                done = handle.result()
            except EngineRequestError:
                return  # cancelled or failed: no suggestion is the right outcome
            result = done.get("result") or {}
            suggestion = Suggestion(tidy(result.get("text", ""), result.get("finish_reason") == "stop", ends_with_space),
                                    len(prompt), done.get("metrics") or {})
            with self._lock:
                current = generation == self._generation
                if current:
                    self._current = None
            if current:
                on_result(suggestion)

        threading.Thread(target=wait, name="suggestion-wait", daemon=True).start()
        return True

    def suggest(self, text: str, timeout: float | None = 60.0) -> Suggestion:
        """Blocking variant for the CLI and benchmarks (never the GUI thread)."""
        done = threading.Event()
        box: list[Suggestion] = []

        def on_result(s: Suggestion) -> None:
            box.append(s)
            done.set()

        if not self.request(text, on_result):
            return Suggestion("", 0, {})
        if not done.wait(timeout):
            self.cancel()
            raise TimeoutError("No suggestion in time.")
        return box[0]
