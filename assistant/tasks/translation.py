"""Translation between English, French, German and Spanish by few-shot prompting.

Qt-free core over the engine: runs on whatever thread calls it (the CLI's main thread, a
pool thread of the window), blocks on the engine worker, never on the GUI thread.

Method (measured in ``benchmarks/translation_quality.py``): the default translator is a
*base* model (Gemma 3 270M), so it is prompted with example pairs in the form
``English: ...\\nFrench: ...``. Two kinds of examples:

* a fixed set of hand-written multi-parallel sentences (``resources/prompts/
  translation_examples.json``), the same for every segment of a direction, so the engine
  keeps them in its KV cache and evaluates them once;
* when the user has a translation memory (TSV files of sentence pairs in
  ``<data>/translation_memory/``), the few pairs whose source side shares the most
  informative words with the segment go after the fixed ones, nearest last. A small base
  model copies vocabulary and constructions from such neighbours very well; without a
  memory, the fixed examples alone are used.

Greedy decoding, stop at the end of the line. Long input is cut into paragraphs and
sentences, each translated on its own (many side by side in the engine), and put back
together with the original spacing and line breaks.
"""

from __future__ import annotations

import collections
import csv
import json
import math
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator

import resources
from assistant.errors import TaskInputError, TranslationError
from assistant.tasks import langdetect
from engine.atomic import atomic_write_text
from engine.file_kinds import NotText, decode_text
from engine.client import EngineRequestError

#: Files larger than this are refused before reading: a 270M model translates a few
#: sentences a second on two cores, so 1 MB of text would already take hours.
MAX_TRANSLATE_FILE_BYTES = 1 << 20
#: A segment longer than this (characters) is cut at clause or word boundaries.
MAX_SEGMENT_CHARS = 400
#: Translation-memory pairs put in front of each segment.
MEMORY_EXAMPLES = 4


# ----- reading user files (shared with assistant.tasks.sentiment) -----------------------------
def read_text_file(path: str | Path, max_bytes: int, what: str = "file") -> str:
    """Read a user's text file with clear messages for the usual mistakes."""
    path = Path(path).expanduser()
    if not path.exists():
        raise TaskInputError(f"{path} does not exist.")
    if path.is_dir():
        raise TaskInputError(f"{path} is a folder; choose a text {what}.")
    size = path.stat().st_size
    if size > max_bytes:
        raise TaskInputError(f"{path.name} is {size / 1e6:.1f} MB; the limit for this task is "
                             f"{max_bytes / 1e6:.1f} MB. Split it into smaller files.")
    try:
        # Legacy 8-bit files are accepted here: a file to translate or score is often an export
        # from an older program, and cp1252 maps every byte.
        return decode_text(path.read_bytes(), legacy_8bit=True)
    except NotText as exc:
        raise TaskInputError(f"{path.name} {exc}.") from None


# ----- languages ------------------------------------------------------------------------
SUPPORTED = langdetect.SUPPORTED


def resolve_language(value: str, role: str) -> str:
    code = langdetect.normalise_code(value)
    if code == "auto":
        if role == "target":
            raise TranslationError("Choose the language to translate into (--to): en, fr, de or es.")
        return code
    if code not in SUPPORTED:
        name = langdetect.language_name(code)
        raise TranslationError(f"{name} is not supported; translation works between "
                               f"{', '.join(f'{n} ({c})' for c, n in SUPPORTED.items())}.")
    return code


