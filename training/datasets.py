"""Training data: the user's documents or translation memory, as packed token blocks.

Runs in the training process, main thread (and each rank under torchrun does the same,
deterministically, so that every rank holds identical blocks and takes its own share).

* Documents (continued pre-training): each document is tokenized as llama.cpp will see it
  (the model's start tokens, the text, end-of-text), the documents are concatenated and cut
  into blocks of exactly ``seq_len`` tokens. No padding: every position trains. Whole
  documents are held out for evaluation (or, with too few documents, the tail of the text),
  so held-out perplexity measures text the model never saw.
* Translation memory (TSV with language-code columns, or TMX): each pair becomes the line
  format of the translator's few-shot prompt (``English: ...\\nFrench: ...``, the same string
  as ``assistant.tasks.translation.segment_prompt`` builds, tested), packed the same way; the loss
  can be restricted to the target side (``mask_prompt``), which is what the translator asks of
  the model.

Sources the job file names (``job["dataset"]``):
  {"type": "documents", "path": "documents.jsonl"}   one {"title", "text"} per line
  {"type": "text_files", "paths": [...]}              plain text files, one document each
  {"type": "translation_memory", "path": "x.tsv|x.tmx", "source": "en", "target": "fr"}
"""

from __future__ import annotations

import csv
import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np

from engine.atomic import atomic_write_text

#: Language names of the translator's prompt lines (assistant.tasks.langdetect.SUPPORTED; a test
#: checks they agree, training must not import the assistant package).
LANGUAGE_NAMES = {"en": "English", "fr": "French", "de": "German", "es": "Spanish"}
_CODE3 = {"eng": "en", "fra": "fr", "fre": "fr", "deu": "de", "ger": "de", "spa": "es"}

#: Smallest training set worth a job: fewer blocks than this teach nothing measurable.
MIN_TRAIN_BLOCKS = 4
#: Blocks the estimate before a job asks for: the training minimum and one held out, as packing needs.
MIN_BLOCKS = MIN_TRAIN_BLOCKS + 1
#: Rough characters per token of these models' tokenizers on prose; only for that estimate
#: (no tokenizer is loaded before a job starts), packing counts the real tokens again.
CHARS_PER_TOKEN = 4.0
#: Fewest translation-memory pairs worth a job: fewer teach the prompt format nothing measurable.
MIN_PAIRS = 20
#: Translation-memory files larger than this are refused (they would train for days on a CPU).
MAX_TM_BYTES = 256 << 20


class DatasetError(ValueError):
    """The data cannot make a training set; str() says why and what to do."""


@dataclass
class Document:
    title: str
    text: str


@dataclass
class PackedData:
    """Blocks of ``seq_len`` token ids; labels use -100 for positions that do not train."""

    seq_len: int
    train_ids: np.ndarray  # int64 (n_train, seq_len)
    train_labels: np.ndarray
    eval_ids: np.ndarray  # int64 (n_eval, seq_len)
    eval_labels: np.ndarray
    eval_texts: list[str] = field(default_factory=list)  # held-out raw texts, for llama.cpp perplexity
    stats: dict = field(default_factory=dict)


# ----- reading sources ------------------------------------------------------------------
def iter_jsonl(path: Path, what: str) -> Iterator[tuple[int, dict]]:
    """(line number, object) for each non-blank line of a JSON-lines file; a line that is not a
    JSON object is a :class:`DatasetError` naming the file, the line and ``what`` it should be."""
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError as exc:
                raise DatasetError(f"Line {number} of {path.name} is not {what} ({exc}).") from None
            if not isinstance(row, dict):
                raise DatasetError(f"Line {number} of {path.name} is not {what}.")
            yield number, row


def read_documents_jsonl(path: Path) -> list[Document]:
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"The document list {path} does not exist.")
    docs = []
    what = 'a {"title", "text"} object'
    for number, row in iter_jsonl(path, what):
        try:
            docs.append(Document(str(row.get("title", "")), str(row["text"])))
        except KeyError as exc:
            raise DatasetError(f"Line {number} of {path.name} is not {what} (no {exc}).") from None
    return docs


def read_text_files(paths: list[str | Path]) -> list[Document]:
    docs = []
    for p in paths:
        p = Path(p)
        if not p.is_file():
            raise DatasetError(f"{p} does not exist or is not a file.")
        try:
            docs.append(Document(p.name, p.read_text(encoding="utf-8")))
        except UnicodeDecodeError as exc:
            raise DatasetError(f"{p.name} is not UTF-8 text.") from exc
    return docs


