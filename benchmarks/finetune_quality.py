"""Fine-tune quality: does one epoch of the balanced LoRA preset on a user's documents lower
held-out perplexity, measured through llama.cpp on the GGUF the user runs?

The corpus (the 14 typing PEPs of ``../shared/data/documents/typing-peps``, sorted by number)
is split in code into two disjoint halves, fixed before any run: half A the 1st, 3rd, 5th, ...
PEP, half B the 2nd, 4th, 6th, .... The benchmark fine-tunes once on each half, the same way,
and reports both: one half alone could be a lucky or unlucky draw of documents. Within a half
the job's own split holds out whole documents (never trained on).

Each job runs as the app runs it (``python -m training.run JOB.json``, a child process):
SmolLM2 135M from the installed GGUF, one epoch, balanced preset. The adapter is exported by
``training.export.lora_gguf`` and the held-out documents are scored with
``training.evaluate.gguf_perplexity`` on the base GGUF alone (the baseline) and with the
adapter GGUF, side by side in the same run.

    python benchmarks/finetune_quality.py [--max-steps 0] [--work DIR]

Prints a table per half, then one JSON line (written to benchmarks/results/finetune_quality.json).
Target: perplexity lower by at least 20 % on each half.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine import privacy  # noqa: E402

privacy.install()

from engine import model_pack  # noqa: E402
from benchmarks.record import report  # noqa: E402

DATA = Path(os.environ.get("ASSISTANT_SHARED_DATA", ROOT / ".." / "shared" / "data")).resolve()
TARGET_REDUCTION = 0.20


def run_job(job_file: Path, out=sys.stdout) -> dict | None:
    """Run ``python -m training.run job_file`` as the app does, print its progress to ``out``
    (every 10th step, messages), return its last event (``{"event": "done", "result": …}``)."""
    proc = subprocess.Popen([sys.executable, "-m", "training.run", str(job_file)], cwd=ROOT,
                            stdout=subprocess.PIPE, text=True)
    final = None
    for line in proc.stdout:
        event = json.loads(line)
        if event["event"] == "step" and (event["step"] % 10 == 0 or event["step"] == event["total_steps"]):
            print(f"step {event['step']}/{event['total_steps']} loss {event['loss']:.3f} "
                  f"{event['tokens_per_s']:.0f} tokens/s eta {event['eta_s']:.0f}s", file=out, flush=True)
        elif event["event"] in ("message", "start"):
            print(json.dumps(event), file=out, flush=True)
        final = event
    proc.wait()
    return final


#: The two disjoint halves of the corpus, fixed in code before any run (see the docstring).
HALVES = {"A": slice(0, None, 2), "B": slice(1, None, 2)}
EVAL_FRACTION = 0.25


def fine_tune_half(name: str, files: list[Path], base: Path, work: Path, args) -> dict:
    """One fine-tune on ``files`` and its held-out perplexity before and after; the figures."""
    from assistant.config import default_paths
    from training.evaluate import gguf_perplexity

    work.mkdir(parents=True, exist_ok=True)
    job = {"kind": "lora", "base_gguf": str(base),
           "cache_root": str(default_paths().data_dir / "training" / "base-cache"),
           "output_dir": str(work / "run"), "preset": "balanced",
           "dataset": {"type": "text_files", "paths": [str(f) for f in files]},
           # Public PEPs: the job keeps their held-out part for this script to score (the app never asks).
           "held_out_path": str(work / "held-out-peps.jsonl"),
           "settings": {"eval_fraction": EVAL_FRACTION, "max_steps": args.max_steps}}
    job_file = work / "job.json"
    job_file.write_text(json.dumps(job, indent=2), encoding="utf-8")
    started = time.perf_counter()
    final = run_job(job_file)
    train_s = time.perf_counter() - started
    if final is None or final["event"] != "done":
        raise RuntimeError(f"half {name}: training failed: {final}")
    result = final["result"]
    if not result.get("adapter_gguf"):
        raise RuntimeError(f"half {name}: no adapter.gguf, so the benchmark cannot measure through llama.cpp")
    texts = [json.loads(line)["text"] for line in Path(result["held_out"]).read_text(encoding="utf-8").splitlines()]
    before = gguf_perplexity(base, texts, ctx=args.ctx)
    after = gguf_perplexity(base, texts, ctx=args.ctx, lora_path=Path(result["adapter_gguf"]))
    reduction = 1.0 - after / before
    data = json.loads((Path(result["output_dir"]) / "data.json").read_text())
    print(f"half {name}: {[f.stem for f in files]}")
    print(f"{'':<28}{'perplexity':>12}")
    print(f"{'base GGUF (llama.cpp)':<28}{before:>12.3f}")
    print(f"{'base + LoRA adapter GGUF':<28}{after:>12.3f}")
    print(f"reduction {reduction:.1%}; torch eval loss {result['eval_loss_before']:.3f} -> {result['eval_loss_after']:.3f}; "
          f"{result['steps']} steps, {result['tokens_per_s']:.0f} tokens/s, {data}")
    return {"documents": [f.stem for f in files], "perplexity_before": round(before, 3),
            "perplexity_after": round(after, 3), "perplexity_reduction": round(reduction, 4),
            "steps": result["steps"], "train_tokens_per_s": result["tokens_per_s"], "train_s": round(train_s, 1),
            "torch_perplexity_before": round(result["perplexity_before"], 3),
            "torch_perplexity_after": round(result["perplexity_after"], 3),
            "held_out_documents": data.get("eval_documents")}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-steps", type=int, default=0, help="cap on steps (0 = one full epoch)")
    parser.add_argument("--ctx", type=int, default=512, help="llama.cpp perplexity window")
    parser.add_argument("--work", type=Path, default=None, help="job folders (default: a temporary one)")
    args = parser.parse_args()

    base = model_pack.locate(model_pack.SMOLLM2, Path("/nonexistent"))
    if base is None:
        print("the default model pack (SmolLM2) is missing", file=sys.stderr)
        return 1
    corpus = sorted((DATA / "documents" / "typing-peps").glob("*.rst"))
    work = args.work or Path(tempfile.mkdtemp(prefix="finetune-quality-"))
    figures = {}
    for name, part in HALVES.items():
        try:
            figures[f"half_{name}"] = fine_tune_half(name, corpus[part], base, work / f"half-{name}", args)
        except RuntimeError as exc:
            print(exc, file=sys.stderr)
            report("finetune_quality", figures, {"perplexity_reduction": TARGET_REDUCTION}, False)
            return 1
    met = all(half["perplexity_reduction"] >= TARGET_REDUCTION for half in figures.values())
    report("finetune_quality", figures, {"perplexity_reduction_each_half": TARGET_REDUCTION}, met)
    return 0


if __name__ == "__main__":
    sys.exit(main())
