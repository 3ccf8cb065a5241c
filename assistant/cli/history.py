"""`assistant history ...`: search, list, export, import, backup and restore from the shell.

Wiring (in assistant/cli/main.py)::

    sub = parser.add_subparsers(dest="command")
    add_history_commands(sub)
    args = parser.parse_args(argv)
    ...
    store = Store(default_paths().database, key)   # or None if that raised CorruptDatabaseError,
    return args.handler(args, store)              # for `history restore` (needs_store=False)

Every handler has the signature ``handler(args, store) -> int`` and runs on the CLI's main
thread. Results go to stdout; an error the user can cause is one line on stderr and exit
code 2, never a traceback (``assistant.cli.main.handle_error``, the command line's one handler). ``history restore`` sets ``args.needs_store = False``: it also
works with ``store=None``, which is how a damaged database (that :class:`Store` refuses to
open) is replaced by its last backup; :func:`store_error_message` words that advice.
"""

from __future__ import annotations

import argparse
import sys
from datetime import datetime, timedelta
from pathlib import Path

from assistant.config import default_paths
from assistant.history.conversations import Conversations
from assistant.backups import Backups, latest_backup, list_backups, restore_database_file
from assistant.history.archive import (
    DEFAULT_SEARCH_LIMIT,
    History,
    HistoryError,
)
from assistant.store import CorruptDatabaseError, Store, StoreError
from assistant.wording import human_size

#: Exit code for errors the user can fix (bad input, missing file), as argparse uses.
USER_ERROR = 2


def add_history_commands(subparsers) -> None:
    """Register ``history`` and its sub-commands on an argparse sub-parsers object."""
    history = subparsers.add_parser("history", help="search, export, import, back up and restore conversations")
    commands = history.add_subparsers(dest="history_command", metavar="COMMAND")
    commands.required = True

    search = commands.add_parser("search", help="full-text search over every message and title")
    search.add_argument("query", metavar="QUERY", help='words (all must match), "a phrase", or a prefix*')
    search.add_argument("--conversation", metavar="ID", help="only this conversation")
    search.add_argument("--role", choices=("system", "user", "assistant"), help="only messages with this role")
    search.add_argument("--model", metavar="M", help="only messages written with this model")
    search.add_argument("--since", metavar="DATE", help="from this date or time on (YYYY-MM-DD[ HH:MM], local)")
    search.add_argument("--until", metavar="DATE", help="up to this date (inclusive) or time (exclusive)")
    search.add_argument("--limit", metavar="N", type=int, default=DEFAULT_SEARCH_LIMIT, help="most results shown")
    search.set_defaults(handler=cmd_search, needs_store=True)

    listing = commands.add_parser("list", help="conversations by last activity, pinned first")
    which = listing.add_mutually_exclusive_group()
    which.add_argument("--archived", action="store_true", help="include archived conversations")
    which.add_argument("--trash", action="store_true", help="show the trash instead")
    listing.add_argument("--limit", metavar="N", type=int, default=None, help="most conversations shown")
    listing.set_defaults(handler=cmd_list, needs_store=True)

    export = commands.add_parser("export", help="write one conversation or all to Markdown or JSON")
    export.add_argument("--conversation", metavar="ID", help="only this conversation (default: all but the trash)")
    export.add_argument("--format", choices=("md", "json"), required=True, help="md to read, json to import back")
    export.add_argument("-o", "--output", metavar="PATH", required=True, help="file to write, or a folder to put it in")
    export.set_defaults(handler=cmd_export, needs_store=True)

    importer = commands.add_parser("import", help="add conversations from a JSON export (duplicates skipped)")
    importer.add_argument("file", metavar="FILE")
    importer.set_defaults(handler=cmd_import, needs_store=True)

    backup = commands.add_parser("backup", help="copy the whole database into the backups folder")
    backup.set_defaults(handler=cmd_backup, needs_store=True)

    backups = commands.add_parser("backups", help="list the backups, newest first (made daily and before updates)")
    backups.set_defaults(handler=cmd_backups, needs_store=False)

    restore = commands.add_parser("restore", help="replace the database with a backup (the current one is kept)")
    restore.add_argument("backup", metavar="BACKUP", nargs="?", help="backup file (default: the latest)")
    restore.set_defaults(handler=cmd_restore, needs_store=False)