def _lang(code: str) -> str | None:
    code = code.strip().lower().replace("_", "-")
    code = _CODE3.get(code, code.split("-")[0])
    return code if code in LANGUAGE_NAMES else None


def read_translation_memory(path: Path) -> tuple[str, str, list[tuple[str, str]]]:
    """(source code, target code, pairs) from a TSV whose header names the languages
    (``eng<TAB>fra``, as the translator's memory folder uses) or a TMX file."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"The translation memory {path} does not exist.")
    if path.stat().st_size > MAX_TM_BYTES:
        raise DatasetError(f"{path.name} is larger than {MAX_TM_BYTES >> 20} MB; use a part of it.")
    if path.suffix.lower() == ".tmx":
        return _read_tmx(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{path.name} is not UTF-8 text.") from exc
    rows = csv.reader(text.splitlines(), delimiter="\t", quoting=csv.QUOTE_NONE)
    header = next(rows, None)
    codes = [_lang(h) for h in (header or [])[:2]]
    if len(codes) < 2 or None in codes or codes[0] == codes[1]:
        raise DatasetError(f"{path.name}: the first line must name the two languages (en/fr/de/es or "
                           f"eng/fra/deu/spa, tab-separated), found {header[:2] if header else 'nothing'}.")
    pairs = [(r[0].strip(), r[1].strip()) for r in rows if len(r) >= 2 and r[0].strip() and r[1].strip()]
    return codes[0], codes[1], pairs


def _read_tmx(path: Path) -> tuple[str, str, list[tuple[str, str]]]:
    from defusedxml import ElementTree
    from defusedxml.common import DefusedXmlException

    xml_lang = "{http://www.w3.org/XML/1998/namespace}lang"
    try:
        root = ElementTree.parse(str(path)).getroot()
    except (ElementTree.ParseError, DefusedXmlException) as exc:
        raise DatasetError(f"{path.name} is not a readable TMX file: {exc}") from exc
    langs: list[str] = []
    units: list[dict[str, str]] = []
    for tu in root.iter("tu"):
        unit = {}
        for tuv in tu.iter("tuv"):
            code = _lang(tuv.get(xml_lang) or tuv.get("lang") or "")
            seg = tuv.find("seg")
            if code and seg is not None:
                unit[code] = " ".join("".join(seg.itertext()).split())
                if code not in langs:
                    langs.append(code)
        units.append(unit)
    if len(langs) < 2:
        raise DatasetError(f"{path.name} has no translation units in two supported languages (en, fr, de, es).")
    src, tgt = langs[0], langs[1]
    pairs = [(u[src], u[tgt]) for u in units if u.get(src) and u.get(tgt)]
    return src, tgt, pairs


# ----- the translator's prompt format -----------------------------------------------------
def translation_prompt(text: str, source: str, target: str) -> str:
    """The translator's prompt for one segment without examples; equals
    ``assistant.tasks.translation.segment_prompt(text, source, target, [])``."""
    return f"{LANGUAGE_NAMES[source]}: {' '.join(text.split())}\n{LANGUAGE_NAMES[target]}:"


def translation_completion(translation: str) -> str:
    """What the model should write after the prompt: the translation, then the blank line
    that separates examples (the translator stops at the line break)."""
    return f" {' '.join(translation.split())}\n\n"


# ----- packing ----------------------------------------------------------------------------
def _blocks(ids: list[int], labels: list[int], seq_len: int) -> tuple[np.ndarray, np.ndarray]:
    n = len(ids) // seq_len
    a = np.asarray(ids[: n * seq_len], dtype=np.int64).reshape(n, seq_len)
    b = np.asarray(labels[: n * seq_len], dtype=np.int64).reshape(n, seq_len)
    return a, b


def _encode(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def _start_ids(tokenizer) -> list[int]:
    from training.base_model import document_start_ids

    return document_start_ids(tokenizer)


def pack_documents(docs: list[Document], tokenizer, seq_len: int, eval_fraction: float = 0.1,
                   seed: int = 0, min_train_blocks: int = MIN_TRAIN_BLOCKS) -> PackedData:
    docs = [d for d in docs if d.text.strip()]
    if not docs:
        raise DatasetError("There are no documents with text to train on. Add documents to the collection first.")
    start = _start_ids(tokenizer)
    eos = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    encoded = [start + _encode(tokenizer, d.text) + eos for d in docs]
    total = sum(len(e) for e in encoded)
    needed = (min_train_blocks + 1) * seq_len
    if total < needed:
        raise DatasetError(f"Too little text: {total} tokens, at least {needed} are needed "
                           f"({min_train_blocks} training blocks of {seq_len} tokens and a held-out part). "
                           "Add more documents.")
    order = list(range(len(docs)))
    random.Random(seed).shuffle(order)
    n_eval_docs = int(round(len(docs) * eval_fraction)) if eval_fraction > 0 else 0
    if eval_fraction > 0 and len(docs) >= 5:
        n_eval_docs = max(1, n_eval_docs)
        eval_set = set(order[:n_eval_docs])
        train_stream = [t for i in range(len(docs)) if i not in eval_set for t in encoded[i]]
        eval_stream = [t for i in sorted(eval_set) for t in encoded[i]]
        eval_texts = [docs[i].text for i in sorted(eval_set)]
        split = "documents"
    else:
        # Too few documents to hold whole ones out: hold out the tail of the text.
        stream = [t for e in encoded for t in e]
        cut = len(stream) - max(seq_len, int(len(stream) * eval_fraction)) if eval_fraction > 0 else len(stream)
        train_stream, eval_stream = stream[:cut], stream[cut:]
        eval_texts = [tokenizer.decode(eval_stream, skip_special_tokens=True)] if eval_stream else []
        split = "tail"
    train_ids, train_labels = _blocks(train_stream, train_stream, seq_len)
    eval_ids, eval_labels = _blocks(eval_stream, eval_stream, seq_len)
    if len(train_ids) < min_train_blocks:
        raise DatasetError(f"Too little text: {len(train_stream)} training tokens make {len(train_ids)} blocks of "
                           f"{seq_len}; at least {min_train_blocks} are needed. Add more documents.")
    return PackedData(seq_len, train_ids, train_labels, eval_ids, eval_labels, eval_texts, {
        "documents": len(docs), "tokens": total, "train_blocks": int(len(train_ids)),
        "eval_blocks": int(len(eval_ids)), "held_out": split,
        "eval_documents": n_eval_docs if split == "documents" else 0})


def pack_translation_pairs(pairs: list[tuple[str, str]], source: str, target: str, tokenizer, seq_len: int,
                           eval_fraction: float = 0.05, seed: int = 0, mask_prompt: bool = True,
                           min_pairs: int = 20, min_train_blocks: int = MIN_TRAIN_BLOCKS) -> PackedData:
    if source not in LANGUAGE_NAMES or target not in LANGUAGE_NAMES or source == target:
        raise DatasetError(f"Translation direction {source}->{target} is not supported "
                           f"(languages: {', '.join(LANGUAGE_NAMES)}).")
    pairs = [(s, t) for s, t in pairs if s.strip() and t.strip()]
    if len(pairs) < min_pairs:
        raise DatasetError(f"The translation memory has {len(pairs)} usable pairs; at least {min_pairs} are needed.")
    order = list(range(len(pairs)))
    random.Random(seed).shuffle(order)
    n_eval = max(1, int(len(pairs) * eval_fraction)) if eval_fraction > 0 else 0
    start = _start_ids(tokenizer)

    def stream(indices):
        ids: list[int] = []
        labels: list[int] = []
        for i in indices:
            src, tgt = pairs[i]
            prompt = _encode(tokenizer, translation_prompt(src, source, target))
            answer = _encode(tokenizer, translation_completion(tgt))
            ids += prompt + answer
            labels += ([-100] * len(prompt) if mask_prompt else prompt) + answer
        return ids, labels

    train_ids, train_labels = _blocks(*stream(order[n_eval:]), seq_len)
    eval_ids, eval_labels = _blocks(*stream(order[:n_eval]), seq_len)
    # Each block begins like a prompt does (BOS where the model uses one).
    if start:
        train_ids[:, : len(start)] = start
        train_labels[:, : len(start)] = -100
        if len(eval_ids):
            eval_ids[:, : len(start)] = start
            eval_labels[:, : len(start)] = -100
    if len(train_ids) < min_train_blocks:
        raise DatasetError(f"Too little text in the translation memory: {len(train_ids)} blocks of {seq_len} tokens; "
                           f"at least {min_train_blocks} are needed.")
    eval_texts = [translation_prompt(pairs[i][0], source, target) + translation_completion(pairs[i][1])
                  for i in order[:n_eval]]
    return PackedData(seq_len, train_ids, train_labels, eval_ids, eval_labels, eval_texts, {
        "pairs": len(pairs), "train_blocks": int(len(train_ids)), "eval_blocks": int(len(eval_ids)),
        "eval_pairs": n_eval, "direction": f"{source}-{target}", "held_out": "pairs"})


def build(spec: dict, tokenizer, seq_len: int, eval_fraction: float, seed: int = 0) -> PackedData:
    """The packed data a job's ``dataset`` entry describes (see the module docstring)."""
    kind = spec.get("type")
    if kind == "documents":
        return pack_documents(read_documents_jsonl(Path(spec["path"])), tokenizer, seq_len, eval_fraction, seed)
    if kind == "text_files":
        return pack_documents(read_text_files(spec.get("paths", [])), tokenizer, seq_len, eval_fraction, seed)
    if kind == "translation_memory":
        src, tgt, pairs = read_translation_memory(Path(spec["path"]))
        source, target = _direction(spec, src, tgt)
        if source != src:
            pairs = [(t, s) for s, t in pairs]
        limit = spec.get("max_pairs")
        return pack_translation_pairs(pairs[: int(limit)] if limit else pairs, source, target, tokenizer, seq_len,
                                      eval_fraction, seed, bool(spec.get("mask_prompt", True)))
    raise DatasetError(f"Unknown dataset type {kind!r} (documents, text_files, translation_memory).")


