"""Translation quality: chrF (sacrebleu) of the app's translator in six directions, on short
everyday sentences and on long news sentences, for a new user and with a translation memory.

What is scored: `assistant.tasks.translation.Translator` as the app runs it on Gemma 3 270M (the
fixed hand-written example pairs of resources/prompts, plus the nearest memory pairs when there
is a memory), each test line a segment of one engine request per chunk of lines, as a file
would be translated; the engine configured as the app's, so such a chunk runs on the model's
F16 copy (engine.fast_prefill). A cell is one (set, direction, condition, part):

* sets: ``tatoeba`` (``../shared/data/translation/tatoeba-eng-XXX.tsv``, short everyday
  sentences) and ``news`` (``translation/news/newstest2013-eng-XXX.tsv``, long news sentences),
  500 pairs each;
* directions: eng->fra/deu/spa and fra/deu/spa->eng, the same files read either way;
* conditions: ``none``, what a new user gets (the fixed examples, an empty memory), and
  ``memory``, a memory built from ``translation/parallel/eng-XXX.tsv`` of that language pair
  (the memory holds both directions; the translator asks it in the direction translated).
  Near copies of the Tatoeba test lines were removed from those files upstream
  (``../shared/data/README.md``); pairs that still equal a test line of the set on either side
  (normalised words) are dropped here too and counted in the cell;
* parts, fixed here before any run: in each file, lines 0, 2, 4, ... (0-based) are the
  *development* part and lines 1, 3, 5, ... the *scored* part; ``all`` is every line.

chrF is sacrebleu's corpus chrF of the hypotheses against the reference side of the cell's
lines. The benchmark itself has no settings to search; a change to the translator (examples,
memory size, segmenting) is judged on ``--part development`` cells only, and the scored part is
run once for the change chosen. The issue's targets (:data:`TARGETS`) are on newstest2013, all
500 lines (``--part all``), in the ``none`` condition (what every user gets), with the memory
cell beside it; for Tatoeba the check is that its cells do not drop below those of the same
part before the change.

Resuming and dividing a run: each cell finished is merged into the results file
(``benchmarks/results/translation_quality.json``; ``--results`` for another) with its chrF,
line count, seconds, date, commit and load average; a cell already there is kept and not run
again unless ``--replace``, and a replaced cell keeps what it replaced under ``replaces``.
With ``--work DIR`` the hypotheses of each (set, direction, condition) are appended to
``DIR/SET-DIRECTION-CONDITION.jsonl`` after every chunk of lines, keyed by line number and
stamped with a fingerprint of the translator's module, examples, model and memory pairs: a run
that was stopped goes on from the lines it has, and ``--part all`` reuses the lines of the
development and scored runs; a different fingerprint starts the file again. Each line is
translated once per work folder (``--replace`` with the same folder scores the kept lines again;
a new folder translates them again); no line or cell is ever chosen among runs. ``--limit N``
scores the first N lines of the part (its cell is named ``.../first-N``).

    python benchmarks/translation_quality.py [--part development|scored|all] [--sets tatoeba,news]
        [--directions eng-fra,...] [--conditions none,memory] [--limit N] [--work DIR]
        [--results PATH] [--replace]

Prints a table of every cell in the results file, then one JSON line.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import hashlib
import json
import os
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine import privacy  # noqa: E402

privacy.install()

import sacrebleu  # noqa: E402

import resources  # noqa: E402
from assistant.config import default_paths  # noqa: E402
from assistant.tasks import translation  # noqa: E402
from assistant.tasks.translation import TranslationMemory, Translator  # noqa: E402
from engine import fast_prefill, model_pack  # noqa: E402
from engine.atomic import atomic_write_text  # noqa: E402
from benchmarks.record import RESULTS_DIR, results_line  # noqa: E402

DATA = Path(os.environ.get("ASSISTANT_SHARED_DATA", ROOT / ".." / "shared" / "data")).resolve()
BENCHMARK = "translation_quality"
DEFAULT_RESULTS = RESULTS_DIR / f"{BENCHMARK}.json"
SETS = {"tatoeba": "tatoeba-eng-{code3}.tsv", "news": "news/newstest2013-eng-{code3}.tsv"}
DIRECTIONS = ("eng-fra", "eng-deu", "eng-spa", "fra-eng", "deu-eng", "spa-eng")
CONDITIONS = ("none", "memory")
PARTS = ("development", "scored", "all")
CODES = {"eng": "en", "fra": "fr", "spa": "es", "deu": "de"}
#: The issue's chrF targets: newstest2013, all 500 lines, condition ``none``.
TARGETS = {"eng-fra": 50.0, "eng-deu": 35.0, "eng-spa": 47.0, "fra-eng": 58.0, "deu-eng": 50.0, "spa-eng": 53.0}
TARGET_SET, TARGET_PART, TARGET_CONDITION, TARGET_LINES = "news", "all", "none", 500
#: Lines per engine request: a few more than the engine's 31 side-by-side slots keep them busy
#: at the end of a chunk; a stopped run loses at most one chunk.
CHUNK = 48


class CellExists(Exception):
    """The results file already holds this cell; ``--replace`` runs it again."""


class _Library:
    """The one method Translator needs from the model library: the translate model."""

    def __init__(self, path: str):
        self.path = path

    def for_task(self, task: str):
        return self

    def routes(self) -> dict:
        return {}


# ----- data and split (no model) ------------------------------------------------------------
def normalise(text: str) -> str:
    return " ".join(re.findall(r"\w+", text.lower()))


def load_pairs(path: Path, code3: str) -> list[tuple[str, str]]:
    """(English, other language) pairs of a TSV whose columns are ``eng`` and ``code3``."""
    with open(path, encoding="utf-8", newline="") as handle:
        return [(r["eng"], r[code3]) for r in csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)]


def other_language(direction: str) -> str:
    source, target = direction.split("-")
    return target if source == "eng" else source


def oriented(pairs: list[tuple[str, str]], direction: str) -> list[tuple[str, str]]:
    """(source, reference) in the direction translated."""
    return list(pairs) if direction.startswith("eng-") else [(t, s) for s, t in pairs]


def part_indices(n: int, part: str, limit: int = 0) -> list[int]:
    """Line numbers (0-based) of a part of an n-line file: development the even ones, scored the
    odd ones, all of them for ``all``; with ``limit``, the first ``limit`` of those."""
    if part == "development":
        indices = list(range(0, n, 2))
    elif part == "scored":
        indices = list(range(1, n, 2))
    elif part == "all":
        indices = list(range(n))
    else:
        raise ValueError(f"unknown part {part!r}")
    return indices[:limit] if limit else indices


def cell_key(set_name: str, direction: str, condition: str, part: str, limit: int = 0) -> str:
    return f"{set_name}/{direction}/{condition}/{part}" + (f"/first-{limit}" if limit else "")


def memory_pairs(parallel: list[tuple[str, str]], test: list[tuple[str, str]]) -> tuple[list[tuple[str, str]], int]:
    """The memory's (English, other) pairs without those equal to a test line on either side
    (normalised words), and how many were dropped."""
    sources = {normalise(s) for s, _ in test}
    references = {normalise(t) for _, t in test}
    kept = [(s, t) for s, t in parallel if normalise(s) not in sources and normalise(t) not in references]
    return kept, len(parallel) - len(kept)


# ----- results file -------------------------------------------------------------------------
def load_results(path: Path) -> dict:
    if path.is_file():
        data = json.loads(path.read_text(encoding="utf-8"))
        data.setdefault("cells", {})
        return data
    return {"benchmark": BENCHMARK, "cells": {}}


def merge_cell(data: dict, key: str, cell: dict, replace: bool = False) -> dict:
    """``data`` with ``cell`` under ``key``, every other cell kept. A cell already there is
    replaced only with ``replace``; the new one then carries the old one's figures (and what
    that one replaced) under ``replaces``, so the file shows every run of the cell."""
    cells = dict(data.get("cells", {}))
    old = cells.get(key)
    if old is not None:
        if not replace:
            raise CellExists(key)
        earlier = old.get("replaces", [])
        summary = {k: v for k, v in old.items() if k != "replaces"}
        cell = {**cell, "replaces": earlier + [summary]}
    cells[key] = cell
    return {**data, "benchmark": BENCHMARK, "cells": dict(sorted(cells.items())),
            "targets": {f"chrf_{TARGET_SET}_{d.replace('-', '_')}_{TARGET_CONDITION}_{TARGET_PART}": v
                        for d, v in TARGETS.items()}}


def store_cell(path: Path, key: str, cell: dict, replace: bool = False) -> dict:
    """Merge one cell into the results file as it is on disk now (another run may have added
    cells since this one started) and write it atomically."""
    data = merge_cell(load_results(path), key, cell, replace)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n", permissions=0o644)
    return data


# ----- hypotheses cache ---------------------------------------------------------------------
class HypothesisCache:
    """The hypotheses of one (set, direction, condition), one JSON line each after a header
    with the fingerprint; appended after every chunk and flushed, so a stopped run resumes.
    Without a folder it only keeps lines in memory."""

    def __init__(self, folder: Path | None, name: str, fingerprint: str):
        self.path = folder / f"{name}.jsonl" if folder is not None else None
        self.fingerprint = fingerprint
        self.lines: dict[int, dict] = {}
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.is_file():
            content = self.path.read_text(encoding="utf-8")
            raw = content.splitlines()
            try:
                header = json.loads(raw[0]) if raw else {}
            except json.JSONDecodeError:
                header = {}
            if header.get("fingerprint") == fingerprint:
                whole = content.endswith("\n")
                for text in raw[1:]:
                    try:
                        line = json.loads(text)
                    except json.JSONDecodeError:
                        whole = False  # the half-written last line of a killed run
                        continue
                    self.lines[int(line["i"])] = line
                if not whole:  # write it again without that line, or the next one would be appended to it
                    self.path.write_text("".join(json.dumps(x, ensure_ascii=False) + "\n"
                                                 for x in [header, *self.lines.values()]), encoding="utf-8")
                return
            print(f"{self.path.name}: written by another translator or data (fingerprint differs); starting it again",
                  file=sys.stderr)
            self.path.replace(self.path.with_name(self.path.name + ".old"))
        self.path.write_text(json.dumps({"fingerprint": fingerprint}) + "\n", encoding="utf-8")

    def get(self, index: int, source: str) -> dict | None:
        line = self.lines.get(index)
        return line if line is not None and line.get("src") == source else None

    def add(self, entries: list[dict]) -> None:
        for entry in entries:
            self.lines[int(entry["i"])] = entry
        if self.path is not None:
            with open(self.path, "a", encoding="utf-8") as handle:
                handle.write("".join(json.dumps(e, ensure_ascii=False) + "\n" for e in entries))
                handle.flush()
                os.fsync(handle.fileno())


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def fingerprint(model_sha256: str, memory: list[tuple[str, str]] | None) -> str:
    """What the hypotheses depend on: the translator's code and examples, which weights run
    batches (engine.fast_prefill), the model, the chunk
    size and the memory's pairs (the test lines themselves are checked line by line)."""
    parts = [Path(translation.__file__).read_bytes(), Path(fast_prefill.__file__).read_bytes(),
             resources.path("prompts", "translation_examples.json").read_bytes(),
             model_sha256.encode(), str(CHUNK).encode(),
             json.dumps(memory, ensure_ascii=False).encode() if memory is not None else b"no memory"]
    return _sha256(b"\0".join(_sha256(p).encode() for p in parts))[:16]


