"""Sentiment of one text or a whole file, by scoring label tokens (never by parsing text).

Qt-free core over the engine: runs on whatever thread calls it (the CLI's main thread, a
pool thread of the window), blocks on the engine worker, never on the GUI thread.

Method (measured in ``benchmarks/sentiment_quality.py``): a few-shot prompt (an instruction
and 16 hand-written reviews with their labels, ``resources/prompts/sentiment.json``, plus
the user's own labelled examples when given) is evaluated once and kept in the engine's KV
cache; each text follows it as ``Review: <text>\\nSentiment:`` and the engine returns the
log-probabilities of the next token being " positive" or " negative". The raw difference is
biased toward one label, so it is corrected by *contextual calibration*: the same prompt
with content-free texts ("N/A", "", "[MASK]") measures the bias, which is subtracted.
The calibrated two-way probability is the confidence; under ``neutral_below`` the label is
"neutral".

Model: the user's choice for "classify" if they made one; otherwise Gemma 3 270M when
installed (0.95 on the development split against SmolLM2's 0.91: it follows few-shot
examples better), else whatever the library routes "classify" to.
"""

from __future__ import annotations

import csv
import io
import json
import math
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import resources
from assistant.errors import SentimentError
from engine.atomic import atomic_write
from assistant.tasks.translation import TaskInputError, read_text_file
from engine import model_pack
from engine.client import EngineRequestError

#: A sentiment file larger than this is refused: ~5 texts a second on two cores makes
#: 2 MB (~30,000 review lines) an afternoon's work already.
MAX_SENTIMENT_FILE_BYTES = 2 << 20
#: Longest text scored whole (characters); longer ones keep their start and end.
MAX_TEXT_CHARS = 4000
#: Texts sent to the engine per request: progress arrives per engine batch anyway, and a
#: cancelled job loses at most the batch in flight.
CHUNK = 256
LABELS = ("positive", "negative")


@dataclass(frozen=True)
class PromptConfig:
    instruction: str
    example_format: str
    template: str
    labels: dict
    content_free: tuple
    neutral_below: float
    examples: tuple

    @classmethod
    def load(cls) -> "PromptConfig":
        data = json.loads(resources.path("prompts", "sentiment.json").read_text(encoding="utf-8"))
        return cls(instruction=data["instruction"], example_format=data["example_format"], template=data["template"],
                   labels=dict(data["labels"]), content_free=tuple(data["content_free"]),
                   neutral_below=float(data["neutral_below"]), examples=tuple(tuple(e) for e in data["examples"]))


@dataclass
class SentimentResult:
    row: int  # 1-based line or record number in the input (or position in the list)
    text: str
    label: str  # positive / negative / neutral; "" when the row could not be scored
    confidence: float  # calibrated probability of the chosen polar label, 0.5..1
    positive: float  # calibrated probability of "positive"
    error: str = ""


def scored(row: int, text: str, positive: float, neutral_below: float) -> SentimentResult:
    """A row's result from its probability of "positive": the more likely label, or neutral
    when that label's probability is under ``neutral_below``."""
    confidence = max(positive, 1.0 - positive)
    label = "positive" if positive >= 0.5 else "negative"
    if confidence < neutral_below:
        label = "neutral"
    return SentimentResult(row, text, label, confidence, positive)


@dataclass
class SentimentProgress:
    done: int
    total: int
    results: list  # the SentimentResults finished since the last progress event


@dataclass
class SentimentFinished:
    results: list
    bad_rows: list  # SentimentResults with an error
    cancelled: bool = False
    metrics: dict = field(default_factory=dict)

    def counts(self) -> dict[str, int]:
        counts = {"positive": 0, "negative": 0, "neutral": 0}
        for r in self.results:
            if r.label:
                counts[r.label] = counts.get(r.label, 0) + 1
        return counts


def split_empty(rows: list[tuple[int, str]], bad_rows: list[SentimentResult] | None = None
                ) -> tuple[list[tuple[int, str]], list[SentimentResult]]:
    """(the rows with text, the bad rows given plus an "empty text" row for each without):
    every analyzer's ``classify_stream`` scores the first and reports the second."""
    bad = list(bad_rows or [])
    good: list[tuple[int, str]] = []
    for number, text in rows:
        if text is None or not str(text).strip():
            bad.append(SentimentResult(number, text or "", "", 0.0, 0.0, "empty text"))
        else:
            good.append((number, str(text)))
    return good, bad