def _direction(spec: dict, src: str, tgt: str) -> tuple[str, str]:
    """(source, target) of a translation-memory job: the job's own, or the file's languages."""
    source, target = spec.get("source") or src, spec.get("target") or tgt
    if {source, target} != {src, tgt}:
        raise DatasetError(f"{Path(spec['path']).name} holds {src}/{tgt} pairs, not {source}->{target}.")
    return source, target


def preflight(spec: dict | None, seq_len: int) -> dict:
    """The checks of a job's data that need no tokenizer, made before any model is loaded: by
    ``python -m training.run --check`` before the app keeps a job folder, and again by the job
    when it starts. A translation memory is read, its pair count checked and its direction
    resolved; the app's data (documents, translation memory) is estimated in tokens so that too
    little text is refused at once. Plain text files are left to packing, which counts real
    tokens. Returns {"estimated_tokens"} (with "source", "target" for a translation memory);
    raises :class:`DatasetError`. Any thread."""
    kind = (spec or {}).get("type")
    info: dict = {}
    if kind == "translation_memory":
        path = Path(spec["path"])
        src, tgt, pairs = read_translation_memory(path)
        if len(pairs) < MIN_PAIRS:
            raise DatasetError(f"{path.name} has {len(pairs)} usable pairs; at least {MIN_PAIRS} are needed.")
        info["source"], info["target"] = _direction(spec, src, tgt)
        # +20: the language names and line breaks the prompt format adds to each pair.
        tokens = int(sum(len(s) + len(t) + 20 for s, t in pairs) / CHARS_PER_TOKEN)
    elif kind == "documents":
        tokens = int(sum(len(d.text) for d in read_documents_jsonl(Path(spec["path"]))) / CHARS_PER_TOKEN)
    else:
        return info
    needed = MIN_BLOCKS * seq_len
    if tokens < needed:
        raise DatasetError(f"Too little text: about {tokens} tokens, at least {needed} are needed "
                           f"({MIN_BLOCKS} blocks of {seq_len}). Add more documents.")
    info["estimated_tokens"] = tokens
    return info


# ----- held-out texts ---------------------------------------------------------------------
def write_held_out(path: Path, texts: list[str]) -> None:
    """The held-out texts (never trained on) as JSON lines ``{"text": ...}``, written
    atomically, for a caller that asked to keep them (a job's ``held_out_path``: a benchmark
    measuring them through llama.cpp on a public corpus; the app never asks)."""
    atomic_write_text(path, "".join(json.dumps({"text": t}, ensure_ascii=False) + "\n" for t in texts))
