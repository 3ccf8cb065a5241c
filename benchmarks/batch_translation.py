"""Batch translation of a 150-line file: lines/s and chrF on the model's own weights against its
F16 copy (engine.fast_prefill), side by side in one run, with the share of the machine's
matrix-multiply peak each reaches.

What is timed: `assistant.tasks.translation.Translator` as the app runs it on the default
translation model (Gemma 3 270M, Q4_K_M), no memory, one file of 150 English news sentences
into French (``--target de|es``: German or Spanish, results named with the language), each
line a segment of one engine request (``translate`` of the whole text, as the Translate page
does with a file). Two engine workers, one after the other:

* ``model``: the engine with no fast copies (``fast_prefill=False``): every batch runs on the
  Q4_K_M weights, as before the copy existed;
* ``copy``: the engine as the app configures it (a copies folder): a batch of
  ``engine.fast_prefill.MIN_BATCH_ITEMS`` or more segments runs on an F16 copy of the same
  weights — for Latin-script text (the translator asks for it; every line here is) the copy
  whose vocabulary keeps only Latin-script tokens (engine.vocab_cut), else the full one. The
  copies are made before the clock starts; making them is timed on its own and printed (the app
  makes them once, on the first wide batch).

Each worker first translates the first 8 lines of the development part (loads the model and,
for ``copy``, the copy), then the 150 timed lines once. Lines: newstest2013
(``../shared/data/translation/news/newstest2013-eng-XXX.tsv``), split as in
``benchmarks/translation_quality.py`` (0-based even lines development, odd lines scored; fixed
before any run); ``--part`` picks which part's first 150 lines are the file. Settings (the
copy's formats and ``MIN_BATCH_ITEMS``) are chosen on the development part; the scored part
is run once.

Machine limit: GFLOP of each request from the engine's own token counts (prefix evaluated,
items' tokens, generated tokens: ``benchmarks.machine_limits.batch_gflop``) over its seconds,
against the GEMM peak measured in the same run while the engine is idle.

    python benchmarks/batch_translation.py [--part development|scored] [--lines 150]

Prints one JSON line and writes it to ``benchmarks/results/batch_translation.json``
(``batch_translation_development.json`` for the development part).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine import privacy  # noqa: E402

privacy.install()

import sacrebleu  # noqa: E402

from assistant.tasks.translation import TranslationMemory, Translator  # noqa: E402
from benchmarks import machine_limits  # noqa: E402
from benchmarks.record import report  # noqa: E402
from benchmarks.translation_quality import DATA, _Library, load_pairs, part_indices  # noqa: E402
from engine import fast_prefill, model_pack  # noqa: E402
from engine.client import EngineClient  # noqa: E402
from engine.settings import EngineSettings  # noqa: E402

BENCHMARK = "batch_translation"
NEWS = DATA / "translation" / "news" / "newstest2013-eng-{code3}.tsv"
TARGETS3 = {"fr": "fra", "de": "deu", "es": "spa"}
WARM_UP_LINES = 8
#: The issue's targets: at least twice the lines/s, chrF within 0.5 of the model's own.
TARGET_SPEEDUP = 2.0
TARGET_CHRF_DROP = 0.5


def translate_file(translator: Translator, sources: list[str], target: str) -> tuple[list[str], float, dict]:
    """One request for the whole file; the lines, the seconds and the engine's metrics."""
    started = time.perf_counter()
    result = translator.translate("\n".join(" ".join(s.split()) for s in sources), target, source="en")
    seconds = time.perf_counter() - started
    lines = [line.strip() for line in result.text.split("\n")]
    if len(lines) != len(sources):
        raise RuntimeError(f"{len(sources)} lines went in and {len(lines)} came back")
    return lines, seconds, result.metrics


