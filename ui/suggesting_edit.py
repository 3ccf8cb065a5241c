"""Grey inline writing suggestions for a text box (the chat composer, the translate box).

GUI thread for the widgets. :class:`SuggestingTextEdit` paints a suggestion after the
cursor: Tab accepts it; a key that types what the suggestion predicts keeps the rest of it
shown (type-through); any other key dismisses it and is typed as usual, so typing is never
blocked. :class:`SuggestionController` asks :class:`assistant.tasks.suggestions.Suggester`;
the request is sent from a pool thread (the engine starts lazily and may take a moment),
the result arrives on the suggester's private thread and is handed to the GUI thread
through a queued signal. A suggestion for text that has changed since it was asked for is
never shown.

When to show one (issue 23): after a pause in typing, measured against the user's own pace.
:class:`TypingPace` keeps the recent gaps between keys, separately after a letter, after a
space and after punctuation (people hesitate longer between words than inside one), and makes
the pause a multiple of the typical gap, within bounds: a fast typist gets a suggestion
sooner, a slower one is not interrupted by a suggestion at each of their ordinary gaps. The
request is sent early, by about the model's usual reply time before the pause is reached,
and its answer is held until the pause is confirmed, so the pause and the model's time
overlap instead of adding up; a key before then drops it unseen (no flicker).
"""

from __future__ import annotations

import statistics
import time
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING

from PySide6.QtCore import QEvent, QObject, QThreadPool, Qt, QTimer, Signal
from PySide6.QtGui import QColor, QKeyEvent, QPainter
from PySide6.QtWidgets import QPlainTextEdit, QWidget

from ui.jobs import _foreign_thread_bookkeeping  # Python's bookkeeping for pool threads

if TYPE_CHECKING:
    from assistant.tasks.suggestions import Suggester

#: The fixed pause used before issue 23 (and still the pause until the user's pace is known):
#: long enough not to ask at every key of a fast typist, short enough that the suggestion is
#: there when they look up.
SUGGEST_DEBOUNCE_MS = 250


@dataclass(frozen=True)
class SuggestPacing:
    """When a suggestion is asked for and shown. The defaults are the ones chosen on the
    development part of ``benchmarks/suggest_latency.py``."""

    #: Follow the user's own gaps between keys; False: always ``start_pause_ms``.
    adaptive: bool = True
    #: The pause until enough of the user's gaps are known (and the whole pause when not adaptive).
    start_pause_ms: int = SUGGEST_DEBOUNCE_MS
    #: The pause is this many times the user's typical (median) gap in the same place
    #: (inside a word, after a space, after punctuation), so that nearly all ordinary gaps
    #: stay below it and a suggestion does not flash up between two keys. Chosen on the
    #: development part of the benchmark among 2.0, 2.4 and 2.8 (by its rule, fixed before:
    #: the fewest such flashes, as none had fewer than one per 200 keys); lower multipliers
    #: show sooner but flash a suggestion every few dozen keys.
    gap_multiplier: float = 2.8
    #: Never shorter: below this, ordinary gaps of even a very fast typist would count as pauses.
    min_pause_ms: int = 120
    #: Never longer: a slow typist still sees a suggestion within a second of stopping (and a
    #: lower bound would make them the ones whose ordinary gaps flash suggestions).
    max_pause_ms: int = 900
    #: How many recent gaps (per place) make the user's pace: about two lines of typing,
    #: so the pace follows the user within a sentence or two.
    remembered_gaps: int = 24
    #: Fewer known gaps than this in a place: wait as long as in the slowest place known
    #: (and at least ``start_pause_ms``).
    least_gaps: int = 5
    #: A longer gap is the user stopping (reading, thinking), not their typing pace.
    longest_typing_gap_ms: int = 1000
    #: Send the request before the pause is reached, by the model's usual reply time, so
    #: that the answer is ready when the pause is; False: ask when the pause is reached.
    prefetch: bool = True
    #: ... but never before this share of the pause has passed: a request at every key
    #: would keep the engine busy all through typing for answers nobody sees.
    earliest_ask_share: float = 0.4
    #: The model's reply time (request to answer in the window) assumed before any is seen.
    first_reply_ms: float = 120.0
    #: Keep showing the rest of a suggestion while the user types what it predicts.
    type_through: bool = True

    @classmethod
    def fixed(cls, pause_ms: int = SUGGEST_DEBOUNCE_MS) -> "SuggestPacing":
        """The behaviour before issue 23: ask after a fixed pause, show the answer when it
        comes, any key dismisses it (the benchmark's baseline)."""
        return cls(adaptive=False, start_pause_ms=pause_ms, prefetch=False, type_through=False)