# ----- segmentation ---------------------------------------------------------------------
# Hand-written rules, kept because on the development part of benchmarks/text_tools.py (news
# paragraphs in the four languages) they found the sentence boundaries more exactly than pysbd.
# A sentence ends at . ! ? … and the closing quotes or brackets after them (» and ” also after a
# space, as French typography has it: « Quelle horreur ! »), followed by space; not where a
# lower-case word follows, which goes on the sentence (« Quelle horreur ! » a-t-il ajouté), nor
# before a closing quote or a comma (« Je pars. », a-t-il dit).
_SENTENCE_END = re.compile(r"(?<=[.!?…])(?:[\"'»”’)\]]|\s[»”])*\s+(?=\S)")
_GOES_ON = frozenset("»”’)],;:")
_CLAUSE_END = re.compile(r"(?<=[,;:])\s+")
_HAS_WORD = re.compile(r"[^\W\d_]", re.UNICODE)
# Titles and initials that end in a full stop without ending the sentence.
_ABBREVIATIONS = frozenset("mr mrs ms dr prof st jr sr vs etc e.g i.e cf no nr approx z.b bzw usw sra sr dra m mme mlle".split())


@dataclass
class Piece:
    """Part of the input: a segment to translate, or layout (spaces, line breaks) to keep."""

    text: str
    translate: bool


def _split_long(sentence: str) -> list[str]:
    if len(sentence) <= MAX_SEGMENT_CHARS:
        return [sentence]
    parts: list[str] = []
    current = ""
    for clause in re.split(r"(?<=[,;:])(\s+)", sentence):
        if len(current) + len(clause) > MAX_SEGMENT_CHARS and current.strip():
            parts.append(current)
            current = ""
        current += clause
    if current:
        parts.append(current)
    out: list[str] = []
    for part in parts:  # still too long (no punctuation): cut between words
        while len(part) > MAX_SEGMENT_CHARS:
            cut = part.rfind(" ", 0, MAX_SEGMENT_CHARS)
            cut = cut if cut > 0 else MAX_SEGMENT_CHARS
            out.append(part[:cut])
            part = part[cut:]
        out.append(part)
    return out


def segment(text: str) -> list[Piece]:
    """Cut text into sentences, keeping every character: ''.join(p.text) == text."""
    pieces: list[Piece] = []
    for line in re.split(r"(\r?\n)", text):
        if line in ("\n", "\r\n"):
            pieces.append(Piece(line, False))
            continue
        lead = line[: len(line) - len(line.lstrip())]
        body = line.strip()
        trail = line[len(lead) + len(body):]
        if lead:
            pieces.append(Piece(lead, False))
        if body:
            start = 0
            sentences: list[tuple[str, str]] = []
            for match in _SENTENCE_END.finditer(body):
                candidate = body[start:match.start() + len(match.group(0).rstrip())]
                last_word = candidate.rstrip(".!?…\"'»”’)] ").split()[-1:] if candidate else []
                if last_word and last_word[0].lower().rstrip(".") in _ABBREVIATIONS:
                    continue
                if body[match.end()].islower() or body[match.end()] in _GOES_ON:
                    continue
                end = match.end()
                sentence = body[start:end]
                stripped = sentence.rstrip()
                sentences.append((stripped, sentence[len(stripped):]))
                start = end
            if start < len(body):
                sentences.append((body[start:], ""))
            for sentence, space in sentences:
                chunks = _split_long(sentence)
                for chunk in chunks:
                    core = chunk.rstrip()
                    pieces.append(Piece(core, bool(_HAS_WORD.search(core))))
                    if chunk[len(core):]:
                        pieces.append(Piece(chunk[len(core):], False))
                if space:
                    pieces.append(Piece(space, False))
        if trail:
            pieces.append(Piece(trail, False))
    return pieces


# ----- examples -------------------------------------------------------------------------
def builtin_examples() -> list[dict]:
    data = json.loads(resources.path("prompts", "translation_examples.json").read_text(encoding="utf-8"))
    return list(data["examples"])


_WORD = re.compile(r"\w+", re.UNICODE)
_CODE3 = {"eng": "en", "fra": "fr", "fre": "fr", "deu": "de", "ger": "de", "spa": "es"}


