"""`assistant study ...`: cards from your documents, reviews, decks in and out, from the shell.

    assistant study propose [--collection NAME] [--deck NAME] [--per-document N] [--yes]
    assistant study decks
    assistant study review DECK [--limit N]
    assistant study stats [DECK]
    assistant study export DECK FILE.apkg|FILE.csv
    assistant study import FILE.csv --deck NAME

Runs on the CLI's main thread; errors the user can cause are StudyError (one line, exit 2,
through the command line's one handler). Reviews are interactive: Enter (or Space then Enter)
shows the answer, or type an answer to have it checked; then 1 Again, 2 Hard, 3 Good, 4 Easy;
q stops (every answered card is already saved).
"""

from __future__ import annotations

import sys

from assistant.errors import StudyError
from assistant.study.answers import check_answer
from assistant.study.decks import Decks


def add_study_commands(subparsers) -> None:
    study = subparsers.add_parser("study", help="flashcards and quizzes from your documents")
    commands = study.add_subparsers(dest="study_command", metavar="COMMAND", required=True)
    p = commands.add_parser("propose", help="propose cards from a document collection and keep them in a deck")
    p.add_argument("--collection", help="the collection to learn from (default: all your documents)")
    p.add_argument("--deck", help="the deck to add the cards to (default: the collection's name)")
    p.add_argument("--per-document", type=int, default=None, help="sentences made into cards per document")
    p.add_argument("--yes", action="store_true", help="keep every proposed card without asking")
    p.set_defaults(handler=cmd_propose)
    p = commands.add_parser("decks", help="list the decks and what is due")
    p.set_defaults(handler=cmd_decks)
    p = commands.add_parser("review", help="review the cards that are due")
    p.add_argument("deck")
    p.add_argument("--limit", type=int, default=50)
    p.set_defaults(handler=cmd_review)
    p = commands.add_parser("stats", help="reviews today, the streak and what is due")
    p.add_argument("deck", nargs="?")
    p.set_defaults(handler=cmd_stats)
    p = commands.add_parser("export", help="write a deck as an Anki package (.apkg) or CSV")
    p.add_argument("deck")
    p.add_argument("file")
    p.set_defaults(handler=cmd_export)
    p = commands.add_parser("import", help="add the cards of a CSV file to a deck")
    p.add_argument("file")
    p.add_argument("--deck", required=True)
    p.set_defaults(handler=cmd_import)


def _show(card) -> str:
    lines = [card.front]
    for i, choice in enumerate(card.choices, start=1):
        lines.append(f"  {chr(96 + i)}) {choice}")
    return "\n".join(lines)


def cmd_propose(args, services) -> int:
    from assistant.documents.collections import Documents
    from assistant.study.sources import propose_for

    collection_ids = None
    deck_name = args.deck
    if args.collection:
        collection_ids = [Documents(services.store, None).collection_id(args.collection)]
        deck_name = deck_name or args.collection
    proposal = propose_for(services, collection_ids, per_document=args.per_document)
    if not proposal.kept:
        raise StudyError("No card could be made from these documents: they have no sentence that reads on its own.")
    interactive = sys.stdin.isatty() and not args.yes
    kept = []
    for n, card in enumerate(proposal.kept, start=1):
        print(f"\n[{n}/{len(proposal.kept)}] {card.kind} · {card.source['file']}, {card.source['location']}")
        print(_show(card))
        print(f"  answer: {card.back}")
        if not interactive:
            kept.append(card)
            continue
        choice = input("keep (k), edit (e), drop (d), stop (q)? [k] ").strip().lower()
        if choice == "q":
            break
        if choice == "d":
            continue
        if choice == "e":
            card.front = input("  question: ").strip() or card.front
            card.back = input("  answer: ").strip() or card.back
        kept.append(card)
    decks = Decks(services.store)
    added = decks.add_cards(decks.create(deck_name or "My documents"), kept)
    print(f"\n{added} card(s) added to the deck {deck_name or 'My documents'!r}"
          f" ({len(proposal.dropped)} made and dropped by the check).")
    return 0


def cmd_decks(args, services) -> int:
    decks = Decks(services.store).list()
    if not decks:
        print("No decks yet: `assistant study propose` makes one from your documents.")
    for deck in decks:
        print(f"{deck['name']}: {deck['cards']} card(s), {deck['due']} due")
    return 0


def cmd_review(args, services) -> int:
    decks = Decks(services.store)
    deck_id = decks.deck_id(args.deck)
    due = decks.due(deck_id, limit=args.limit)
    if not due:
        print("Nothing is due in this deck. Come back later.")
        return 0
    embed = None
    done = 0
    for card in due:
        print("\n" + _show(card))
        typed = input("your answer (Enter to show it, q to stop): ").strip()
        if typed.lower() == "q":
            break
        if typed:
            if embed is None:
                embed = services.documents_core()[1].embed
            expected = card.back
            if card.choices and len(typed) == 1 and typed.isalpha():
                index = ord(typed.lower()) - 97
                typed = card.choices[index] if 0 <= index < len(card.choices) else typed
            verdict = check_answer(expected, typed, embed)
            print(("right" if verdict.right else "not quite") + f" ({verdict.how})")
        print(f"answer: {card.back}")
        if card.source.get("sentence"):
            print(f"source: {card.source.get('file', '')}, {card.source.get('location', '')}: {card.source['sentence']}")
        while True:
            rating = input("1 Again, 2 Hard, 3 Good, 4 Easy: ").strip()
            if rating in ("1", "2", "3", "4"):
                break
        decks.review(card.id, int(rating))
        done += 1
    stats = decks.stats(deck_id)
    print(f"\n{done} reviewed; {stats.reviewed_today} today, a streak of {stats.streak_days} day(s); {stats.due_now} still due.")
    return 0


def cmd_stats(args, services) -> int:
    decks = Decks(services.store)
    stats = decks.stats(decks.deck_id(args.deck) if args.deck else None)
    print(f"{stats.cards} card(s), {stats.due_now} due now, {stats.reviewed_today} reviewed today, "
          f"streak {stats.streak_days} day(s)")
    for day, count in stats.per_day[-7:]:
        print(f"  {day}  {'#' * min(count, 60)} {count}")
    return 0


def cmd_export(args, services) -> int:
    from assistant.study.exchange import export_apkg, export_csv

    decks = Decks(services.store)
    deck_id = decks.deck_id(args.deck)
    if args.file.lower().endswith(".apkg"):
        n = export_apkg(decks, deck_id, args.file)
    elif args.file.lower().endswith(".csv"):
        n = export_csv(decks, deck_id, args.file)
    else:
        raise StudyError("Export to a file ending in .apkg (Anki) or .csv.")
    print(f"{n} card(s) written to {args.file}. This file is not encrypted: it holds your cards in plain text.")
    return 0


def cmd_import(args, services) -> int:
    from assistant.study.exchange import import_csv

    added, skipped = import_csv(Decks(services.store), args.file, args.deck)
    print(f"{added} card(s) added to {args.deck!r}" + (f", {skipped} already there" if skipped else "") + ".")
    return 0
