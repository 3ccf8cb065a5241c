"""What a file that is not what it should be looks like, in words for people.

Every place that refuses a user's file (a model import, a document, a file to translate or to
analyse) names the problem with these words rather than with Python's bytes
(``b'\\xe0\\x1a2\\x04'`` tells a person nothing). Pure functions on a file's first bytes; any
thread, any process. Lives in ``engine/`` because the model header check, the lowest of these
callers, is there.
"""

from __future__ import annotations

__all__ = ["NotText", "decode_text", "looks_like", "reads_as_text", "why_not_text"]

#: Leading bytes of kinds of file a user may pick by mistake, and what to call them.
_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"PK\x03\x04", "a ZIP archive (a Word or OpenDocument file is one too)"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"7z\xbc\xaf", "a 7-Zip archive"),
    (b"Rar!", "a RAR archive"),
    (b"%PDF", "a PDF document"),
    (b"\x89PNG", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"),
    (b"\xd0\xcf\x11\xe0", "an old Microsoft Office document"),
    (b"SQLite format 3", "an SQLite database"),
    (b"\x7fELF", "a program"),
    (b"MZ", "a Windows program"),
    (b"GGUF", "a GGUF model"),
    (b"version https://git-lfs", "a Git LFS pointer, not the file itself"),
    (b"lmgg", "a pre-GGUF llama.cpp model (GGML), which must be converted again"),
    (b"fmgg", "a pre-GGUF llama.cpp model (GGMF), which must be converted again"),
    (b"tjgg", "a pre-GGUF llama.cpp model (GGJT), which must be converted again"),
    *((b"\x80" + bytes([protocol]), "a Python pickle (PyTorch checkpoint)") for protocol in range(2, 6)),
)


def looks_like(start: bytes) -> str | None:
    """What a file starting with ``start`` is, when its first bytes say so ("a PNG image"), else None."""
    for prefix, what in _SIGNATURES:
        if start.startswith(prefix):
            return what
    if start[8:9] == b"{" and len(start) >= 9:
        return "a safetensors file, which must be converted to GGUF"
    return None


def _text_share(data: bytes) -> float:
    """How much of ``data`` reads as text when taken as an 8-bit encoding (0 to 1)."""
    sample = data[:65536].decode("cp1252", errors="replace")
    if not sample:
        return 1.0
    return sum(ch.isprintable() or ch in "\r\n\t" for ch in sample) / len(sample)


def reads_as_text(data: bytes) -> bool:
    """Whether ``data`` (a file's start) reads as text: no NUL bytes, and printable characters
    almost throughout in UTF-8 or an 8-bit encoding."""
    if b"\x00" in data[:65536]:
        return False
    try:
        data[:65536].decode("utf-8")
        return True
    except UnicodeDecodeError as exc:
        if exc.start >= len(data[:65536]) - 3:
            return True  # a character cut by the sample's end
    return _text_share(data) >= 0.95


def why_not_text(data: bytes) -> str:
    """Why ``data`` (a file's bytes, or its start) is not UTF-8 text, as a clause for a message:
    "it looks like a PDF document", "it looks like a binary file", or "it seems to use an older
    encoding such as Windows-1252; save it as UTF-8"."""
    kind = looks_like(data[:32])
    if kind is not None:
        return f"it looks like {kind}"
    if not reads_as_text(data):
        return "it looks like a binary file"
    return "it seems to use an older encoding such as Windows-1252; save it as UTF-8"


class NotText(ValueError):
    """A file's bytes are not text this reader accepts; ``str(exc)`` is a clause for a message
    that starts with the file's name ("is not UTF-8 text (it looks like a PDF document)")."""


def decode_text(data: bytes, *, legacy_8bit: bool = False) -> str:
    """A user's text file's bytes as text: UTF-8 (with or without a byte-order mark) or UTF-16
    with its mark; with ``legacy_8bit``, also an 8-bit file that reads as text in Windows-1252
    (cp1252 maps every byte). Raises :class:`NotText` otherwise."""
    if data[:2] in (b"\xff\xfe", b"\xfe\xff"):
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError:
            raise NotText("is damaged UTF-16 text; save it again as UTF-8") from None
    if b"\x00" not in data[:65536]:
        try:
            return data.decode("utf-8-sig")
        except UnicodeDecodeError:
            pass
        if legacy_8bit and looks_like(data[:32]) is None and reads_as_text(data):
            return data.decode("cp1252", errors="replace")
    raise NotText(f"is not UTF-8 text ({why_not_text(data)})")