def classify_one(analyzer, text: str) -> SentimentResult:
    """One text through ``analyzer.classify_stream`` (any analyzer); SentimentError for no text."""
    if not text or not text.strip():
        raise SentimentError("There is no text to analyse.")
    final = None
    for event in analyzer.classify_stream([(1, text)]):
        if isinstance(event, SentimentFinished):
            final = event
    assert final is not None
    return final.results[0]


def _clean(text: str) -> str:
    text = " ".join(str(text).split())  # one line: the prompt's layout must not break
    if len(text) > MAX_TEXT_CHARS:
        half = MAX_TEXT_CHARS // 2
        text = text[:half] + " … " + text[-half:]
    return text


def _sigmoid(x: float) -> float:
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    z = math.exp(x)
    return z / (1.0 + z)


class SentimentAnalyzer:
    """See the module docstring. Thread-safe; :meth:`cancel` may come from any thread."""

    def __init__(self, engine, library, config: PromptConfig | None = None,
                 user_examples: list[tuple[str, str]] | None = None, neutral_below: float | None = None):
        self._engine = engine  # an EngineClient, or a zero-argument callable returning one
        self.library = library
        self.config = config or PromptConfig.load()
        self.user_examples = list(user_examples or [])
        self.neutral_below = self.config.neutral_below if neutral_below is None else float(neutral_below)
        self._bias: dict[tuple[str, str], float] = {}
        self._lock = threading.Lock()
        self._handles: set = set()

    @classmethod
    def from_services(cls, services, **options) -> "SentimentAnalyzer":
        return cls(lambda: services.engine, services.library, **options)

    @property
    def engine(self):
        return self._engine() if callable(self._engine) else self._engine

    def model_path(self) -> str:
        library = self.library
        if library.routes().get("classify"):
            return library.for_task("classify").path
        try:
            return library.get(model_pack.GEMMA3.id).path
        except Exception:
            return library.for_task("classify").path

    def _template_parts(self) -> tuple[str, str, str]:
        """The template cut as (fixed head, space before the text, tail): the head goes at
        the end of the shared prefix, so each text costs only its own tokens and the cue."""
        before, after = self.config.template.split("{text}")
        head = before.rstrip()
        return head, before[len(head):], after

    def prefix(self) -> str:
        fmt = self.config.example_format
        shots = [fmt.format(text=_clean(t), label=l) for t, l in self.config.examples]
        shots += [fmt.format(text=_clean(t), label=l) for t, l in self.user_examples]
        return self.config.instruction + "".join(shots) + self._template_parts()[0]

    def cancel(self) -> None:
        with self._lock:
            handles = list(self._handles)
        for handle in handles:
            handle.cancel()

    # ----- engine calls -----------------------------------------------------------------
    def _score(self, model: str, prefix: str, texts: list[str], on_rows=None,
               cancel: threading.Event | None = None) -> tuple[list[list[float]], bool, dict]:
        _head, space, tail = self._template_parts()
        # The space before the text travels with the text ("Review:" + " great"), so the
        # tokens are the same as for the whole template in one piece.
        handle = self.engine.classify(model, [space + t for t in texts], [self.config.labels[l] for l in LABELS],
                                      prefix=prefix, template="{text}" + tail)
        with self._lock:
            self._handles.add(handle)
        rows: list[list[float]] = []
        try:
            for event in handle.events():
                if cancel is not None and cancel.is_set():
                    handle.cancel()
                kind = event.get("event")
                if kind == "scores":
                    batch = event.get("scores") or []
                    rows.extend(batch)
                    if on_rows is not None:
                        on_rows(len(rows) - len(batch), batch)
                elif kind == "error":
                    if event.get("kind") == "cancelled":
                        return rows, True, {}
                    raise EngineRequestError(event.get("message", "The engine failed."), event.get("kind", "error"))
                elif kind == "done":
                    return rows, False, event.get("metrics") or {}
        except GeneratorExit:
            handle.cancel()
            raise
        finally:
            with self._lock:
                self._handles.discard(handle)
        return rows, False, {}

    def bias(self, model: str, prefix: str) -> float:
        """Contextual calibration: the mean positive-minus-negative log-probability the
        prompt gives to content-free texts, i.e. its lean before reading anything."""
        key = (model, prefix)
        if key not in self._bias:
            rows, cancelled, _ = self._score(model, prefix, list(self.config.content_free))
            if cancelled or not rows:
                return 0.0
            self._bias[key] = sum(r[0] - r[1] for r in rows) / len(rows)
        return self._bias[key]

    def _result(self, row: int, text: str, scores: list[float], bias: float) -> SentimentResult:
        return scored(row, text, _sigmoid((scores[0] - scores[1]) - bias), self.neutral_below)

    # ----- public -----------------------------------------------------------------------
    def classify_one(self, text: str) -> SentimentResult:
        return classify_one(self, text)

    def classify_stream(self, rows: list[tuple[int, str]], bad_rows: list[SentimentResult] | None = None,
                        cancel: threading.Event | None = None) -> Iterator[object]:
        """Yield :class:`SentimentProgress` after every engine batch, then
        :class:`SentimentFinished`. ``rows`` are (row number, text); empty texts become bad
        rows and the others are still scored. A cancel keeps every finished result."""
        good, bad = split_empty(rows, bad_rows)
        total = len(good)
        results: list[SentimentResult] = []
        metrics: dict = {"items": 0, "total_ms": 0.0}
        if not good:
            yield SentimentFinished(results, sorted(bad, key=lambda r: r.row), metrics=metrics)
            return
        model = self.model_path()
        prefix = self.prefix()
        bias = self.bias(model, prefix)
        cancelled = False
        for start in range(0, total, CHUNK):
            chunk = good[start:start + CHUNK]
            fresh: list[SentimentResult] = []

            def on_rows(offset: int, batch: list[list[float]], chunk=chunk, fresh=fresh) -> None:
                for k, scores in enumerate(batch):
                    number, text = chunk[offset + k]
                    fresh.append(self._result(number, text, scores, bias))

            # Progress per engine batch would need a thread; per chunk keeps this a plain generator.
            _rows, cancelled, m = self._score(model, prefix, [_clean(t) for _, t in chunk], on_rows, cancel)
            results.extend(fresh)
            for key in ("items", "item_tokens", "total_ms"):
                metrics[key] = metrics.get(key, 0) + (m.get(key) or 0)
            if m.get("prefix_tokens"):
                metrics["prefix_tokens"] = m["prefix_tokens"]
            yield SentimentProgress(len(results), total, fresh)
            if cancelled or (cancel is not None and cancel.is_set()):
                cancelled = True
                break
        yield SentimentFinished(results, sorted(bad, key=lambda r: r.row), cancelled=cancelled, metrics=metrics)