# ----- translating --------------------------------------------------------------------------
def translate_lines(translator: Translator, sources: list[str], source: str,
                    target: str) -> tuple[list[str], float, dict]:
    """Each line its own segment, all in one engine request (as a file would be); the
    translator keeps the layout, so the result is split at the line breaks again. The
    hypotheses, the seconds and the engine's metrics of the request."""
    started = time.perf_counter()
    result = translator.translate("\n".join(" ".join(s.split()) for s in sources), target, source=source)
    lines = result.text.split("\n")
    assert len(lines) == len(sources), (len(lines), len(sources))
    return [line.strip() for line in lines], time.perf_counter() - started, result.metrics


def translate_chunk(translator: Translator, sources: list[str], direction: str) -> tuple[list[str], float]:
    hyps, seconds, _metrics = translate_lines(translator, sources, *(CODES[c] for c in direction.split("-")))
    return hyps, seconds


def run(translator: Translator, sources: list[str], target: str, with_metrics: bool = False):
    """English lines into ``target`` (two-letter code) in one request: (hypotheses, seconds), with
    ``with_metrics`` also the engine's metrics (benchmarks/translation_adapter.py scores this way)."""
    hyps, seconds, metrics = translate_lines(translator, sources, "en", target)
    return (hyps, seconds, metrics) if with_metrics else (hyps, seconds)