_MODIFIER_KEYS = frozenset((Qt.Key.Key_Shift, Qt.Key.Key_Control, Qt.Key.Key_Alt, Qt.Key.Key_AltGr,
                            Qt.Key.Key_Meta, Qt.Key.Key_CapsLock))


#: Where in the text a gap between keys falls: after a letter (inside a word), after a space
#: (before the next word), after punctuation (a clause or sentence ends). People hesitate
#: more at each step, so each place has its own pace.
PLACES = ("word", "space", "mark")


def place_after(char: str) -> str:
    if not char or char.isalnum() or char in "'-_":
        return "word"
    return "space" if char.isspace() else "mark"


class TypingPace:
    """The user's recent gaps between keys and the pause that follows from them. Qt-free;
    GUI thread (it is fed by the text box's key events). Times are in milliseconds."""

    def __init__(self, pacing: SuggestPacing):
        self.pacing = pacing
        # The pause after a space is judged against the user's gaps after spaces, not
        # against the quicker ones inside words.
        self._gaps: dict[str, deque[float]] = {place: deque(maxlen=pacing.remembered_gaps) for place in PLACES}
        self._last_key_ms: float | None = None
        self._place = "word"

    def key_typed(self, char: str, now_ms: float) -> None:
        if self._last_key_ms is not None:
            gap = now_ms - self._last_key_ms
            if 0 <= gap <= self.pacing.longest_typing_gap_ms:
                self._gaps[self._place].append(gap)
        self._last_key_ms = now_ms
        self._place = place_after(char[-1:])

    def typical_gap_ms(self, place: str | None = None) -> float | None:
        """The median of the recent gaps in a place (after the last key by default)."""
        gaps = self._gaps[place or self._place]
        return statistics.median(gaps) if len(gaps) >= self.pacing.least_gaps else None

    def pause_ms(self) -> float:
        """How long after the last key the user counts as pausing."""
        pacing = self.pacing
        if not pacing.adaptive:
            return float(pacing.start_pause_ms)
        typical = self.typical_gap_ms()
        if typical is not None:
            return self._bounded(typical)
        # Too few gaps in this place yet (the first commas of a text): wait as long as in
        # the slowest place known, and never less than before the pace was known.
        known = [gap for gap in map(self.typical_gap_ms, PLACES) if gap is not None]
        return max([float(pacing.start_pause_ms), *map(self._bounded, known)])

    def _bounded(self, typical_gap_ms: float) -> float:
        pacing = self.pacing
        return min(float(pacing.max_pause_ms), max(float(pacing.min_pause_ms), pacing.gap_multiplier * typical_gap_ms))


class ReplyTime:
    """A running estimate of how long the model takes to answer (request sent to answer
    in the window), so the request can be sent that much before the pause. GUI thread."""

    #: Weight of the newest reply: the estimate follows a model switch within a few replies.
    SMOOTHING = 0.3
    #: Ask this much earlier than the estimate itself, for the replies slower than usual.
    MARGIN = 1.25

    def __init__(self, first_ms: float):
        self.estimate_ms = float(first_ms)

    def observed(self, ms: float) -> None:
        self.estimate_ms += self.SMOOTHING * (ms - self.estimate_ms)

    def lead_ms(self) -> float:
        return self.MARGIN * self.estimate_ms


def _now_ms() -> float:
    return time.monotonic() * 1000.0