class TranslationMemory:
    """Sentence pairs the user has (TSV files with language codes as column names), indexed
    by the words of each side so that the nearest pairs to a segment are found in
    microseconds. Any thread once built; building reads files (a worker thread)."""

    def __init__(self) -> None:
        self._pairs: dict[tuple[str, str], list[tuple[str, str]]] = collections.defaultdict(list)
        self._index: dict[tuple[str, str], dict[str, list[int]]] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return sum(len(p) for p in self._pairs.values())

    def add_pairs(self, source: str, target: str, pairs: Iterable[tuple[str, str]]) -> int:
        added = 0
        with self._lock:
            for src, tgt in pairs:
                src, tgt = src.strip(), tgt.strip()
                if src and tgt and "\n" not in src and "\n" not in tgt:
                    self._pairs[(source, target)].append((src, tgt))
                    self._pairs[(target, source)].append((tgt, src))
                    added += 1
            self._index.pop((source, target), None)
            self._index.pop((target, source), None)
        return added

    def add_file(self, path: str | Path) -> int:
        """Load one TSV of pairs whose header names the two languages (``eng<TAB>fra``)."""
        text = read_text_file(path, 64 << 20, "translation memory")
        reader = csv.reader(text.splitlines(), delimiter="\t", quoting=csv.QUOTE_NONE)
        header = next(reader, None)
        if not header or len(header) < 2:
            raise TranslationError(f"{Path(path).name}: the first line must name the two languages, e.g. 'eng<TAB>fra'.")
        codes = [_CODE3.get(h.strip().lower(), langdetect.normalise_code(h)) for h in header[:2]]
        if not all(c in SUPPORTED for c in codes) or codes[0] == codes[1]:
            raise TranslationError(f"{Path(path).name}: unknown language columns {header[:2]}.")
        return self.add_pairs(codes[0], codes[1], ((row[0], row[1]) for row in reader if len(row) >= 2))

    def add_folder(self, folder: str | Path) -> int:
        folder = Path(folder)
        total = 0
        if folder.is_dir():
            for path in sorted(folder.glob("*.tsv")):
                total += self.add_file(path)
        return total

    def _built(self, key: tuple[str, str]) -> dict[str, list[int]]:
        with self._lock:
            index = self._index.get(key)
            if index is None:
                index = collections.defaultdict(list)
                for i, (src, _tgt) in enumerate(self._pairs.get(key, [])):
                    for word in set(_WORD.findall(src.lower())):
                        index[word].append(i)
                self._index[key] = index
            return index

    def nearest(self, text: str, source: str, target: str, k: int = MEMORY_EXAMPLES) -> list[tuple[str, str]]:
        """Up to ``k`` pairs whose source side shares the rarest words with ``text``, the
        most similar last (closest to the segment in the prompt)."""
        pairs = self._pairs.get((source, target))
        if not pairs or k <= 0:
            return []
        index = self._built((source, target))
        n = len(pairs)
        scores: collections.Counter[int] = collections.Counter()
        for word in set(_WORD.findall(text.lower())):
            postings = index.get(word)
            # Words in more than a fifth of the pairs ("the", "is") say nothing about similarity.
            if not postings or (n >= 50 and len(postings) > n * 0.2):
                continue
            weight = math.log(1.0 + n / len(postings))
            for i in postings:
                scores[i] += weight
        candidates = [i for i, _ in scores.most_common(k * 3)]
        # Prefer short neighbours at equal overlap: they teach the same words in less prompt.
        candidates.sort(key=lambda i: -scores[i] / (1 + 0.05 * len(_WORD.findall(pairs[i][0]))))
        return [pairs[i] for i in reversed(candidates[:k])]


# ----- prompts --------------------------------------------------------------------------
def _line(language: str, text: str) -> str:
    return f"{SUPPORTED[language]}: {text}"


def fixed_prefix(source: str, target: str, examples: list[dict] | None = None) -> str:
    examples = builtin_examples() if examples is None else examples
    return "".join(f"{_line(source, e[source])}\n{_line(target, e[target])}\n\n" for e in examples)


def segment_prompt(text: str, source: str, target: str, neighbours: list[tuple[str, str]]) -> str:
    shots = "".join(f"{_line(source, s)}\n{_line(target, t)}\n\n" for s, t in neighbours)
    # A line break inside a segment would end the answer early: the layout keeps them.
    return f"{shots}{_line(source, ' '.join(text.split()))}\n{SUPPORTED[target]}:"