def run_cell(translator_for, cache: HypothesisCache, pairs: list[tuple[str, str]], indices: list[int],
             direction: str) -> dict:
    """Translate the lines of ``indices`` not in ``cache``, chunk by chunk; the cell's figures."""
    todo = [i for i in indices if cache.get(i, pairs[i][0]) is None]
    from_cache = len(indices) - len(todo)
    seconds_now = 0.0
    load_max = os.getloadavg()[0]
    for start in range(0, len(todo), CHUNK):
        chunk = todo[start: start + CHUNK]
        hyps, seconds = translate_chunk(translator_for(), [pairs[i][0] for i in chunk], direction)
        seconds_now += seconds
        cache.add([{"i": i, "src": pairs[i][0], "hyp": h, "s": round(seconds / len(chunk), 4)}
                   for i, h in zip(chunk, hyps)])
        load_max = max(load_max, os.getloadavg()[0])
        print(f"  {len(indices) - len(todo) + start + len(chunk)}/{len(indices)} lines "
              f"({seconds / len(chunk):.2f} s/line, load {os.getloadavg()[0]:.2f})", file=sys.stderr, flush=True)
    lines = [cache.get(i, pairs[i][0]) for i in indices]
    hyps = [line["hyp"] for line in lines]
    seconds = sum(line["s"] for line in lines)
    chrf = sacrebleu.corpus_chrf(hyps, [[pairs[i][1] for i in indices]]).score
    return {"chrf": round(chrf, 2), "lines": len(indices), "seconds": round(seconds, 1),
            "seconds_per_line": round(seconds / max(1, len(indices)), 3), "seconds_this_run": round(seconds_now, 1),
            "lines_from_cache": from_cache, "load_average_1m_max": round(load_max, 2)}


