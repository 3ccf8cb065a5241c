"""Documents' text as people read it: reStructuredText and Markdown markup removed, code and
directives left out, paragraphs unwrapped, list items apart. Pure functions, any thread.

Cards quote a sentence of the user's file; a sentence with ``double backquotes``, ``:pep:`484```
roles or a literal block in it would read as noise on a card. The passages and headings a
reply cites are shown cleaned the same way (:func:`readable`, :func:`clean_inline`) on the
Documents page, in the chat and by the CLI; the index and the prompt keep the file's own text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_ROLE = re.compile(r":(?P<role>[\w-]+):`(?P<body>[^`]+)`")
_LINK = re.compile(r"`(?P<text>[^`<]+?)\s*<[^>]+>`_{1,2}")
_REF = re.compile(r"`(?P<text>[^`]+)`_{1,2}")
_LITERAL = re.compile(r"``(?P<text>[^`]+)``")
_INTERPRETED = re.compile(r"`(?P<text>[^`]+)`")
_STRONG = re.compile(r"\*\*(?P<text>[^*]+)\*\*")
_EMPHASIS = re.compile(r"(?<![\w*])\*(?P<text>[^*\s][^*]*)\*(?![\w*])")
_MD_LINK = re.compile(r"\[(?P<text>[^\]]+)\]\([^)]+\)")
_FOOTNOTE = re.compile(r"\s*\[(?:#\w*|\d+|\*)\]_")
_BULLET = re.compile(r"^\s*(?:[-*+•]|#\.|\d+[.)])\s+")
_ADORNMENT = re.compile(r"^([=\-~^\"'`#*+:._])\1{2,}\s*$")
#: Terms marked as code or as a role's target in the source: the strongest hint of what a
#: technical document considers a term (``TypedDict``, :pep:`484`).
_MARKED = re.compile(r"``([^`]{2,40})``|:(?:[\w-]+):`([^`]{2,40})`|(?<![`\w])`([^`<]{2,40})`(?![`_])")


@dataclass(frozen=True)
class Paragraph:
    text: str  # one line, markup removed
    item: bool  # a list item (its own short unit)


_ESCAPED_SPACE = re.compile(r"\\[ \t]")
_ESCAPED_MARKUP = re.compile(r"\\([*_`|])")
_HELD_BASE = 0xF0000  # Supplementary Private Use Area-A: never in a document's own text
_HELD = re.compile("[" + "".join(chr(_HELD_BASE + ord(c)) for c in "*_`|") + "]")


def _inline(text: str) -> str:
    # An escaped markup character is itself, never the start or end of markup: held aside as a
    # private-use character until the markup is gone.
    text = _ESCAPED_MARKUP.sub(lambda m: chr(_HELD_BASE + ord(m.group(1))), text)
    text = _FOOTNOTE.sub("", text)

    def role(match: re.Match) -> str:
        body = match.group("body")
        body = re.sub(r"\s*<[^>]+>$", "", body).lstrip("~!")
        if match.group("role") == "pep" and body.isdigit():
            return f"PEP {body}"
        return body

    text = _ROLE.sub(role, text)
    text = _LINK.sub(lambda m: m.group("text"), text)
    text = _LITERAL.sub(lambda m: m.group("text"), text)
    text = _REF.sub(lambda m: m.group("text"), text)
    text = _INTERPRETED.sub(lambda m: m.group("text"), text)
    text = _MD_LINK.sub(lambda m: m.group("text"), text)
    text = _STRONG.sub(lambda m: m.group("text"), text)
    text = _EMPHASIS.sub(lambda m: m.group("text"), text)
    # An escaped space only separates markup from what follows ("``f``\ s" reads "fs"): dropped.
    # Other backslashes (paths, code) stay as written.
    text = _ESCAPED_SPACE.sub("", text)
    text = _HELD.sub(lambda m: chr(ord(m.group(0)) - _HELD_BASE), text)
    return " ".join(text.split())


def clean_inline(text: str) -> str:
    """One line (a heading, a title, a quote) with its inline reST/Markdown markup removed."""
    return _inline(text)


def readable(text: str) -> str:
    """A passage as people read it, as Markdown: paragraphs apart, each list item its own
    "- " line, markup, headings' underlines, directives and literal blocks left out."""
    lines: list[str] = []
    previous_item = False
    for paragraph in paragraphs(text):
        # A blank line between blocks; none between the items of one list.
        if lines and not (paragraph.item and previous_item):
            lines.append("")
        lines.append(("- " if paragraph.item else "") + paragraph.text)
        previous_item = paragraph.item
    return "\n".join(lines)