def run_condition(name: str, settings: EngineSettings, model: str, warm_up: list[str], sources: list[str],
                  references: list[str], target: str, shape: dict) -> dict:
    with EngineClient(settings) as engine:
        translator = Translator(engine, _Library(model), memory=TranslationMemory())
        translate_file(translator, warm_up, target)
        load_before = os.getloadavg()[0]
        hypotheses, seconds, metrics = translate_file(translator, sources, target)
    if metrics.get("copy_vocabulary"):  # a cut copy's head has fewer rows
        shape = {**shape, "n_vocab": int(metrics["copy_vocabulary"])}
    gflop = machine_limits.batch_gflop(shape, metrics.get("prefix_tokens_evaluated", 0), metrics.get("item_tokens", 0),
                                       metrics.get("generated_tokens", 0), len(sources))
    figures = {"seconds": round(seconds, 2), "lines_per_s": round(len(sources) / seconds, 3),
               "chrf": round(sacrebleu.corpus_chrf(hypotheses, [references]).score, 2),
               "by_fast_copy": bool(metrics.get("by_fast_copy")), "copy_vocabulary": metrics.get("copy_vocabulary"),
               "prefix_tokens_evaluated": metrics.get("prefix_tokens_evaluated"),
               "item_tokens": metrics.get("item_tokens"), "generated_tokens": metrics.get("generated_tokens"),
               "gflop": round(gflop, 1), "gflops": round(gflop / seconds, 1),
               "load_average_1m_before": round(load_before, 2), "load_average_1m_after": round(os.getloadavg()[0], 2)}
    print(f"{name}: {seconds:.1f} s, {figures['lines_per_s']:.2f} lines/s, chrF {figures['chrf']:.2f}, "
          f"{figures['gflops']:.1f} GFLOP/s, on the copy: {figures['by_fast_copy']}, "
          f"load {figures['load_average_1m_before']:.2f} -> {figures['load_average_1m_after']:.2f}", flush=True)
    return {"figures": figures, "hypotheses": hypotheses}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=("development", "scored"), default="scored")
    parser.add_argument("--lines", type=int, default=150)
    parser.add_argument("--target", choices=sorted(TARGETS3), default="fr",
                        help="the language translated into (the issue's figure is French)")
    args = parser.parse_args(argv)

    code3 = TARGETS3[args.target]
    pairs = load_pairs(Path(str(NEWS).format(code3=code3)), code3)
    chosen = [pairs[i] for i in part_indices(len(pairs), args.part, args.lines)]
    warm_up = [pairs[i][0] for i in part_indices(len(pairs), "development", WARM_UP_LINES)]
    sources, references = [s for s, _ in chosen], [t for _, t in chosen]
    work = Path(tempfile.mkdtemp(prefix="batch-translation-"))
    pack = model_pack.prepare_pack(work / "models")
    model = str(pack[model_pack.GEMMA3.id])
    copies = work / "copies"
    started = time.perf_counter()
    copy = fast_prefill.ensure_copy(model, copies)
    latin = fast_prefill.ensure_latin_copy(model, copies)
    copy_seconds = time.perf_counter() - started
    shape = machine_limits.model_shape(model)
    # The peak on the shapes of one step of the batch (31 sequences side by side), engine idle.
    limits = machine_limits.measure_machine(machine_limits.model_gemm_shapes(shape, 32), bandwidth=False)
    print(limits.describe(), flush=True)
    print(f"F16 copies made in {copy_seconds:.1f} s ({copy.stat().st_size / 1e6:.0f} MB full, "
          f"{latin.stat().st_size / 1e6:.0f} MB cut)", flush=True)

    results = {}
    for name, settings in (("model", EngineSettings(fast_prefill=False)),
                           ("copy", EngineSettings(prefill_copies_dir=str(copies)))):
        results[name] = run_condition(name, settings, model, warm_up, sources, references, args.target, shape)
    base, fast = results["model"]["figures"], results["copy"]["figures"]
    speedup = fast["lines_per_s"] / base["lines_per_s"]
    chrf_drop = base["chrf"] - fast["chrf"]
    peak = limits.gemm_gflops
    identical = sum(a == b for a, b in zip(results["model"]["hypotheses"], results["copy"]["hypotheses"]))
    figures = {"lines": len(sources), "speedup": round(speedup, 3), "chrf_drop": round(chrf_drop, 2),
               "identical_lines": identical, "model": base, "copy": fast,
               "fraction_of_gemm_peak": {name: round(r["figures"]["gflops"] / peak, 3) for name, r in results.items()},
               "copy_made_seconds": round(copy_seconds, 1), "copy_bytes": copy.stat().st_size,
               "cut_copy_bytes": latin.stat().st_size}
    met = speedup >= TARGET_SPEEDUP and chrf_drop <= TARGET_CHRF_DROP and fast["by_fast_copy"]
    print(f"speed-up {speedup:.3f}x (target {TARGET_SPEEDUP}x), chrF {base['chrf']:.2f} -> {fast['chrf']:.2f} "
          f"(drop {chrf_drop:+.2f}, at most {TARGET_CHRF_DROP}), {identical}/{len(sources)} lines identical; "
          f"{fast['gflops'] / peak:.3f} / {base['gflops'] / peak:.3f} of the {peak:.1f} GFLOP/s peak", flush=True)
    report(BENCHMARK, figures, {"speedup": TARGET_SPEEDUP, "chrf_drop_at_most": TARGET_CHRF_DROP}, met,
           name=BENCHMARK + ("" if args.part == "scored" else "_development") + ("" if args.target == "fr" else f"_{args.target}"),
           part=args.part, target=args.target,
           machine=limits.record())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