def stamp() -> dict:
    """Date, commit and 1-minute load average now (benchmarks/record.py's one way)."""
    line = results_line(BENCHMARK, {}, {}, False)
    return {k: line[k] for k in ("date", "commit", "load_average_1m")}


# ----- table and results line ---------------------------------------------------------------
def _cell_rows(cells: dict) -> list[tuple]:
    """One row per (part, set, direction, limit) with the two conditions side by side."""
    rows: dict[tuple, dict] = {}
    for key, cell in cells.items():
        set_name, direction, condition, part, *rest = key.split("/")
        rows.setdefault((part, set_name, direction, rest[0] if rest else ""), {})[condition] = cell
    order = {p: n for n, p in enumerate(PARTS)}
    return sorted(((k, v) for k, v in rows.items()),
                  key=lambda kv: (order.get(kv[0][0], 9), list(SETS).index(kv[0][1]) if kv[0][1] in SETS else 9,
                                  DIRECTIONS.index(kv[0][2]) if kv[0][2] in DIRECTIONS else 9, kv[0][3]))


def table(cells: dict) -> str:
    header = ("part", "set", "direction", "lines", "none", "memory", "diff", "target", "s/l none", "s/l mem")
    out = [" | ".join(f"{h:>11}" for h in header)]
    for (part, set_name, direction, limit), by in _cell_rows(cells):
        none, memory = by.get("none"), by.get("memory")
        lines = sorted({c["lines"] for c in by.values()})
        target = TARGETS.get(direction) if set_name == TARGET_SET else None
        values = (part, set_name, direction + (f" {limit}" if limit else ""), "/".join(map(str, lines)),
                  none["chrf"] if none else "-", memory["chrf"] if memory else "-",
                  round(memory["chrf"] - none["chrf"], 2) if none and memory else "-",
                  target if target is not None else "",
                  none["seconds_per_line"] if none else "-", memory["seconds_per_line"] if memory else "-")
        out.append(" | ".join(f"{v:>11.2f}" if isinstance(v, float) else f"{v!s:>11}" for v in values))
    return "\n".join(out)


def figures_and_met(cells: dict) -> tuple[dict, dict, bool | None]:
    """chrF of every cell as ``chrf_SET_DIR_CONDITION_PART[_firstN]``; the targets; met: every
    target cell present with all its lines and at or above its target (None until all are)."""
    figures = {"chrf_" + key.replace("/", "_").replace("-", "_"): cell["chrf"] for key, cell in cells.items()}
    targets = {f"chrf_{TARGET_SET}_{d.replace('-', '_')}_{TARGET_CONDITION}_{TARGET_PART}": v
               for d, v in TARGETS.items()}
    met: bool | None = True
    for direction, target in TARGETS.items():
        cell = cells.get(cell_key(TARGET_SET, direction, TARGET_CONDITION, TARGET_PART))
        if cell is None or cell["lines"] != TARGET_LINES:
            met = None
            break
        met = met and cell["chrf"] >= target
    return figures, targets, met


