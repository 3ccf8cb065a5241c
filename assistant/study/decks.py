"""Decks of study cards in the app's store, reviewed on the FSRS schedule.

Threading: every method runs on the caller's thread (a worker thread of the window, the CLI's
main thread) and holds the store's lock for one short transaction, so the store stays the one
owner of writes. A review is one transaction (the card's new FSRS state and the review row
together), so a review session killed mid-way loses no answered card.

Scheduling is the ``fsrs`` package (py-fsrs, the FSRS algorithm Anki uses) with its default
parameters, desired retention 0.9 and fuzzing off: the same ratings give the same due dates,
which the user can reason about and a test can check against the library itself.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import TYPE_CHECKING, Callable, Iterable

from fsrs import Card as FsrsCard
from fsrs import Rating, Scheduler

from assistant.errors import StudyError

if TYPE_CHECKING:
    from assistant.store import Store
    from assistant.study.cards import Card

#: The four answers of a review, as the keys 1-4 choose them.
RATINGS = {1: "Again", 2: "Hard", 3: "Good", 4: "Easy"}
#: Longest deck name kept.
MAX_DECK_NAME = 120


def scheduler() -> Scheduler:
    """The app's FSRS scheduler (see the module docstring for the choices)."""
    return Scheduler(desired_retention=0.9, enable_fuzzing=False)


@dataclass
class StudyCard:
    id: int
    deck_id: int
    kind: str
    front: str
    back: str
    choices: list = field(default_factory=list)
    source: dict = field(default_factory=dict)
    language: str = "en"
    due: float = 0.0  # seconds since the epoch (UTC)
    state: dict = field(default_factory=dict)  # the FSRS card as py-fsrs writes it


@dataclass
class DeckStats:
    deck_id: int | None
    cards: int
    due_now: int
    reviewed_today: int
    streak_days: int  # days in a row with at least one review, ending today or yesterday
    per_day: list  # [(ISO date, reviews)] for the last 30 days, oldest first


def _card(row: tuple) -> StudyCard:
    return StudyCard(id=row[0], deck_id=row[1], kind=row[2], front=row[3], back=row[4], choices=json.loads(row[5]),
                     source=json.loads(row[6]), language=row[7], due=row[8], state=json.loads(row[9]))


_CARD_COLUMNS = "n, deck_n, kind, front, back, choices, source, language, due, fsrs"