# ----- files --------------------------------------------------------------------------
@dataclass
class Table:
    columns: list[str]  # [] for a plain text file (one text per line)
    rows: list[tuple[int, dict]]  # (line number, record)
    bad_rows: list[SentimentResult]
    delimiter: str = ","

    def texts(self, column: str | None) -> list[tuple[int, str]]:
        if not self.columns:
            return [(n, r["text"]) for n, r in self.rows]
        if column is None:
            column = guess_text_column(self.columns)
        if column not in self.columns:
            raise SentimentError(f"There is no column {column!r}; the columns are: {', '.join(self.columns)}.")
        return [(n, r.get(column) or "") for n, r in self.rows]


def guess_text_column(columns: list[str]) -> str:
    for name in ("text", "sentence", "review", "comment", "content", "body", "message"):
        for column in columns:
            if column.strip().lower() == name:
                return column
    raise SentimentError(f"Which column holds the text? Choose one of: {', '.join(columns)} (--column).")


def read_table(path: str | Path) -> Table:
    """Read a CSV, TSV or TXT file. Rows that cannot be parsed (broken quoting, too many
    or too few fields) become bad rows with their line number; the rest are kept."""
    path = Path(path)
    text = read_text_file(path, MAX_SENTIMENT_FILE_BYTES, "file (CSV, TSV or TXT)")
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".tsv", ".tab") :
        rows = [(i + 1, {"text": line}) for i, line in enumerate(text.splitlines()) if line.strip()]
        return Table([], rows, [])
    delimiter = "\t" if suffix in (".tsv", ".tab") else ","
    return parse_delimited(text, delimiter)


