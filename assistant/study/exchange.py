"""Decks in and out: an Anki package (``.apkg``, written with genanki) and CSV. Worker threads
or the CLI's main thread (files and the store).

The Anki package is a real one (genanki, the maintained library for writing them): one note
type with the fields Front, Back and Source, so the card's file, place and sentence travel with
it; multiple-choice options are listed under the question. Files are written atomically. A
CSV import reads a header with front/back (or question/answer) columns, or two plain columns.
"""

from __future__ import annotations

import csv
import hashlib
import html
import io
from pathlib import Path
from typing import TYPE_CHECKING

from assistant.errors import StudyError
from assistant.study.cards import Card
from engine.atomic import atomic_path, atomic_write_text

if TYPE_CHECKING:
    from assistant.study.decks import Decks

#: Largest CSV deck read: a deck of study cards is kilobytes; megabytes are a wrong file.
MAX_IMPORT_BYTES = 5 * 1024 * 1024
CSV_COLUMNS = ("kind", "front", "back", "choices", "source_file", "source_location", "source_sentence")
_FRONT_NAMES = ("front", "question", "q", "recto")
_BACK_NAMES = ("back", "answer", "a", "verso")


def _stable_id(text: str) -> int:
    """A 31-bit id from a name: the same deck or note type keeps its id across exports."""
    return int.from_bytes(hashlib.sha1(text.encode("utf-8")).digest()[:4], "big") >> 1


def _source_text(source: dict) -> str:
    where = ", ".join(x for x in (source.get("file") or "", source.get("location") or "") if x)
    sentence = source.get("sentence") or ""
    return f"{where}: \u201c{sentence}\u201d" if sentence else where


def export_apkg(decks: "Decks", deck_id: int, path: str | Path) -> int:
    """Write the deck as an Anki package; returns the number of notes."""
    import genanki

    name = next((d["name"] for d in decks.list() if d["id"] == deck_id), None)
    cards = decks.cards(deck_id)
    if name is None or not cards:
        raise StudyError("That deck has no cards to export.")
    model = genanki.Model(
        _stable_id("local-assistant study card"), "Local Assistant study card",
        fields=[{"name": "Front"}, {"name": "Back"}, {"name": "Source"}],
        templates=[{"name": "Card", "qfmt": "{{Front}}",
                    "afmt": "{{FrontSide}}<hr id=answer>{{Back}}<br><br><small>{{Source}}</small>"}])
    deck = genanki.Deck(_stable_id(f"local-assistant deck {name}"), name)
    for card in cards:
        front = html.escape(card.front)
        if card.choices:
            front += "<ul>" + "".join(f"<li>{html.escape(c)}</li>" for c in card.choices) + "</ul>"
        deck.add_note(genanki.Note(model=model, fields=[front, html.escape(card.back), html.escape(_source_text(card.source))],
                                   guid=genanki.guid_for(card.kind, card.front, card.back)))
    with atomic_path(Path(path), make_parents=True) as tmp:
        genanki.Package(deck).write_to_file(str(tmp))
    return len(cards)


def export_csv(decks: "Decks", deck_id: int, path: str | Path) -> int:
    cards = decks.cards(deck_id)
    if not cards:
        raise StudyError("That deck has no cards to export.")
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CSV_COLUMNS)
    for card in cards:
        writer.writerow([card.kind, card.front, card.back, " | ".join(card.choices), card.source.get("file", ""),
                         card.source.get("location", ""), card.source.get("sentence", "")])
    atomic_write_text(Path(path), buffer.getvalue())
    return len(cards)


def read_csv_cards(path: str | Path) -> list[Card]:
    """The cards of a CSV deck (see the module docstring); StudyError says what is wrong with a bad file."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > MAX_IMPORT_BYTES:
            raise StudyError(f"{path.name} is {size // 1024} KiB; a deck to import is at most {MAX_IMPORT_BYTES // 1024} KiB.")
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError:
        raise StudyError(f"{path.name} is not a text file in UTF-8, so it cannot be read as a deck.") from None
    except OSError as exc:
        raise StudyError(f"{path.name} cannot be read: {exc.strerror or exc}.") from None
    try:
        dialect = csv.Sniffer().sniff(text[:4096], delimiters=",;\t")
    except csv.Error:
        dialect = csv.excel
    rows = [r for r in csv.reader(io.StringIO(text), dialect) if any(cell.strip() for cell in r)]
    if not rows:
        raise StudyError(f"{path.name} holds no cards.")
    header = [cell.strip().casefold() for cell in rows[0]]
    front_col = next((header.index(n) for n in _FRONT_NAMES if n in header), None)
    back_col = next((header.index(n) for n in _BACK_NAMES if n in header), None)
    if front_col is not None and back_col is not None:
        body = rows[1:]
    elif len(rows[0]) >= 2:
        front_col, back_col, body, header = 0, 1, rows, []
    else:
        raise StudyError(f"{path.name} needs two columns, a question and its answer (or columns named front and back).")
    column = {name: header.index(name) for name in CSV_COLUMNS if name in header}
    cards = []
    for row in body:
        def cell(i: int | None) -> str:
            return row[i].strip() if i is not None and i < len(row) else ""

        front, back = cell(front_col), cell(back_col)
        if not front or not back:
            continue
        kind = cell(column.get("kind")) or "qa"
        choices = [c.strip() for c in cell(column.get("choices")).split(" | ") if c.strip()]
        source = {"file": cell(column.get("source_file")) or path.name, "location": cell(column.get("source_location")),
                  "sentence": cell(column.get("source_sentence")), "path": str(path), "chunk_id": None}
        cards.append(Card(kind if kind in ("cloze", "qa", "choice") else "qa", front, back, source, "en", choices=choices))
    if not cards:
        raise StudyError(f"{path.name} has no row with both a question and an answer.")
    return cards


def import_csv(decks: "Decks", path: str | Path, deck_name: str) -> tuple[int, int]:
    """Add the cards of a CSV file to the deck ``deck_name``; returns (added, already there)."""
    cards = read_csv_cards(path)
    added = decks.add_cards(decks.create(deck_name), cards)
    return added, len(cards) - added