class Decks:
    """The study decks of one store (see the module docstring)."""

    def __init__(self, store: "Store", clock: Callable[[], float] = time.time):
        self.store = store
        self._clock = clock
        self._scheduler = scheduler()

    # ----- decks ---------------------------------------------------------------------------------
    def create(self, name: str) -> int:
        """The id of the deck called ``name``, created if needed."""
        name = " ".join(str(name).split())[:MAX_DECK_NAME]
        if not name:
            raise StudyError("A deck needs a name.")
        with self.store.transaction() as conn:
            row = conn.execute("SELECT n FROM study_decks WHERE name = ?", (name,)).fetchone()
            if row:
                return int(row[0])
            return int(conn.execute("INSERT INTO study_decks (name, created_at) VALUES (?, ?)",
                                    (name, self._clock())).lastrowid)

    def deck_id(self, name_or_id: str | int) -> int:
        with self.store.reading() as conn:
            row = conn.execute("SELECT n FROM study_decks WHERE name = ? OR CAST(n AS TEXT) = ?",
                               (str(name_or_id), str(name_or_id))).fetchone()
        if not row:
            raise StudyError(f"There is no deck called {name_or_id!r}; `assistant study decks` lists them.")
        return int(row[0])

    def list(self) -> list[dict]:
        """Every deck with its number of cards and how many are due now."""
        now = self._clock()
        with self.store.reading() as conn:
            rows = conn.execute(
                "SELECT d.n, d.name, COUNT(c.n), COALESCE(SUM(c.due <= ?), 0) FROM study_decks d "
                "LEFT JOIN study_cards c ON c.deck_n = d.n GROUP BY d.n ORDER BY d.name", (now,)).fetchall()
        return [{"id": r[0], "name": r[1], "cards": r[2], "due": int(r[3])} for r in rows]

    def delete(self, deck_id: int) -> None:
        with self.store.transaction() as conn:
            conn.execute("DELETE FROM study_decks WHERE n = ?", (int(deck_id),))

    # ----- cards ---------------------------------------------------------------------------------
    def add_cards(self, deck_id: int, cards: Iterable["Card"]) -> int:
        """Add cards as new (due now); a card already in the deck is not added twice. Returns how many were added."""
        now = self._clock()
        state = json.dumps(FsrsCard(due=datetime.fromtimestamp(now, timezone.utc)).to_dict())
        added = 0
        with self.store.transaction() as conn:
            for card in cards:
                if not card.front.strip() or not card.back.strip():
                    continue
                cursor = conn.execute(
                    "INSERT OR IGNORE INTO study_cards (deck_n, kind, front, back, choices, source, language, fsrs, due, "
                    "created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (int(deck_id), card.kind, card.front.strip(), card.back.strip(), json.dumps(card.choices),
                     json.dumps(card.source, ensure_ascii=False), card.language, state, now, now))
                added += cursor.rowcount
        return added

    def cards(self, deck_id: int) -> list[StudyCard]:
        with self.store.reading() as conn:
            rows = conn.execute(f"SELECT {_CARD_COLUMNS} FROM study_cards WHERE deck_n = ? ORDER BY n",
                                (int(deck_id),)).fetchall()
        return [_card(r) for r in rows]

    def card(self, card_id: int) -> StudyCard:
        with self.store.reading() as conn:
            row = conn.execute(f"SELECT {_CARD_COLUMNS} FROM study_cards WHERE n = ?", (int(card_id),)).fetchone()
        if not row:
            raise StudyError("That card is no longer in its deck.")
        return _card(row)

    def edit_card(self, card_id: int, front: str, back: str) -> StudyCard:
        front, back = front.strip(), back.strip()
        if not front or not back:
            raise StudyError("A card needs a question and an answer.")
        with self.store.transaction() as conn:
            conn.execute("UPDATE study_cards SET front = ?, back = ? WHERE n = ?", (front, back, int(card_id)))
        return self.card(card_id)

    def delete_card(self, card_id: int) -> None:
        with self.store.transaction() as conn:
            conn.execute("DELETE FROM study_cards WHERE n = ?", (int(card_id),))

    def due(self, deck_id: int | None = None, limit: int = 100) -> list[StudyCard]:
        """Cards due now (new cards included), the most overdue first."""
        now = self._clock()
        sql = f"SELECT {_CARD_COLUMNS} FROM study_cards WHERE due <= ?"
        args: list = [now]
        if deck_id is not None:
            sql += " AND deck_n = ?"
            args.append(int(deck_id))
        with self.store.reading() as conn:
            rows = conn.execute(sql + " ORDER BY due, n LIMIT ?", (*args, int(limit))).fetchall()
        return [_card(r) for r in rows]

    # ----- reviews -------------------------------------------------------------------------------
    def review(self, card_id: int, rating: int) -> StudyCard:
        """Record one answer (1 Again, 2 Hard, 3 Good, 4 Easy) and schedule the card's next review."""
        if rating not in RATINGS:
            raise StudyError("A review is rated 1 (Again), 2 (Hard), 3 (Good) or 4 (Easy).")
        now = self._clock()
        when = datetime.fromtimestamp(now, timezone.utc)
        with self.store.transaction() as conn:
            row = conn.execute(f"SELECT {_CARD_COLUMNS} FROM study_cards WHERE n = ?", (int(card_id),)).fetchone()
            if not row:
                raise StudyError("That card is no longer in its deck.")
            card = _card(row)
            state, _log = self._scheduler.review_card(FsrsCard.from_dict(card.state), Rating(rating), when)
            due = state.due.timestamp()
            conn.execute("UPDATE study_cards SET fsrs = ?, due = ? WHERE n = ?",
                         (json.dumps(state.to_dict()), due, card.id))
            conn.execute("INSERT INTO study_reviews (card_n, rating, reviewed_at, due_after) VALUES (?, ?, ?, ?)",
                         (card.id, int(rating), now, due))
        card.state, card.due = state.to_dict(), due
        return card

    def stats(self, deck_id: int | None = None) -> DeckStats:
        """Cards, what is due, today's count, the streak and reviews per day (local days)."""
        now = self._clock()
        where, args = ("WHERE c.deck_n = ?", [int(deck_id)]) if deck_id is not None else ("", [])
        with self.store.snapshot() as conn:
            cards, due = conn.execute(f"SELECT COUNT(*), COALESCE(SUM(c.due <= ?), 0) FROM study_cards c {where}",
                                      (now, *args)).fetchone()
            times = [r[0] for r in conn.execute(
                f"SELECT r.reviewed_at FROM study_reviews r JOIN study_cards c ON c.n = r.card_n {where}", args)]
        days: dict[date, int] = {}
        for stamp in times:
            day = datetime.fromtimestamp(stamp).date()
            days[day] = days.get(day, 0) + 1
        today = datetime.fromtimestamp(now).date()
        streak, day = 0, today if today in days else today - timedelta(days=1)
        while day in days:
            streak += 1
            day -= timedelta(days=1)
        per_day = [((today - timedelta(days=k)).isoformat(), days.get(today - timedelta(days=k), 0))
                   for k in range(29, -1, -1)]
        return DeckStats(deck_id, int(cards), int(due), days.get(today, 0), streak, per_day)