def parse_delimited(text: str, delimiter: str) -> Table:
    lines = text.splitlines(keepends=True)
    bad: list[SentimentResult] = []
    rows: list[tuple[int, dict]] = []
    columns: list[str] = []
    position = 0  # index of the next physical line to parse
    while position < len(lines):
        feed = iter(lines[position:])
        reader = csv.reader(feed, delimiter=delimiter, strict=True)
        try:
            for record in reader:
                line_number = position + reader.line_num
                if not columns:
                    columns = [c.strip() for c in record]
                    if not any(columns):
                        raise SentimentError("The first line must name the columns.")
                    continue
                if not any(field.strip() for field in record):
                    continue
                if len(record) != len(columns):
                    bad.append(SentimentResult(line_number, delimiter.join(record)[:200], "", 0.0, 0.0,
                                               f"{len(record)} fields where the header has {len(columns)}"))
                    continue
                rows.append((line_number, dict(zip(columns, record))))
            position = len(lines)
        except csv.Error as exc:
            failed_at = position + max(reader.line_num, 1)
            snippet = lines[min(failed_at, len(lines)) - 1].strip()[:200]
            bad.append(SentimentResult(failed_at, snippet, "", 0.0, 0.0, f"unreadable row ({exc})"))
            position = failed_at  # resume on the next physical line
    if not columns:
        raise SentimentError("The file is empty.")
    return Table(columns, rows, bad, delimiter)


def parse_examples(path: str | Path) -> list[tuple[str, str]]:
    """The user's own labelled examples: a CSV/TSV with a text column and a label column
    (positive/negative or 1/0); they join the few-shot prompt."""
    table = read_table(path)
    if not table.columns:
        raise SentimentError("Labelled examples must be a CSV or TSV file with a text and a label column.")
    label_column = next((c for c in table.columns if c.strip().lower() in ("label", "sentiment", "polarity")), None)
    if label_column is None:
        raise SentimentError(f"The examples need a 'label' column; the columns are: {', '.join(table.columns)}.")
    text_column = guess_text_column([c for c in table.columns if c != label_column])
    names = {"1": "positive", "pos": "positive", "positive": "positive", "0": "negative", "neg": "negative",
             "negative": "negative"}
    out = []
    for number, record in table.rows:
        label = names.get(str(record.get(label_column, "")).strip().lower())
        text = (record.get(text_column) or "").strip()
        if label and text:
            out.append((text, label))
    if not out:
        raise SentimentError("No usable labelled examples (labels must be positive/negative or 1/0).")
    return out


#: The columns an export adds after the input's own (prefixed with "sentiment_" where the
#: input already has a column of that name).
RESULT_COLUMNS = ("label", "confidence", "positive", "error")


def export_csv(path: str | Path, results: list[SentimentResult], bad_rows: list[SentimentResult] = (),
               table: Table | None = None) -> None:
    """Write results (and the bad rows with their reasons) as CSV, atomically.

    With the ``table`` that was analysed, every row of the input keeps all its columns, in
    their order, and the result columns follow; rows that could not be parsed keep their line
    with only the error filled in. Without it, one row per result: line, text and results."""
    merged = sorted(list(results) + list(bad_rows), key=lambda r: r.row)
    buffer = io.StringIO()
    writer = csv.writer(buffer)

    def result_cells(r: SentimentResult | None) -> list:
        if r is None:  # not analysed (the run was stopped before it)
            return ["", "", "", ""]
        return [r.label, f"{r.confidence:.4f}" if r.label else "", f"{r.positive:.4f}" if r.label else "", r.error]

    if table is None:
        writer.writerow(["row", "text", *RESULT_COLUMNS])
        for r in merged:
            writer.writerow([r.row, r.text, *result_cells(r)])
    else:
        columns = table.columns or ["text"]
        added = [f"sentiment_{name}" if name in columns else name for name in RESULT_COLUMNS]
        writer.writerow([*columns, *added])
        by_line = {r.row: r for r in merged}
        records = {line: record for line, record in table.rows}
        for line in sorted(set(records) | set(by_line)):
            record = records.get(line)
            cells = [record.get(c, "") for c in columns] if record is not None else ["" for _ in columns]
            writer.writerow([*cells, *result_cells(by_line.get(line))])
    with atomic_write(path, "w", encoding="utf-8") as handle:
        handle.write(buffer.getvalue())