def max_tokens_for(text: str) -> int:
    # ~4 characters a token in these languages; translations run up to ~1.5x longer, and
    # greedy decoding of a small model can loop, so cap it instead of waiting for the end.
    return max(16, len(text) // 2 + 16)


# ----- events ---------------------------------------------------------------------------
@dataclass
class TranslationStarted:
    source: str
    target: str
    detected: bool
    segments: int
    model: str
    pieces: list = field(default_factory=list)  # the input cut into Pieces (layout kept)
    order: list = field(default_factory=list)  # piece index of each segment, in reading order


@dataclass
class SegmentText:
    """More text of one segment (streaming)."""

    index: int  # segment number, 0-based, in reading order
    text: str


@dataclass
class SegmentDone:
    index: int
    text: str
    done: int  # segments finished so far
    total: int


@dataclass
class TranslationFinished:
    text: str  # the whole translation with the input's layout
    source: str
    target: str
    cancelled: bool = False
    segments_done: int = 0
    segments_total: int = 0
    metrics: dict = field(default_factory=dict)


class Translator:
    """Translates text through the engine; see the module docstring. Thread-safe: each call
    works on its own request; :meth:`cancel` may come from any thread."""

    def __init__(self, engine, library, memory: TranslationMemory | None = None, memory_dir: Path | None = None,
                 adapters: Callable[[str], list[dict]] | None = None):
        self._engine = engine  # an EngineClient, or a zero-argument callable returning one (lazy start)
        self.library = library
        # model path -> the engine's ``adapters`` for translation with it (the user's choice)
        self._adapters = adapters or (lambda _model: [])
        self.memory = memory if memory is not None else TranslationMemory()
        if memory is None and memory_dir is not None:
            self.memory.add_folder(memory_dir)
        self._lock = threading.Lock()
        self._handles: set = set()

    @classmethod
    def from_services(cls, services) -> "Translator":
        from assistant.models.adapters import ActiveAdapters

        active = ActiveAdapters(services.store)
        return cls(lambda: services.engine, services.library,
                   memory_dir=services.paths.data_dir / "translation_memory",
                   adapters=lambda model: active.for_model("translate", model))

    @property
    def engine(self):
        return self._engine() if callable(self._engine) else self._engine

    def model_path(self) -> str:
        return self.library.for_task("translate").path

    def cancel(self) -> None:
        """Stop every translation in flight; each keeps the segments it has finished."""
        with self._lock:
            handles = list(self._handles)
        for handle in handles:
            handle.cancel()

    def detect(self, text: str) -> str:
        found = langdetect.detect(text)
        if found.language is None:
            raise TranslationError("Could not tell which language the text is in; choose it with --from.")
        if not found.supported:
            raise TranslationError(f"The text looks like {found.name}, which is not supported; translation works "
                                   f"between {', '.join(SUPPORTED.values())}.")
        return found.language

    def translate_stream(self, text: str, target: str, source: str = "auto",
                         cancel: threading.Event | None = None) -> Iterator[object]:
        """Yield :class:`TranslationStarted`, then :class:`SegmentText` / :class:`SegmentDone`
        as the engine produces them, then :class:`TranslationFinished`. A cancel (the
        ``cancel`` event, :meth:`cancel`, or closing the generator) keeps finished segments."""
        if not text or not text.strip():
            raise TranslationError("There is no text to translate.")
        target = resolve_language(target, "target")
        source = resolve_language(source, "source")
        detected = source == "auto"
        if detected:
            source = self.detect(text)
        if source == target:
            raise TranslationError(f"The text is already in {SUPPORTED[target]}; choose another target language.")
        pieces = segment(text)
        todo = [i for i, p in enumerate(pieces) if p.translate]
        model = self.model_path()
        yield TranslationStarted(source, target, detected, len(todo), model, pieces, todo)
        outputs: dict[int, str] = {}
        if not todo:
            yield TranslationFinished(text, source, target, segments_done=0, segments_total=0)
            return
        items = [segment_prompt(pieces[i].text, source, target,
                                self.memory.nearest(pieces[i].text, source, target)) for i in todo]
        handle = self.engine.generate_batch(model, items, prefix=fixed_prefix(source, target),
                                            max_tokens=[max_tokens_for(pieces[i].text) for i in todo], stop=["\n"],
                                            adapters=self._adapters(model),
                                            # Every supported language is written in Latin script:
                                            # the engine may use a copy whose vocabulary keeps only that.
                                            latin_only=True)
        with self._lock:
            self._handles.add(handle)
        cancelled = False
        metrics: dict = {}
        finished = threading.Event()
        watcher = None
        if cancel is not None:
            watcher = threading.Thread(target=_forward_cancel, args=(cancel, finished, handle), daemon=True,
                                       name="translate-cancel")
            watcher.start()
        try:
            for event in handle.events():
                kind = event.get("event")
                if kind == "token":
                    yield SegmentText(int(event["index"]), event.get("text", ""))
                elif kind == "item":
                    index = int(event["index"])
                    outputs[index] = event.get("text", "").strip()
                    yield SegmentDone(index, outputs[index], len(outputs), len(todo))
                elif kind == "error":
                    if event.get("kind") == "cancelled":
                        cancelled = True
                        break
                    raise EngineRequestError(event.get("message", "The engine failed."), event.get("kind", "error"))
                elif kind == "done":
                    metrics = event.get("metrics") or {}
                    for index, out in enumerate((event.get("result") or {}).get("texts", [])):
                        outputs.setdefault(index, out.strip())
        except GeneratorExit:
            handle.cancel()
            raise
        finally:
            finished.set()
            if watcher is not None:
                watcher.join()
            with self._lock:
                self._handles.discard(handle)
        by_piece = {todo[i]: out for i, out in outputs.items()}
        yield TranslationFinished(assemble(pieces, by_piece), source, target, cancelled=cancelled,
                                  segments_done=len(outputs), segments_total=len(todo), metrics=metrics)

    def translate(self, text: str, target: str, source: str = "auto") -> TranslationFinished:
        """Blocking: the finished translation (any non-GUI thread)."""
        final = None
        for event in self.translate_stream(text, target, source):
            if isinstance(event, TranslationFinished):
                final = event
        assert final is not None
        return final

    def translate_file(self, path: str | Path, target: str, out: str | Path | None, source: str = "auto",
                       cancel: threading.Event | None = None) -> Iterator[object]:
        """Translate a text file; yields the same events, then writes ``out`` atomically
        (with what was finished, untranslated segments kept as they were, if cancelled) and
        returns the path written (None without ``out``). The CLI and the window both call it."""
        text = read_text_file(path, MAX_TRANSLATE_FILE_BYTES)
        final = None
        for event in self.translate_stream(text, target, source, cancel=cancel):
            if isinstance(event, TranslationFinished):
                final = event
            yield event
        if out is None or final is None:
            return None
        atomic_write_text(out, final.text)
        return Path(out)


def translated_file_name(path: str | Path, target: str) -> Path:
    """Where a file's translation goes unless the user says otherwise: beside it, the target
    language's code before the suffix (``notes.txt`` into French: ``notes.fr.txt``)."""
    path = Path(path)
    return path.with_name(f"{path.stem}.{langdetect.normalise_code(target)}{path.suffix or '.txt'}")


def _forward_cancel(cancel: threading.Event, finished: threading.Event, handle) -> None:
    """Its own short-lived thread: forwards a caller's cancel event to the engine request."""
    while not finished.is_set():
        if cancel.wait(0.05):
            handle.cancel()
            return


def assemble(pieces: list[Piece], translations: dict[int, str]) -> str:
    """Put translated segments back into the layout; unfinished ones stay in the original."""
    return "".join(translations.get(i, p.text) if p.translate else p.text for i, p in enumerate(pieces))