def store_error_message(exc: StoreError, backups_dir: Path | None = None) -> str:
    """The message for a store that cannot be opened, with the restore advice when it helps."""
    message = str(exc)
    if isinstance(exc, CorruptDatabaseError):
        latest = latest_backup(backups_dir or default_paths().backups_dir)
        if latest is not None:
            message += f" The latest backup is {latest}; restore it with: assistant history restore"
        else:
            message += " There is no backup to restore."
    return message


def _require(store: Store | None) -> Store:
    if store is None:
        raise HistoryError("The database is not open.")
    return store


def parse_when(text: str | None, *, end: bool = False) -> float | None:
    """``YYYY-MM-DD`` or ``YYYY-MM-DD HH:MM[:SS]`` in local time -> seconds since the epoch.

    For ``end`` a bare date means the end of that day (the whole day is included).
    """
    if text is None:
        return None
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise HistoryError(f"{text!r} is not a date; use YYYY-MM-DD or 'YYYY-MM-DD HH:MM'.") from None
    if end and len(text.strip()) <= 10:
        when += timedelta(days=1)
    if when.tzinfo is None:
        when = when.astimezone()
    return when.timestamp()


def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M")


def cmd_search(args: argparse.Namespace, store: Store | None) -> int:
    history = History(_require(store))
    hits = history.search(
        args.query,
        conversation_id=args.conversation,
        role=args.role,
        model=args.model,
        since=parse_when(args.since),
        until=parse_when(args.until, end=True),
        limit=args.limit,
    )
    if not hits:
        print(f"No messages or titles match {args.query!r}.")
        return 0
    bold = sys.stdout.isatty()
    start, end = ("\033[1m", "\033[0m") if bold else ("[", "]")
    for hit in hits:
        who = "title" if hit.kind == "title" else hit.role + (f" · {hit.model}" if hit.model else "")
        print(f"{_when(hit.created_at)}  {hit.conversation_title}  ({hit.conversation_id})  {who}")
        print("    " + " ".join(hit.highlighted(start, end).split()))
    print(f"{len(hits)} result(s).")
    return 0


def cmd_list(args: argparse.Namespace, store: Store | None) -> int:
    conversations = Conversations(_require(store))
    if args.trash:
        items = conversations.list(include_archived=True, only_deleted=True, limit=args.limit)
    else:
        items = conversations.list(include_archived=args.archived, limit=args.limit)
    if not items:
        print("The trash is empty." if args.trash else "No conversations yet.")
        return 0
    for conv in items:
        marks = ("*" if conv.pinned else " ") + ("A" if conv.archived else " ")
        print(f"{conv.id}  {_when(conv.last_activity_at)}  {marks} {conv.message_count:>5} msg  {conv.title}")
    print("(* pinned, A archived)")
    return 0


def cmd_export(args: argparse.Namespace, store: Store | None) -> int:
    result = History(_require(store)).export(args.output, args.format, conversation_id=args.conversation)
    print(f"Exported {result.conversations} conversation(s), {result.messages} message(s) to {result.path}.")
    # The one place conversations leave the encrypted database as plain text: say so.
    print("This file is not encrypted: anyone who can open it can read these conversations. Keep it "
          "somewhere safe, and delete it when you no longer need it.", file=sys.stderr)
    return 0


def cmd_import(args: argparse.Namespace, store: Store | None) -> int:
    report = History(_require(store)).import_file(args.file)
    print(report.summary())
    return 0


def cmd_backup(args: argparse.Namespace, store: Store | None) -> int:
    path = Backups(_require(store), default_paths().backups_dir).backup()
    print(f"Backup written to {path} ({human_size(path.stat().st_size)}).")
    return 0


def cmd_backups(args: argparse.Namespace, store: Store | None) -> int:
    found = list_backups(default_paths().backups_dir)
    if not found:
        print("There is no backup yet (one is made automatically each day the app is used).")
        return 0
    for path in reversed(found):
        made = datetime.fromtimestamp(path.stat().st_mtime).strftime("%Y-%m-%d %H:%M")
        print(f"{made}  {human_size(path.stat().st_size):>9}  {path}")
    return 0


def cmd_restore(args: argparse.Namespace, store: Store | None) -> int:
    paths = default_paths()
    if store is not None:
        result = Backups(store, paths.backups_dir).restore(args.backup)
    else:
        result = restore_database_file(paths.database, args.backup, paths.backups_dir, args.database_key)
    kept = f" The database it replaced was kept as {result.previous_kept_as}." if result.previous_kept_as else ""
    print(f"Restored from {result.backup}.{kept}")
    return 0
