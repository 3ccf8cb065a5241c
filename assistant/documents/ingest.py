"""Turning a user's file into titled, sectioned text, with limits on everything.

Runs on a worker thread (GUI) or the CLI's main thread; risky parsers (PDF, DOCX) run in a
child process (``python -m assistant.documents.ingest FILE``) under an address-space limit and a
timeout, so a decompression bomb or a parser bug costs that child, never the app. Every
failure the user can cause is an :class:`IngestError` with one clear sentence.

Why one module of ~680 lines: every format's parser and the child process share the same
limits (bytes, pages, characters, time) and the same result shape.
"""

from __future__ import annotations

import html.parser
import json
import os
import re
import subprocess
import sys
import unicodedata
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from assistant.errors import IngestError
from engine.file_kinds import NotText, decode_text, looks_like, reads_as_text

#: Suffix -> document type.
TYPES = {".txt": "text", ".text": "text", ".md": "markdown", ".markdown": "markdown", ".rst": "rst",
         ".html": "html", ".htm": "html", ".pdf": "pdf", ".docx": "docx"}
#: Largest file read at all; a 500 MB upload is refused before a byte is read.
MAX_FILE_BYTES = 100 * 1024 * 1024
#: Largest plain-text file: 20 MB is ~4 million words, far more than a book.
MAX_TEXT_BYTES = 20 * 1024 * 1024
#: PDFs past this many pages are cut here (with a note) rather than refused.
MAX_PDF_PAGES = 2000
#: Total text pulled out of one file; protects the index from a generated monster.
MAX_EXTRACTED_CHARS = 20 * 1024 * 1024
#: DOCX (a zip): caps on members, on each member's and the total uncompressed size, and on
#: the compression ratio (zip bombs compress 1000:1 and more; real XML ~10:1).
MAX_ZIP_MEMBERS = 5000
MAX_ZIP_MEMBER_BYTES = 64 * 1024 * 1024
MAX_ZIP_TOTAL_BYTES = 256 * 1024 * 1024
MAX_ZIP_RATIO = 200
#: The parsing child's limits: address space and wall time.
CHILD_MEMORY_BYTES = 1024 * 1024 * 1024
CHILD_TIMEOUT_S = 120.0


@dataclass
class Section:
    text: str
    headings: list[str] = field(default_factory=list)  # outermost first
    page: int | None = None  # 1-based, PDFs only


@dataclass
class ParsedDocument:
    path: str
    type: str
    title: str
    sections: list[Section]
    notes: list[str] = field(default_factory=list)  # e.g. "only the first 2000 pages"

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "ParsedDocument":
        return cls(path=data["path"], type=data["type"], title=data["title"],
                   sections=[Section(**s) for s in data["sections"]], notes=list(data.get("notes") or []))


def document_type(path: str | os.PathLike) -> str | None:
    return TYPES.get(Path(path).suffix.lower())


def supported_suffixes() -> str:
    return ", ".join(sorted({s for s in TYPES if s not in (".text", ".markdown", ".htm")}))


# ----- entry point -------------------------------------------------------------------------
def parse_file(path: str | os.PathLike, isolated: bool = True) -> ParsedDocument:
    """Parse one file; PDF and DOCX go to a limited child process unless ``isolated`` is off."""
    path = Path(path)
    kind = document_type(path)
    if kind is None:
        raise IngestError(f"{path.name}: unsupported file type {path.suffix or '(none)'!r}; "
                          f"supported: {supported_suffixes()}.")
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise IngestError(f"{path.name}: the file no longer exists.") from None
    except OSError as exc:
        raise IngestError(f"{path.name}: cannot be read ({exc.strerror or exc}).") from None
    if not path.is_file():
        raise IngestError(f"{path.name}: not a regular file.")
    if size == 0:
        raise IngestError(f"{path.name}: the file is empty (0 bytes).")
    limit = MAX_TEXT_BYTES if kind in ("text", "markdown", "rst", "html") else MAX_FILE_BYTES
    if size > limit:
        raise IngestError(f"{path.name}: too large to index ({size / 1024 / 1024:.0f} MB; "
                          f"the limit for this type is {limit // 1024 // 1024} MB).")
    if kind in ("pdf", "docx") and isolated:
        return _parse_in_child(path)
    return _PARSERS[kind](path)