class SuggestingTextEdit(QPlainTextEdit):
    """A text box that shows a grey suggestion after the cursor. GUI thread only."""

    sig_suggestion_wanted = Signal(str)  # the whole text, with the cursor at the end
    sig_suggestion_dismissed = Signal()  # the request in flight (if any) is no longer wanted

    def __init__(self, parent: QWidget | None = None, pacing: SuggestPacing | None = None):
        super().__init__(parent)
        self.suggestion = ""
        self.suggestions_enabled = True
        self.pacing = pacing or SuggestPacing()
        self.pace = TypingPace(self.pacing)
        self.reply_time = ReplyTime(self.pacing.first_reply_ms)
        self._shown_for: str | None = None  # the text the shown suggestion continues
        self._held: tuple[str, str] | None = None  # (suggestion, its text) waiting for the pause
        self._paused = False  # the pause has been reached since the last change of the text
        self._asked_for: str | None = None  # the text of the request in flight
        self._asked_at_ms = 0.0
        self._answered_for: str | None = None  # the text the last answer (maybe empty) was for
        self._ask_timer = QTimer(self)
        self._ask_timer.setSingleShot(True)
        self._ask_timer.setTimerType(Qt.TimerType.PreciseTimer)  # 5% coarse slack is 20 ms here
        self._ask_timer.timeout.connect(self._ask)
        self._pause_timer = QTimer(self)
        self._pause_timer.setSingleShot(True)
        self._pause_timer.setTimerType(Qt.TimerType.PreciseTimer)
        self._pause_timer.timeout.connect(self._pause_reached)
        self.textChanged.connect(self._forget_stale)

    # ----- asking -----------------------------------------------------------------------
    def _can_ask(self) -> bool:
        cursor = self.textCursor()
        return self.suggestions_enabled and cursor.atEnd() and not cursor.hasSelection() \
            and bool(self.toPlainText().strip())

    def _ask(self) -> None:
        text = self.toPlainText()
        if self._can_ask() and text != self._asked_for and text != self._answered_for:
            self._asked_for = text
            self._asked_at_ms = _now_ms()
            self.sig_suggestion_wanted.emit(self._asked_for)

    def _pause_reached(self) -> None:
        self._paused = True
        text = self.toPlainText()
        if self._held is not None and self._held[1] == text:
            self.show_suggestion(*self._held)
        elif not self.suggestion and self._answered_for != text:
            self._ask_timer.stop()
            self._ask()  # not sent early (no prefetch, or the early timer was not due yet)
        self._held = None

    def _schedule(self) -> None:
        """After a typed key: start waiting for the pause (and for the early request)."""
        self._paused = False
        self._held = None
        pause = self.pace.pause_ms()
        self._pause_timer.start(round(pause))
        if self.suggestion:
            return  # typing through a suggestion: the rest of it is still the model's answer
        if self.pacing.prefetch:
            ask_after = max(self.pacing.earliest_ask_share * pause, pause - self.reply_time.lead_ms())
            self._ask_timer.start(round(ask_after))

    # ----- answers ----------------------------------------------------------------------
    def offer_suggestion(self, text: str, for_text: str) -> None:
        """The model's answer for ``for_text``: shown once the pause is reached, never if the
        text has changed since."""
        if for_text == self._asked_for:
            if text:  # "nothing to suggest" comes back quicker than an answer: not a reply time
                self.reply_time.observed(_now_ms() - self._asked_at_ms)
            self._asked_for = None
        self._answered_for = for_text
        if not text or for_text != self.toPlainText():
            return
        if self._paused:
            self.show_suggestion(text, for_text)
        else:
            self._held = (text, for_text)

    def show_suggestion(self, text: str, for_text: str) -> None:
        """Shown now, but only if the text has not changed since it was asked for."""
        if self.suggestions_enabled and for_text == self.toPlainText() and text and self.textCursor().atEnd():
            self.suggestion = text
            self._shown_for = for_text
            self.viewport().update()

    def _forget_stale(self) -> None:
        # Whatever changed the text (a key, a paste, the program), a suggestion for the old
        # text is not painted again; type-through puts the rest back after its key.
        if self.suggestion and self.toPlainText() != self._shown_for:
            self.suggestion = ""
            self.viewport().update()

    def _stop_waiting(self) -> None:
        self._ask_timer.stop()
        self._pause_timer.stop()
        self._held = None
        self._paused = False
        self._answered_for = None
        if self._asked_for is not None:
            self._asked_for = None
            self.sig_suggestion_dismissed.emit()

    def dismiss(self) -> None:
        self._stop_waiting()
        if self.suggestion:
            self.suggestion = ""
            self.viewport().update()
        self.sig_suggestion_dismissed.emit()

    def accept_suggestion(self) -> bool:
        if not self.suggestion:
            return False
        text, self.suggestion = self.suggestion, ""
        self._stop_waiting()
        self.moveCursor(self.textCursor().MoveOperation.End)
        self.insertPlainText(text)
        self.viewport().update()
        return True

    # ----- keys -------------------------------------------------------------------------
    def event(self, event: QEvent) -> bool:  # noqa: N802
        # Tab must reach us even where Tab moves the focus (the composer): with a suggestion
        # shown it accepts it; without one it keeps its usual meaning.
        if event.type() == QEvent.Type.KeyPress and isinstance(event, QKeyEvent) \
                and event.key() == Qt.Key.Key_Tab and not event.modifiers() and self.suggestion:
            self.accept_suggestion()
            return True
        return super().event(event)

    def keyPressEvent(self, event: QKeyEvent) -> None:  # noqa: N802
        if event.key() == Qt.Key.Key_Tab and not event.modifiers() and self.accept_suggestion():
            return
        if event.key() in _MODIFIER_KEYS:
            # Shift before a capital letter is part of typing: it neither dismisses the
            # suggestion (the letter may type through it) nor restarts the pause.
            self.handle_key(event)
            return
        typed = event.text()
        printable = bool(typed) and typed.isprintable()
        before = self.toPlainText()
        cursor = self.textCursor()
        # What is left of the suggestion if this key types its beginning.
        rest = self.suggestion[len(typed):] if (
            self.pacing.type_through and printable and self.suggestion.startswith(typed)
            and cursor.atEnd() and not cursor.hasSelection()) else None
        self._stop_waiting()
        if rest is None and self.suggestion:
            self.dismiss()
        self.handle_key(event)
        if rest is not None:
            if rest.strip() and self.toPlainText() == before + typed:
                self.suggestion, self._shown_for = rest, before + typed
            else:
                self.suggestion = ""
            self.viewport().update()
        if printable and self.suggestions_enabled:
            self.pace.key_typed(typed, _now_ms())
            self._schedule()

    def handle_key(self, event: QKeyEvent) -> None:
        """The key itself, once the suggestion is dealt with; subclasses add their keys."""
        super().keyPressEvent(event)

    def focusOutEvent(self, event) -> None:  # noqa: N802
        if self.suggestion:
            self.dismiss()
        super().focusOutEvent(event)

    def paintEvent(self, event) -> None:  # noqa: N802
        super().paintEvent(event)
        if not self.suggestion:
            return
        rect = self.cursorRect()
        painter = QPainter(self.viewport())
        color = QColor(self.palette().text().color())
        color.setAlpha(110)
        painter.setPen(color)
        painter.setFont(self.font())
        baseline = rect.top() + self.fontMetrics().ascent()
        painter.drawText(rect.right() + 1, baseline, self.suggestion)
        painter.end()