def marked_terms(text: str) -> list[str]:
    """Terms the source marks as code or a role's target, cleaned, in order of first use."""
    seen: dict[str, None] = {}
    for match in _MARKED.finditer(text):
        term = _inline(match.group(0)).strip(" .,:;()")
        if term and len(term.split()) <= 4 and not re.search(r"[=(){}\[\]#]", term):
            seen.setdefault(term, None)
    return list(seen)


def paragraphs(text: str) -> list[Paragraph]:
    """The readable paragraphs of reST or Markdown ``text``: literal blocks after ``::``,
    directives (``.. code::``), doctest lines, tables, headings' adornments and code fences
    are left out; each list item is its own paragraph."""
    out: list[Paragraph] = []
    lines = text.replace("\r\n", "\n").split("\n")
    buffer: list[str] = []
    item = False
    skip_indent: int | None = None  # inside a literal block or a directive: its indent
    fence = False

    def flush() -> None:
        nonlocal buffer, item
        if buffer:
            joined = _inline(" ".join(part.strip() for part in buffer))
            if joined:
                out.append(Paragraph(joined, item))
        buffer, item = [], False

    literal_next = False
    for raw in lines:
        stripped = raw.strip()
        indent = len(raw) - len(raw.lstrip())
        if stripped.startswith("```"):
            flush()
            fence = not fence
            continue
        if fence:
            continue
        if skip_indent is not None:
            if not stripped or indent > skip_indent:
                continue
            skip_indent = None
        if not stripped:
            flush()
            if literal_next:
                skip_indent, literal_next = -1, False  # the indented block that follows
            continue
        if literal_next and indent > 0:
            continue
        literal_next = False
        if stripped.startswith(".. ") or stripped.startswith(">>>") or stripped.startswith("|") \
                or _ADORNMENT.match(stripped) or stripped.startswith("+-") or stripped.startswith("#"):
            flush()
            if stripped.startswith(".. "):
                skip_indent = indent
            continue
        if _BULLET.match(raw):
            flush()
            item = True
            stripped = _BULLET.sub("", stripped)
        elif buffer and item and indent == 0:
            flush()
        if stripped.endswith("::"):
            stripped = stripped[:-2].rstrip()
            stripped = stripped + ":" if stripped and not stripped.endswith(":") else stripped
            literal_next = True
        buffer.append(stripped)
        if literal_next:
            flush()
            skip_indent = indent
    flush()
    return out


_SENTENCE = re.compile(r"(?<=[.!?])[\"'”»)]*\s+(?=[\"“«(]?[A-ZÀ-ÖØ-Þ0-9])")
_ABBREVIATIONS = ("e.g.", "i.e.", "a.k.a.", "etc.", "vs.", "cf.", "Mr.", "Dr.", "z.B.", "p.ex.", "No.", "approx.")


def sentences(paragraph: str) -> list[str]:
    """The sentences of one paragraph (abbreviations such as "e.g." do not end one)."""
    out: list[str] = []
    start = 0
    for match in _SENTENCE.finditer(paragraph):
        candidate = paragraph[start:match.start()].strip()
        if candidate.endswith(_ABBREVIATIONS) or not candidate:
            continue
        out.append(candidate)
        start = match.end()
    rest = paragraph[start:].strip()
    if rest:
        out.append(rest)
    return out