def _parse_in_child(path: Path) -> ParsedDocument:
    """Run the parser in ``python -m assistant.documents.ingest`` under RLIMIT_AS and a timeout."""
    def limit() -> None:  # runs in the child between fork and exec
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (CHILD_MEMORY_BYTES, CHILD_MEMORY_BYTES))

    root = str(Path(__file__).resolve().parent.parent)
    env = dict(os.environ)
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    try:
        proc = subprocess.run([sys.executable, "-m", "assistant.documents.ingest", str(path)], capture_output=True,
                              timeout=CHILD_TIMEOUT_S, preexec_fn=limit, env=env, cwd=root)
    except subprocess.TimeoutExpired:
        raise IngestError(f"{path.name}: parsing took longer than {CHILD_TIMEOUT_S:.0f} s and was stopped; "
                          "the file may be damaged or built to be expensive to open.") from None
    if proc.returncode != 0 or not proc.stdout:
        tail = proc.stderr.decode("utf-8", "replace")
        if "MemoryError" in tail or proc.returncode in (-9, 137):
            raise IngestError(f"{path.name}: opening it needs more than {CHILD_MEMORY_BYTES // 2**20} MB of memory "
                              "(a decompression bomb or a damaged file); it was skipped.")
        last = [line for line in tail.splitlines() if line.strip()][-1:] or [f"exit code {proc.returncode}"]
        raise IngestError(f"{path.name}: the parser failed ({last[0][:200]}).")
    answer = json.loads(proc.stdout.decode("utf-8"))
    if "error" in answer:
        raise IngestError(answer["error"])
    return ParsedDocument.from_dict(answer["document"])


def _child_main(argv: list[str]) -> int:
    """``python -m assistant.documents.ingest FILE``: parse one file, print JSON, never a traceback."""
    path = Path(argv[0])
    try:
        document = _PARSERS[document_type(path) or "text"](path)
        out = {"document": document.to_dict()}
    except IngestError as exc:
        out = {"error": str(exc)}
    except MemoryError:
        out = {"error": f"{path.name}: opening it needs more than {CHILD_MEMORY_BYTES // 2**20} MB of memory "
                        "(a decompression bomb or a damaged file); it was skipped."}
    except Exception as exc:  # a parser bug on a hostile file: report it, do not crash the batch
        out = {"error": f"{path.name}: could not be parsed ({type(exc).__name__}: {str(exc)[:200]})."}
    sys.stdout.write(json.dumps(out))
    return 0


# ----- plain text ------------------------------------------------------------------------
def read_text(path: Path) -> str:
    try:
        return decode_text(path.read_bytes())
    except NotText as exc:
        # Named in words (a binary file, a PDF, an older encoding), never as bytes and offsets.
        raise IngestError(f"{path.name} {exc}.") from None


def _clean(text: str) -> str:
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "")
    return re.sub(r"[ \t]+\n", "\n", text)


def parse_text(path: Path) -> ParsedDocument:
    text = _clean(read_text(path))
    first = next((line.strip() for line in text.splitlines() if line.strip()), path.stem)
    return ParsedDocument(str(path), "text", first[:120] if len(first) < 120 else path.stem, [Section(text)])


_RST_ADORN = set("=-`:'\"~^_*+#<>.")
_HEADER_LINE = re.compile(r"^([A-Z][A-Za-z-]*):\s*(.*)$")


def parse_rst(path: Path) -> ParsedDocument:
    """Sections from reStructuredText underlines (and overlines); PEP headers give the title."""
    lines = _clean(read_text(path)).split("\n")
    title = ""
    start = 0
    # A PEP (or RFC 822-style) header block: "PEP: 484", "Title: Type Hints", ...
    header: dict[str, str] = {}
    if lines and _HEADER_LINE.match(lines[0]):
        for i, line in enumerate(lines):
            match = _HEADER_LINE.match(line)
            if match:
                header[match.group(1)] = match.group(2).strip()
            elif line[:1].isspace() and line.strip():
                continue  # a header value continued on the next line
            else:
                start = i
                break
    if "Title" in header:
        title = f"PEP {header['PEP']} – {header['Title']}" if "PEP" in header else header["Title"]
    else:
        start = 0
    levels: list[tuple[str, bool]] = []
    stack: list[str] = []
    sections: list[Section] = []
    body: list[str] = []

    def flush() -> None:
        text = "\n".join(body).strip()
        if text:
            sections.append(Section(text, list(stack)))
        body.clear()

    i = start
    while i < len(lines):
        line = lines[i]
        nxt = lines[i + 1] if i + 1 < len(lines) else ""
        over = False
        heading = None
        if _is_adornment(line) and i + 2 < len(lines) and _is_adornment(lines[i + 2]) and lines[i + 1].strip() \
                and lines[i + 2][0] == line[0]:
            heading, style, over, step = lines[i + 1].strip(), line[0], True, 3
        elif line.strip() and not line[:1].isspace() and _is_adornment(nxt) and len(nxt.rstrip()) >= len(line.rstrip()) - 1:
            heading, style, step = line.strip(), nxt[0], 2
        if heading is not None:
            flush()
            key = (style, over)
            if key not in levels:
                levels.append(key)
            level = levels.index(key)
            del stack[level:]
            stack.extend([""] * (level - len(stack)))
            stack.append(heading)
            stack[:] = [s for s in stack if s]
            if not title:
                title = heading
            i += step
            continue
        body.append(line)
        i += 1
    flush()
    return ParsedDocument(str(path), "rst", title or path.stem, sections)