class _SuggestionBridge(QObject):
    sig_suggestion_received = Signal(str, str)  # suggestion, the text it continues


class SuggestionController(QObject):
    """Connects one :class:`SuggestingTextEdit` to a :class:`Suggester`. GUI thread; call
    :meth:`shutdown` before the box goes away."""

    def __init__(self, edit: SuggestingTextEdit, suggester: "Suggester", parent: QObject | None = None):
        super().__init__(parent or edit)
        self.edit = edit
        self.suggester = suggester
        self.pool = QThreadPool(self)
        # One request at a time is all a text box needs; the newer one supersedes.
        self.pool.setMaxThreadCount(1)
        self._closed = False
        self._bridge = _SuggestionBridge(self)
        self._bridge.sig_suggestion_received.connect(edit.offer_suggestion)
        edit.sig_suggestion_wanted.connect(self._want)
        edit.sig_suggestion_dismissed.connect(suggester.cancel)

    def set_enabled(self, enabled: bool) -> None:
        self.edit.suggestions_enabled = bool(enabled)
        if not enabled:
            self.edit.dismiss()

    def _want(self, text: str) -> None:
        bridge = self._bridge

        def deliver(suggestion) -> None:  # the suggester's private thread
            if not self._closed:
                bridge.sig_suggestion_received.emit(suggestion.text, text)

        def ask() -> None:  # a pool thread
            with _foreign_thread_bookkeeping():
                if not self._closed:
                    try:
                        self.suggester.request(text, deliver)
                    except Exception:  # no suggestion is the right outcome of any failure here
                        pass

        self.pool.start(ask)

    def shutdown(self, timeout_ms: int = 30000) -> bool:
        """GUI thread: no more suggestions; wait for the request being sent."""
        self._closed = True
        self.suggester.cancel()
        return self.pool.waitForDone(timeout_ms)
