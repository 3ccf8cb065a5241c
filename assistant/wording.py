"""Words the screens and the command line share (plain functions, any thread): counts, sizes,
parameter counts and a reply's speed, written the same way everywhere."""

from __future__ import annotations

from typing import Any

from engine.units import human_size

__all__ = ["counted", "human_size", "human_count", "metrics_line", "duration", "passages_line"]


def counted(number: int, noun: str) -> str:
    """'1 file', '3 files': the plural of the nouns the screens count takes an s."""
    return f"{number} {noun}{'' if number == 1 else 's'}"


def human_count(n: Any, unknown: str = "unknown") -> str:
    """A parameter count: '135M', '1.2B', '270M'."""
    if not isinstance(n, (int, float)) or n <= 0:
        return unknown
    for scale, unit in ((1e9, "B"), (1e6, "M"), (1e3, "K")):
        if n >= scale:
            return f"{n / scale:.1f}".removesuffix(".0") + unit
    return str(int(n))


def duration(ms: float) -> str:
    """A short wait in its natural unit: '420 ms' under a second, '1.42 s' from one second on."""
    return f"{ms:.0f} ms" if ms < 1000 else f"{ms / 1000:.2f} s"


def metrics_line(metrics: dict) -> str:
    """A reply's speed and size: '42.0 tokens/s · first token 420 ms · 96 tokens · prompt 310 tokens'."""
    parts = []
    speed = metrics.get("tokens_per_s")
    if isinstance(speed, (int, float)) and speed > 0:
        parts.append(f"{speed:.1f} tokens/s")
    ttft = metrics.get("ttft_ms")
    if isinstance(ttft, (int, float)) and ttft >= 0:
        parts.append(f"first token {duration(ttft)}")
    completion = metrics.get("completion_tokens")
    if isinstance(completion, int):
        parts.append(counted(completion, "token"))
    prompt = metrics.get("prompt_tokens")
    if isinstance(prompt, int):
        evaluated = metrics.get("prompt_tokens_evaluated")
        new = f" ({evaluated} new)" if isinstance(evaluated, int) and evaluated != prompt else ""
        parts.append(f"prompt {counted(prompt, 'token')}{new}")
    return " · ".join(parts)


def passages_line(passages: int, used_tokens: int, room_tokens: int) -> str:
    """What an answer from documents was given to read, for people: 'Used 3 passages (1,240 of
    3,738 tokens of room)'; 'No passage of your documents matched' when there were none."""
    if passages <= 0:
        return f"No passage of your documents matched ({room_tokens:,} tokens of room were free)."
    return f"Used {counted(passages, 'passage')} ({used_tokens:,} of {room_tokens:,} tokens of room)."
