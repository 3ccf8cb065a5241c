"""Sizes in words, the same on every screen, in the terminal and in error messages. Any thread.

Binary units with their IEC names (KiB, MiB, GiB): a file of 1,048,576 bytes is "1.0 MiB"
everywhere, never "1.0 MB" in one place and "1.0 MiB" in another.
"""

from __future__ import annotations

_UNITS = ("KiB", "MiB", "GiB", "TiB")


def human_size(n: int | float | None, unknown: str = "unknown") -> str:
    """'512 bytes', '1.5 MiB', '3.2 GiB'; ``unknown`` when the size is not known (None or 0)."""
    if not n:
        return unknown
    size = float(n)
    if size < 1024:
        return f"{size:.0f} bytes"
    for unit in _UNITS:
        size /= 1024
        if size < 1024 or unit == _UNITS[-1]:
            return f"{size:.1f} {unit}"
    return f"{n} bytes"
