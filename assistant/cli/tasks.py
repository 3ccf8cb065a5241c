"""`assistant translate`, `assistant sentiment` and `assistant suggest` from the shell.

Wiring (in assistant/cli/main.py)::

    from assistant.cli.tasks import add_task_commands
    add_task_commands(sub)

Every handler is ``handler(args, services) -> int`` and runs on the CLI's main thread.
Results go to stdout (or the ``-o`` file, written atomically); an error the user can cause
raises a :class:`~assistant.models.library.LibraryError` subclass, which ``main`` prints as one
line with exit code 2. Ctrl+C stops a job and keeps what it finished (written with ``-o``).
"""

from __future__ import annotations

import argparse
import sys
import threading
from pathlib import Path

from assistant.tasks.sentiment import (
    SentimentAnalyzer,
    SentimentError,
    SentimentFinished,
    SentimentProgress,
    export_csv,
    parse_examples,
    read_table,
)
from assistant.tasks.sentiment_default import default_analyzer
from assistant.tasks.suggestions import Suggester
from assistant.tasks.translation import (
    SegmentDone,
    TaskInputError,
    SegmentText,
    TranslationError,
    TranslationFinished,
    TranslationStarted,
    Translator,
)


def _err(message: str) -> None:
    print(f"assistant: {message}", file=sys.stderr)


# ----- translate ------------------------------------------------------------------------
class _OrderedPrinter:
    """Streams a translation in reading order with the input's layout: a later segment's
    text waits in a buffer until every segment before it is finished."""

    def __init__(self, write, started: TranslationStarted):
        self.write = write
        self.pieces = started.pieces
        self.order = started.order
        self.next = 0  # the segment being printed
        self.printed_piece = -1  # last piece index written
        self.buffers: dict[int, str] = {}
        self.done: set[int] = set()
        self.started: set[int] = set()
        self._layout_until(self.order[0] if self.order else len(self.pieces))

    def _layout_until(self, piece_index: int) -> None:
        for i in range(self.printed_piece + 1, piece_index):
            self.write(self.pieces[i].text)
        self.printed_piece = max(self.printed_piece, piece_index)

    def text(self, index: int, text: str) -> None:
        if index != self.next:
            self.buffers[index] = self.buffers.get(index, "") + text
            return
        if index not in self.started:
            text = text.lstrip()  # the model answers "French: Le ...": drop the space
            if not text:
                return
            self.started.add(index)
        self.write(text)

    def finished(self, index: int) -> None:
        self.done.add(index)
        while self.next in self.done:
            self.next += 1
            following = self.order[self.next] if self.next < len(self.order) else len(self.pieces)
            self._layout_until(following)
            if self.next in self.buffers:
                self.text(self.next, self.buffers.pop(self.next))


def cmd_translate(args, services) -> int:
    translator = Translator.from_services(services)
    for memory in args.memory or []:
        translator.memory.add_file(memory)
    source = Path(args.input).expanduser()
    looks_like_path = not args.rest and " " not in args.input and (
        "/" in args.input or source.suffix.lower() in (".txt", ".md", ".text", ".rst"))
    is_file = not args.text and not args.rest and source.is_file()
    if not is_file and looks_like_path and not args.text:
        raise TranslationError(f"{source} does not exist (use --text to translate it as text).")
    cancel = threading.Event()
    if is_file:
        stream = translator.translate_file(source, args.to, args.output, source=args.source, cancel=cancel)
    else:
        stream = translator.translate_stream(" ".join([args.input] + list(args.rest)), args.to, source=args.source,
                                             cancel=cancel)
    to_stdout = args.output is None

    def write(piece: str) -> None:
        sys.stdout.write(piece)
        sys.stdout.flush()

    printer = None
    final: TranslationFinished | None = None
    try:
        for event in stream:
            if isinstance(event, TranslationStarted):
                if event.detected:
                    print(f"[from {event.source} (detected) to {event.target}]", file=sys.stderr)
                if to_stdout:
                    printer = _OrderedPrinter(write, event)
            elif isinstance(event, SegmentText) and printer is not None:
                printer.text(event.index, event.text)
            elif isinstance(event, SegmentDone):
                if printer is not None:
                    printer.finished(event.index)
                else:
                    print(f"\r[{event.done}/{event.total} segments]", end="", file=sys.stderr)
            elif isinstance(event, TranslationFinished):
                final = event
    except KeyboardInterrupt:
        cancel.set()
        for event in stream:
            if isinstance(event, TranslationFinished):
                final = event
    if final is None:
        return 1
    if to_stdout:
        if printer is None or final.cancelled:
            write(("\n" if printer is not None else "") + final.text)
        if not final.text.endswith("\n"):
            write("\n")
    else:
        print(file=sys.stderr)
        if not is_file:
            from engine.atomic import atomic_write_text

            atomic_write_text(args.output, final.text)
        print(f"Wrote {args.output}.", file=sys.stderr)
    if final.cancelled:
        print(f"[stopped: {final.segments_done} of {final.segments_total} segments translated; "
              "the rest is left in the original]", file=sys.stderr)
        return 130
    return 0


