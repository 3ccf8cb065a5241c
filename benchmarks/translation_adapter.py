"""Translation adapter: does a LoRA trained on a translation memory raise chrF over the
translator's few-shot prompt?

The adapter is trained as the app trains one (``python -m training.run JOB.json``, a child
process; the Train page's "translation memory" source): Gemma 3 270M (the translator's
model) from the installed GGUF, the balanced preset, on the English->French pairs of
``../shared/data/translation/parallel/eng-fra.tsv`` in the translator's prompt format. Pairs
whose English sentence is also among the scored Tatoeba lines are removed first (~10% of
the scored sentences recur there with other translations), so nothing scored is trained on.
``--max-steps`` caps the run (a full epoch of the 12k pairs is 300 steps).

Scored side by side in one run, on ``tatoeba-eng-fra.tsv`` through the app's
``assistant.tasks.translation.Translator`` and the engine (llama.cpp), chrF by sacrebleu:

* few-shot      - the translator's 8 fixed example pairs, no memory: the few-shot baseline
                  of the translation benchmark (its column "fixed 8").
* few-shot+LoRA - the same prompt with the adapter GGUF applied (what "use for
                  translation" on the Train page gives). Target: +5 chrF over few-shot.
* memory        - the 8 fixed pairs plus the 4 nearest pairs of the (filtered) memory,
                  the translator's full method, and memory+LoRA: both together.

    python benchmarks/translation_adapter.py [--max-steps 150] [--limit 500] [--work DIR]

Prints a table, then one JSON line (written to benchmarks/results/translation_adapter.json).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from engine import privacy  # noqa: E402

privacy.install()

import sacrebleu  # noqa: E402
from finetune_quality import run_job  # noqa: E402
from translation_quality import DATA, _Library, load_pairs, normalise, run  # noqa: E402

from assistant.config import default_paths  # noqa: E402
from assistant.tasks.translation import TranslationMemory, Translator  # noqa: E402
from engine import model_pack  # noqa: E402
from engine.client import EngineClient  # noqa: E402
from engine.settings import EngineSettings  # noqa: E402
from benchmarks.record import report  # noqa: E402

TARGET_GAIN = 5.0


def train(gemma: str, memory_file: Path, work: Path, max_steps: int) -> dict:
    """Run the LoRA job in its own process, print its progress, return its result."""
    job = {"kind": "lora", "base_gguf": gemma,
           "cache_root": str(default_paths().data_dir / "training" / "base-cache"),
           "output_dir": str(work / "run"), "preset": "balanced",
           "dataset": {"type": "translation_memory", "path": str(memory_file), "source": "en", "target": "fr"},
           "settings": {"max_steps": max_steps, "eval_fraction": 0.02}}
    job_file = work / "job.json"
    job_file.write_text(json.dumps(job, indent=2), encoding="utf-8")
    final = run_job(job_file, out=sys.stderr)
    if final is None or final["event"] != "done" or not final["result"].get("adapter_gguf"):
        raise SystemExit(f"training failed: {final}")
    return final["result"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-steps", type=int, default=150, help="training steps (batch 4 x 256 tokens)")
    parser.add_argument("--limit", type=int, default=500, help="score the first N of the 500 Tatoeba lines")
    parser.add_argument("--work", type=Path, default=None, help="job folder (default: a temporary one)")
    parser.add_argument("--adapter", type=Path, default=None, help="score this adapter GGUF instead of training")
    args = parser.parse_args()

    gemma = str(model_pack.join_parts(model_pack.GEMMA3, default_paths().ensure().models_dir))
    work = args.work or Path(tempfile.mkdtemp(prefix="translation-adapter-"))
    work.mkdir(parents=True, exist_ok=True)
    test = load_pairs(DATA / "translation" / "tatoeba-eng-fra.tsv", "fra")[: args.limit]
    scored = {normalise(s) for s, _ in load_pairs(DATA / "translation" / "tatoeba-eng-fra.tsv", "fra")}
    pairs = load_pairs(DATA / "translation" / "parallel" / "eng-fra.tsv", "fra")
    kept = [(s, t) for s, t in pairs if normalise(s) not in scored]
    memory_file = work / "eng-fra-train.tsv"
    # Plain lines, as the file came (no quoting: the reader uses csv.QUOTE_NONE).
    memory_file.write_text("eng\tfra\n" + "".join(f"{s}\t{t}\n" for s, t in kept), encoding="utf-8")

    figures: dict = {"pairs_available": len(kept), "pairs_removed_as_scored": len(pairs) - len(kept),
                     "lines": len(test)}
    if args.adapter is None:
        started = time.perf_counter()
        result = train(gemma, memory_file, work, args.max_steps)
        adapter = Path(result["adapter_gguf"])
        figures.update({"train_s": round(time.perf_counter() - started, 1), "steps": result["steps"],
                        "train_tokens_per_s": result["tokens_per_s"],
                        "torch_eval_loss_before": round(result["eval_loss_before"], 4),
                        "torch_eval_loss_after": round(result["eval_loss_after"], 4)})
        data = json.loads((Path(result["output_dir"]) / "data.json").read_text())
        figures["pairs_trained_on"] = round(data["pairs"] * min(1.0, result["steps"] * 4 / max(1, data["train_blocks"])))
    else:
        adapter = args.adapter
    lora = [{"path": str(adapter), "scale": 1.0}]

    memory = TranslationMemory()
    memory.add_pairs("en", "fr", kept)
    sources = [s for s, _ in test]
    refs = [[t for _, t in test]]
    library = _Library(gemma)
    rows = []
    with EngineClient(EngineSettings()) as engine:
        methods = {
            "few-shot": Translator(engine, library, memory=TranslationMemory()),
            "few-shot+LoRA": Translator(engine, library, memory=TranslationMemory(), adapters=lambda _m: lora),
            "memory": Translator(engine, library, memory=memory),
            "memory+LoRA": Translator(engine, library, memory=memory, adapters=lambda _m: lora),
        }
        outputs = {}
        for name, translator in methods.items():
            hyps, seconds = run(translator, sources, "fr")
            outputs[name] = hyps
            chrf = sacrebleu.corpus_chrf(hyps, refs).score
            figures[f"chrf_{name}"] = round(chrf, 2)
            figures[f"seconds_per_line_{name}"] = round(seconds / len(sources), 3)
            rows.append((name, chrf, seconds / len(sources)))
            print(f"{name}: chrF {chrf:.2f}", file=sys.stderr, flush=True)
    for i in range(3):
        print(f"  {sources[i]}\n    few-shot:      {outputs['few-shot'][i]}\n    few-shot+LoRA: {outputs['few-shot+LoRA'][i]}"
              f"\n    reference:     {refs[0][i]}", file=sys.stderr)

    gain = figures["chrf_few-shot+LoRA"] - figures["chrf_few-shot"]
    figures["gain_over_few_shot"] = round(gain, 2)
    figures["gain_over_memory"] = round(figures["chrf_memory+LoRA"] - figures["chrf_memory"], 2)
    print(f"{'method':<16}{'chrF':>8}{'s/line':>9}")
    for name, chrf, per_line in rows:
        print(f"{name:<16}{chrf:>8.2f}{per_line:>9.3f}")
    print(f"gain of the adapter over the few-shot prompt: {gain:+.2f} chrF (target +{TARGET_GAIN})")
    report("translation_adapter", figures, {"gain_over_few_shot": TARGET_GAIN}, gain >= TARGET_GAIN)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