def _is_adornment(line: str) -> bool:
    s = line.rstrip()
    return len(s) >= 3 and s[0] in _RST_ADORN and s == s[0] * len(s)


def parse_markdown(path: Path) -> ParsedDocument:
    lines = _clean(read_text(path)).split("\n")
    stack: list[tuple[int, str]] = []
    sections: list[Section] = []
    body: list[str] = []
    title = ""
    fence = None

    def flush() -> None:
        text = "\n".join(body).strip()
        if text:
            sections.append(Section(text, [h for _, h in stack]))
        body.clear()

    def open_heading(level: int, text: str) -> None:
        nonlocal title
        flush()
        while stack and stack[-1][0] >= level:
            stack.pop()
        stack.append((level, text))
        title = title or text

    i = 0
    while i < len(lines):
        line = lines[i]
        marker = re.match(r"^\s*(```|~~~)", line)
        if marker:
            fence = None if fence == marker.group(1) else (fence or marker.group(1))
        elif fence is None:
            atx = re.match(r"^(#{1,6})\s+(.*?)\s*#*\s*$", line)
            if atx:
                open_heading(len(atx.group(1)), atx.group(2))
                i += 1
                continue
            nxt = lines[i + 1] if i + 1 < len(lines) else ""
            if line.strip() and re.match(r"^(=+|-+)\s*$", nxt) and (not body or not body[-1].strip()) and len(nxt.strip()) >= 2:
                open_heading(1 if nxt.strip()[0] == "=" else 2, line.strip())
                i += 2
                continue
        body.append(line)
        i += 1
    flush()
    return ParsedDocument(str(path), "markdown", title or path.stem, sections)


class _HTMLText(html.parser.HTMLParser):
    BLOCK = {"p", "div", "br", "li", "tr", "section", "article", "pre", "blockquote", "table", "ul", "ol", "dd", "dt"}
    SKIP = {"script", "style", "noscript", "template", "svg", "head"}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.title = ""
        self.sections: list[Section] = []
        self.stack: list[tuple[int, str]] = []
        self.parts: list[str] = []
        self.skip = 0
        self.in_title = False
        self.heading: tuple[int, list[str]] | None = None

    def _flush(self) -> None:
        text = re.sub(r"\n\s*\n+", "\n\n", re.sub(r"[ \t]+", " ", "".join(self.parts))).strip()
        if text:
            self.sections.append(Section(text, [h for _, h in self.stack]))
        self.parts = []

    def handle_starttag(self, tag, attrs):
        if tag in self.SKIP and tag != "head":
            self.skip += 1
        if tag == "title":
            self.in_title = True
        elif re.fullmatch(r"h[1-6]", tag):
            self._flush()
            self.heading = (int(tag[1]), [])
        elif tag in self.BLOCK:
            self.parts.append("\n")

    def handle_endtag(self, tag):
        if tag in self.SKIP and tag != "head" and self.skip:
            self.skip -= 1
        if tag == "title":
            self.in_title = False
        elif re.fullmatch(r"h[1-6]", tag) and self.heading is not None:
            level, words = self.heading
            text = " ".join("".join(words).split())
            self.heading = None
            if text:
                while self.stack and self.stack[-1][0] >= level:
                    self.stack.pop()
                self.stack.append((level, text))
                if not self.title:
                    self.title = text
        elif tag in self.BLOCK:
            self.parts.append("\n")

    def handle_data(self, data):
        if self.skip:
            return
        if self.in_title:
            self.title = (self.title + data).strip()
        elif self.heading is not None:
            self.heading[1].append(data)
        else:
            self.parts.append(data)