# ----- sentiment ------------------------------------------------------------------------
def cmd_sentiment(args, services) -> int:
    examples = parse_examples(args.examples) if args.examples else None
    options = {"user_examples": examples, "neutral_below": args.neutral_below}
    analyzer = (SentimentAnalyzer.from_services(services, **options) if args.method == "language-model"
                else default_analyzer(services, **options))
    source = Path(args.input)
    if source.is_file():
        table = read_table(source)
        rows = table.texts(args.column)
        bad = table.bad_rows
    elif args.column or args.output:
        raise SentimentError(f"{source} does not exist.")
    else:
        text = " ".join([args.input] + list(args.rest))
        if not text.strip():
            raise SentimentError("There is no text to analyse.")
        result = analyzer.classify_one(text)
        print(f"{result.label}\t{result.confidence:.2f}")
        return 0
    cancel = threading.Event()
    stream = analyzer.classify_stream(rows, bad, cancel=cancel)
    final: SentimentFinished | None = None
    try:
        for event in stream:
            if isinstance(event, SentimentProgress):
                print(f"\r[{event.done}/{event.total}]", end="", file=sys.stderr)
            elif isinstance(event, SentimentFinished):
                final = event
    except KeyboardInterrupt:
        cancel.set()
        for event in stream:
            if isinstance(event, SentimentFinished):
                final = event
    print(file=sys.stderr)
    if final is None:
        return 1
    if args.output:
        export_csv(args.output, final.results, final.bad_rows, table)  # the input's columns, then the results
        print(f"Wrote {len(final.results)} results to {args.output}.", file=sys.stderr)
    else:
        for r in final.results:
            print(f"{r.row}\t{r.label}\t{r.confidence:.2f}\t{r.text}")
    counts = final.counts()
    print("  ".join(f"{k}: {v}" for k, v in counts.items()), file=sys.stderr)
    for r in final.bad_rows:
        print(f"line {r.row}: skipped ({r.error})", file=sys.stderr)
    if final.cancelled:
        print(f"[stopped: {len(final.results)} texts done, the rest not analysed]", file=sys.stderr)
        return 130
    return 0


# ----- suggest --------------------------------------------------------------------------
def cmd_suggest(args, services) -> int:
    text = " ".join(args.text)
    if not text.strip():
        raise TaskInputError("There is no text to continue.")
    suggester = Suggester(lambda: services.engine, lambda: services.library.for_task(args.task).path, True)
    suggestion = suggester.suggest(text)
    print(suggestion.text)
    return 0


def add_task_commands(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("translate", help="translate text or a file (en, fr, de, es)",
                              description="Translate TEXT, or the text file FILE, between English, French, German "
                                          "and Spanish. The source language is detected unless --from names it.")
    p.add_argument("input", metavar="TEXT|FILE")
    p.add_argument("rest", nargs="*", help=argparse.SUPPRESS)
    p.add_argument("--to", "-t", required=True, help="target language: en, fr, de or es")
    p.add_argument("--from", "-f", dest="source", default="auto", help="source language, or auto (default)")
    p.add_argument("--output", "-o", help="write the translation to this file")
    p.add_argument("--text", action="store_true", help="treat the argument as text even if a file has that name")
    p.add_argument("--memory", action="append", help="a TSV of sentence pairs to draw examples from (repeatable)")
    p.set_defaults(handler=cmd_translate)

    p = subparsers.add_parser("sentiment", help="positive / negative / neutral for a text or a file",
                              description="Label TEXT, or every row of a CSV, TSV or TXT file.")
    p.add_argument("input", metavar="TEXT|FILE")
    p.add_argument("rest", nargs="*", help=argparse.SUPPRESS)
    p.add_argument("--column", "-c", help="the column with the text (CSV/TSV; default: a column named text)")
    p.add_argument("--output", "-o", help="write the results as CSV")
    p.add_argument("--examples", help="your own labelled examples (CSV/TSV with text and label columns)")
    p.add_argument("--neutral-below", type=float, default=None,
                   help="confidence under which a text is neutral (default from the prompt file)")
    p.add_argument("--method", choices=("auto", "language-model"), default="auto",
                   help="auto (default): the fast default student answers the texts it is sure of and the "
                        "language model the rest; language-model: the language model answers every text")
    p.set_defaults(handler=cmd_sentiment)

    p = subparsers.add_parser("suggest", help="the next few words after TEXT (what the composer shows in grey)")
    p.add_argument("text", nargs="+")
    p.add_argument("--task", default="complete", choices=("complete", "translate"),
                   help="whose model: the completion model (default) or the translation model")
    p.set_defaults(handler=cmd_suggest)
