"""Words the screens and the command line share (plain functions, any thread)."""

from __future__ import annotations


def counted(number: int, noun: str) -> str:
    """'1 file', '3 files': the plural of the nouns the screens count takes an s."""
    return f"{number} {noun}{'' if number == 1 else 's'}"