def parse_html(path: Path) -> ParsedDocument:
    raw = read_text(path)
    parser = _HTMLText()
    parser.feed(raw)
    parser.close()
    parser._flush()
    return ParsedDocument(str(path), "html", parser.title or path.stem, parser.sections)


# ----- PDF (child process) ---------------------------------------------------------------------
def parse_pdf(path: Path) -> ParsedDocument:
    import logging

    from pypdf import PdfReader
    from pypdf.errors import LimitReachedError, PdfReadError

    logging.getLogger("pypdf").setLevel(logging.ERROR)
    try:
        reader = PdfReader(str(path), strict=False)
        if reader.is_encrypted:
            # Many PDFs are "encrypted" with an empty user password only to stop editing.
            try:
                ok = reader.decrypt("")
            except Exception:
                ok = 0
            if not ok:
                raise IngestError(f"{path.name}: the PDF is encrypted with a password; "
                                  "open it, save an unprotected copy and add that.")
        pages = reader.pages
        count = len(pages)
    except IngestError:
        raise
    except (PdfReadError, ValueError, KeyError, TypeError) as exc:
        if "crypt" in str(exc).lower():
            raise IngestError(f"{path.name}: the PDF is encrypted in a way that cannot be opened ({exc}).") from None
        with open(path, "rb") as handle:
            start = handle.read(1024)
        if b"%PDF" not in start:  # readers allow a little junk before the header, not none at all
            kind = looks_like(start)
            what = f"it looks like {kind}" if kind else (
                "it is a text file" if reads_as_text(start) else "it looks like some other binary file")
            raise IngestError(f"{path.name} is not a PDF document ({what}).") from None
        raise IngestError(f"{path.name}: the PDF is damaged and cannot be read ({str(exc)[:160]}).") from None
    notes = []
    if count > MAX_PDF_PAGES:
        notes.append(f"only the first {MAX_PDF_PAGES} of {count} pages were indexed")
    sections = []
    total = 0
    title = ""
    try:
        meta = reader.metadata
        title = str(meta.title).strip() if meta and meta.title else ""
    except Exception:
        title = ""
    for number in range(min(count, MAX_PDF_PAGES)):
        try:
            text = pages[number].extract_text() or ""
        except Exception as exc:
            if isinstance(exc, LimitReachedError) or "limit" in str(exc).lower():
                raise IngestError(f"{path.name}: page {number + 1} inflates past the safety limit "
                                  "(a decompression bomb?); the file was skipped.") from None
            if "crypt" in str(exc).lower():
                raise IngestError(f"{path.name}: the PDF is encrypted; save an unprotected copy and add that.") from None
            notes.append(f"page {number + 1} could not be read ({type(exc).__name__})")
            continue
        text = _clean(text).strip()
        total += len(text)
        if total > MAX_EXTRACTED_CHARS:
            notes.append(f"text past page {number} was left out (over {MAX_EXTRACTED_CHARS // 2**20} M characters)")
            break
        if text:
            sections.append(Section(text, [], number + 1))
    if not sections:
        raise IngestError(f"{path.name}: the PDF has no text layer (a scan or images only); "
                          "it needs OCR before it can be searched.")
    if not title:
        title = sections[0].text.split("\n", 1)[0].strip()[:120] or path.stem
    return ParsedDocument(str(path), "pdf", title, sections, notes)


# ----- DOCX (child process) --------------------------------------------------------------------
_W = "{http://schemas.openxmlformats.org/wordprocessingml/2006/main}"


def _read_member(archive: zipfile.ZipFile, name: str, path: Path) -> bytes:
    info = archive.getinfo(name)
    # The declared size can lie: read at most the cap plus one byte and refuse if we got it.
    with archive.open(info) as handle:
        data = handle.read(MAX_ZIP_MEMBER_BYTES + 1)
    if len(data) > MAX_ZIP_MEMBER_BYTES:
        raise IngestError(f"{path.name}: {name} inflates past {MAX_ZIP_MEMBER_BYTES // 2**20} MB (a zip bomb?); skipped.")
    return data