# ----- main ---------------------------------------------------------------------------------
def _choices(text: str, allowed: tuple | list, what: str) -> list[str]:
    chosen = [t.strip() for t in text.split(",") if t.strip()]
    wrong = [t for t in chosen if t not in allowed]
    if wrong or not chosen:
        raise SystemExit(f"--{what}: choose among {', '.join(allowed)} (got {text!r})")
    return chosen


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--part", choices=PARTS, default="scored")
    parser.add_argument("--sets", default=",".join(SETS))
    parser.add_argument("--directions", default=",".join(DIRECTIONS))
    parser.add_argument("--conditions", default=",".join(CONDITIONS))
    parser.add_argument("--limit", type=int, default=0, help="only the first N lines of the part (a cell of its own)")
    parser.add_argument("--work", type=Path, default=None, help="folder keeping hypotheses, so a stopped run resumes")
    parser.add_argument("--results", type=Path, default=DEFAULT_RESULTS, help="results file the cells are merged into")
    parser.add_argument("--replace", action="store_true", help="run cells the results file already holds again")
    args = parser.parse_args(argv)
    sets = _choices(args.sets, list(SETS), "sets")
    directions = _choices(args.directions, DIRECTIONS, "directions")
    conditions = _choices(args.conditions, CONDITIONS, "conditions")

    engine_stack = contextlib.ExitStack()
    started: dict = {}

    def make_translator(memory: TranslationMemory) -> Translator:
        """The app's translator over one engine, started at the first line to translate (a run
        whose lines are all in the work folder or the results file needs none)."""
        if not started:
            from engine.client import EngineClient
            from engine.settings import EngineSettings

            models_dir = default_paths().ensure().models_dir
            started["model"] = str(model_pack.join_parts(model_pack.GEMMA3, models_dir))
            # As the app configures its engine: wide batches run on the F16 copy (engine.fast_prefill).
            started["engine"] = engine_stack.enter_context(EngineClient(EngineSettings(
                prefill_copies_dir=str(models_dir / "fast-prefill"))))
            # Untimed: starting the worker, loading the model (and its copy, which a batch of
            # MIN_BATCH_ITEMS segments makes and loads) and making the batch context would
            # otherwise count as the first cell's translation time.
            Translator(started["engine"], _Library(started["model"])).translate(
                "\n".join(["Good morning."] * fast_prefill.MIN_BATCH_ITEMS), "fr", source="en")
        return Translator(started["engine"], _Library(started["model"]), memory=memory)

    model_sha = model_pack.expected_sha256(model_pack.GEMMA3) or "unknown"
    with engine_stack:
        for set_name in sets:
            for direction in directions:
                code3 = other_language(direction)
                test_file = DATA / "translation" / SETS[set_name].format(code3=code3)
                test = load_pairs(test_file, code3)
                pairs = oriented(test, direction)
                indices = part_indices(len(pairs), args.part, args.limit)
                for condition in conditions:
                    key = cell_key(set_name, direction, condition, args.part, args.limit)
                    if key in load_results(args.results)["cells"] and not args.replace:
                        print(f"{key}: in {args.results.name} already (--replace runs it again)", file=sys.stderr)
                        continue
                    memory = TranslationMemory()
                    kept: list[tuple[str, str]] | None = None
                    dropped = 0
                    if condition == "memory":
                        memory_file = DATA / "translation" / "parallel" / f"eng-{code3}.tsv"
                        kept, dropped = memory_pairs(load_pairs(memory_file, code3), test)
                        memory.add_pairs("en", CODES[code3], kept)
                    cache = HypothesisCache(args.work, f"{set_name}-{direction}-{condition}",
                                            fingerprint(model_sha, kept))
                    print(f"{key}: {len(indices)} lines", file=sys.stderr, flush=True)
                    load_start = os.getloadavg()[0]
                    figures = run_cell(lambda memory=memory: make_translator(memory), cache, pairs, indices, direction)
                    cell = {"set": set_name, "direction": direction, "condition": condition, "part": args.part,
                            "limit": args.limit or None, **figures,
                            "memory_pairs": len(kept or []),
                            "memory_pairs_dropped_as_test_lines": dropped,
                            "fingerprint": cache.fingerprint, "load_average_1m_start": round(load_start, 2),
                            **stamp()}
                    store_cell(args.results, key, cell, args.replace)
                    print(f"{key}: chrF {cell['chrf']:.2f} on {cell['lines']} lines, {cell['seconds']:.0f} s "
                          f"({cell['lines_from_cache']} lines from {args.work or 'no work folder'})",
                          file=sys.stderr, flush=True)

    cells = load_results(args.results)["cells"]
    print(f"\n{args.results}: {len(cells)} cells; targets on {TARGET_SET}, part {TARGET_PART}, "
          f"condition {TARGET_CONDITION}")
    print(table(cells))
    figures, targets, met = figures_and_met(cells)
    print(json.dumps({**results_line(BENCHMARK, figures, targets, bool(met), part=args.part),
                      "met": met, "results": str(args.results)}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