def parse_docx(path: Path) -> ParsedDocument:
    import defusedxml.ElementTree as SafeET
    from defusedxml import DefusedXmlException

    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise IngestError(f"{path.name}: not a valid DOCX file (it is not a zip archive: {exc}).") from None
    with archive:
        infos = archive.infolist()
        if len(infos) > MAX_ZIP_MEMBERS:
            raise IngestError(f"{path.name}: the DOCX holds {len(infos)} parts, more than {MAX_ZIP_MEMBERS}; skipped.")
        total = sum(i.file_size for i in infos)
        if total > MAX_ZIP_TOTAL_BYTES:
            raise IngestError(f"{path.name}: the DOCX would inflate to {total // 2**20} MB (a zip bomb?); skipped.")
        for info in infos:
            if info.file_size > MAX_ZIP_MEMBER_BYTES or (
                    info.compress_size and info.file_size / info.compress_size > MAX_ZIP_RATIO and info.file_size > 2**20):
                raise IngestError(f"{path.name}: {info.filename} is compressed {info.file_size // max(1, info.compress_size)}:1 "
                                  "(a zip bomb?); skipped.")
        names = set(archive.namelist())
        if "word/document.xml" not in names:
            raise IngestError(f"{path.name}: not a Word document (no word/document.xml).")
        try:
            root = SafeET.fromstring(_read_member(archive, "word/document.xml", path),
                                     forbid_dtd=True, forbid_entities=True, forbid_external=True)
            styles = {}
            if "word/styles.xml" in names:
                sroot = SafeET.fromstring(_read_member(archive, "word/styles.xml", path),
                                          forbid_dtd=True, forbid_entities=True, forbid_external=True)
                for style in sroot.iter(_W + "style"):
                    name = style.find(_W + "name")
                    styles[style.get(_W + "styleId")] = (name.get(_W + "val") if name is not None else "") or ""
            title = ""
            if "docProps/core.xml" in names:
                core = SafeET.fromstring(_read_member(archive, "docProps/core.xml", path),
                                         forbid_dtd=True, forbid_entities=True, forbid_external=True)
                for element in core.iter():
                    if element.tag.endswith("}title") and (element.text or "").strip():
                        title = element.text.strip()
        except DefusedXmlException as exc:
            raise IngestError(f"{path.name}: the DOCX contains XML entities or a DTD ({type(exc).__name__}), "
                              "which are refused for safety.") from None
        except SafeET.ParseError as exc:
            raise IngestError(f"{path.name}: the DOCX's XML is damaged ({exc}).") from None
    stack: list[tuple[int, str]] = []
    sections: list[Section] = []
    body: list[str] = []

    def flush() -> None:
        text = "\n".join(body).strip()
        if text:
            sections.append(Section(text, [h for _, h in stack]))
        body.clear()

    extracted = 0
    for paragraph in root.iter(_W + "p"):
        text = "".join((t.text or "") if t.tag == _W + "t" else ("\t" if t.tag == _W + "tab" else "\n")
                       for t in paragraph.iter() if t.tag in (_W + "t", _W + "tab", _W + "br")).strip()
        extracted += len(text)
        if extracted > MAX_EXTRACTED_CHARS:
            break
        style_id = None
        props = paragraph.find(_W + "pPr")
        if props is not None:
            pstyle = props.find(_W + "pStyle")
            if pstyle is not None:
                style_id = pstyle.get(_W + "val")
        style = (styles.get(style_id) or style_id or "").lower().replace(" ", "")
        level = None
        if style == "title":
            level = 0
        elif (m := re.fullmatch(r"heading(\d)", style)):
            level = int(m.group(1))
        if level is not None and text:
            if level == 0:
                title = title or text
            flush()
            while stack and stack[-1][0] >= level:
                stack.pop()
            stack.append((level, text))
            continue
        if text:
            body.append(text)
    flush()
    if not sections:
        raise IngestError(f"{path.name}: the document has no text.")
    return ParsedDocument(str(path), "docx", title or (stack[0][1] if stack else path.stem), sections)


_PARSERS = {"text": parse_text, "markdown": parse_markdown, "rst": parse_rst, "html": parse_html,
            "pdf": parse_pdf, "docx": parse_docx}


# ----- tokens and chunks --------------------------------------------------------------------------
class WordPiece:
    """Counts MiniLM's WordPiece tokens (BERT basic tokenizer + greedy longest match).

    Pure Python so that chunking needs no engine round trip; it agrees with the engine's
    tokenizer on ordinary text, and the engine truncates anything a rare mismatch leaves
    a few tokens too long. Any thread.
    """

    def __init__(self, vocab: set[str] | None):
        self.vocab = vocab
        self._cache: dict[str, int] = {}

    @classmethod
    def from_folder(cls, folder: str | os.PathLike | None) -> "WordPiece":
        vocab_path = Path(folder) / "vocab.txt" if folder else None
        if vocab_path is None or not vocab_path.is_file():
            return cls(None)  # falls back to ~1.3 tokens a word
        return cls(set(vocab_path.read_text(encoding="utf-8").split("\n")))

    _SPLIT = re.compile(r"\w+|[^\w\s]", re.UNICODE)

    def words(self, text: str) -> list[str]:
        text = unicodedata.normalize("NFD", text.lower())
        text = "".join(c for c in text if unicodedata.category(c) != "Mn")
        return self._SPLIT.findall(text)

    def _word_tokens(self, word: str) -> int:
        cached = self._cache.get(word)
        if cached is not None:
            return cached
        if self.vocab is None:
            n = 1 + len(word) // 6
        elif len(word) > 100:
            n = 1
        else:
            n, start = 0, 0
            while start < len(word):
                end = len(word)
                while end > start:
                    piece = word[start:end] if start == 0 else "##" + word[start:end]
                    if piece in self.vocab:
                        break
                    end -= 1
                if end == start:
                    n = 1  # [UNK] for the whole word, as BERT does
                    break
                n += 1
                start = end
        if len(self._cache) < 200_000:
            self._cache[word] = n
        return n

    def count(self, text: str) -> int:
        return sum(self._word_tokens(w) for w in self.words(text))


@dataclass
class Chunk:
    text: str  # the passage shown to the user and indexed for BM25
    headings: list[str]
    page: int | None
    tokens: int
    ordinal: int = 0

    def heading(self) -> str:
        return " > ".join(self.headings)


def _units(text: str) -> list[str]:
    """Paragraphs, and sentences of paragraphs too long to be one unit."""
    out = []
    for paragraph in re.split(r"\n\s*\n", text):
        paragraph = paragraph.strip()
        if paragraph:
            out.append(paragraph)
    return out


def chunk_document(document: ParsedDocument, counter: WordPiece, target: int = 180, overlap: int = 40) -> list[Chunk]:
    """Token-aware chunks that never cross a section or page, with ``overlap`` tokens carried over.

    ``target`` leaves room, within MiniLM's 256-token window, for the title and heading line
    that is embedded in front of each passage.
    """
    chunks: list[Chunk] = []
    for section in document.sections:
        pieces: list[tuple[str, int]] = []
        for unit in _units(section.text):
            n = counter.count(unit)
            if n <= target:
                pieces.append((unit, n))
                continue
            # Too long: sentences, and hard word windows for run-on text (code, tables).
            for sentence in re.split(r"(?<=[.!?:;])\s+|\n", unit):
                sentence = sentence.strip()
                if not sentence:
                    continue
                m = counter.count(sentence)
                if m <= target:
                    pieces.append((sentence, m))
                    continue
                words = sentence.split()
                step = max(1, int(len(words) * target / m * 0.9))
                for start in range(0, len(words), step):
                    part = " ".join(words[start:start + step])
                    pieces.append((part, counter.count(part)))
        current: list[tuple[str, int]] = []
        size = 0
        for piece in pieces:
            if current and size + piece[1] > target:
                chunks.append(Chunk("\n\n".join(p for p, _ in current), list(section.headings), section.page, size))
                # Carry the tail of this chunk into the next, up to ``overlap`` tokens.
                carried: list[tuple[str, int]] = []
                carried_size = 0
                for prev in reversed(current):
                    if carried_size + prev[1] > overlap:
                        break
                    carried.insert(0, prev)
                    carried_size += prev[1]
                current, size = carried, carried_size
            current.append(piece)
            size += piece[1]
        if current:
            chunks.append(Chunk("\n\n".join(p for p, _ in current), list(section.headings), section.page, size))
    for i, chunk in enumerate(chunks):
        chunk.ordinal = i
    return chunks


def embedding_text(title: str, chunk: Chunk) -> str:
    """What the embedder sees: the document title and heading path give context to the passage."""
    context = " > ".join([title] + [h for h in chunk.headings if h != title])
    return f"{context}\n{chunk.text}"


if __name__ == "__main__":
    raise SystemExit(_child_main(sys.argv[1:]))
