"""Quantization lab: one model in F16, Q8_0, Q5_0, Q4_K_M, Q4_1 (and as shipped), side by side.

For each type, through llama.cpp: file size, decode tokens/s (median of interleaved runs),
perplexity on held-out text, next-token agreement with F16. Target (issue 8): Q8_0
perplexity within 2% of F16; the table covers every type.

Held-out text: PEPs from ``../shared/data/documents/typing-peps/`` that no default model was
trained on by this project (the lab trains nothing; the default models are used as shipped).
The default models ship quantized (SmolLM2 Q4_1, Gemma 3 Q4_K_M), so the F16 reference is
the shipped model dequantized and the other types are requantized from it: the figures
measure what each type costs relative to that F16, not quantization of the original
full-precision weights (which are not on the machine). The JSON says so.

    python benchmarks/quantization_lab.py [--model smollm2|gemma3|PATH.gguf] [--tokens N]
        [--threads N] [--out DIR]

Prints a table, then one JSON line.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine import privacy  # noqa: E402

privacy.install()

from engine import model_pack  # noqa: E402
from training.quantize import QUANT_TYPES  # noqa: E402
from training.quantize.lab import LabConfig, run_lab  # noqa: E402
from benchmarks import machine_limits  # noqa: E402
from benchmarks.record import report  # noqa: E402

DATA = Path(os.environ.get("ASSISTANT_SHARED_DATA", ROOT / ".." / "shared" / "data")).resolve()
#: Held-out documents: the last two PEPs of the corpus by number.
HELD_OUT = ("pep-0613.rst", "pep-0646.rst")


def _model(name: str, work: Path) -> Path:
    if name == "smollm2":
        path = model_pack.locate(model_pack.SMOLLM2, work)
    elif name == "gemma3":
        path = model_pack.join_parts(model_pack.GEMMA3, work)
    else:
        path = Path(name)
    if path is None or not Path(path).is_file():
        raise SystemExit(f"model not found: {name}")
    return Path(path)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--tokens", type=int, default=4096, help="held-out tokens scored per type")
    parser.add_argument("--speed-repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="llama.cpp threads (0: one per core)")
    parser.add_argument("--out", type=Path, default=None, help="keep the files here (default: a temp folder)")
    args = parser.parse_args()

    peps = DATA / "documents" / "typing-peps"
    files = [peps / name for name in HELD_OUT if (peps / name).is_file()]
    if not files:
        files = sorted(peps.glob("*.rst"))[-2:]
    texts = [f.read_text(encoding="utf-8") for f in files]
    config = LabConfig(max_eval_tokens=args.tokens, speed_repeats=args.speed_repeats, threads=args.threads or None)

    with tempfile.TemporaryDirectory(prefix="quant-lab-") as tmp:
        out = args.out or Path(tmp)
        model = _model(args.model, Path(tmp))
        results = run_lab(model, texts, out, config,
                          progress=lambda stage, done, total: print(f"[{done}/{total}] {stage}", file=sys.stderr, flush=True))
        # Decode streams each type's weights once a token: its bytes of weights read per second
        # against the memory bandwidth measured now, with the lab's thread count
        # (benchmarks/machine_limits.py); read before the files go with the temporary folder.
        weight_bytes = {r["label"]: machine_limits.model_shape(r["path"])["decode_weight_bytes"] for r in results["rows"]}
        limits = machine_limits.measure_machine(gemm=False, threads=args.threads or None)

    rows = {r["label"]: r for r in results["rows"]}
    print(f"model: {model.name}; reference: {results['reference_kind']}")
    print(f"held-out text: {', '.join(f.name for f in files)}; {results['eval']['tokens_scored']} tokens scored, "
          f"ctx {results['eval']['ctx']}")
    print(results["table"])
    shares = {label: machine_limits.decode_bandwidth_fraction(row["tokens_per_s"], weight_bytes[label],
                                                              limits.bandwidth_gb_per_s)
              for label, row in rows.items() if row["tokens_per_s"]}
    print("decode, share of the memory bandwidth: "
          + ", ".join(f"{label} {share:.1%}" for label, share in shares.items()))
    print(limits.describe())
    for note in results["notes"]:
        print("note:", note)
    figures: dict = {}
    for label, row in rows.items():
        key = label.lower().replace(" ", "_").replace("(", "").replace(")", "")
        figures[f"{key}_file_mb"] = round(row["file_bytes"] / 1e6, 2)
        figures[f"{key}_tokens_per_s"] = row["tokens_per_s"]
        figures[f"{key}_decode_weight_mb"] = round(weight_bytes[label] / 1e6, 2)
        figures[f"{key}_decode_fraction_of_bandwidth"] = round(shares[label], 3) if label in shares else None
        figures[f"{key}_perplexity"] = round(row["perplexity"], 4)
        figures[f"{key}_perplexity_ratio"] = round(row["perplexity_ratio"], 4)
        figures[f"{key}_next_token_agreement"] = round(row["agreement"], 4)
    figures["tokens_scored"] = results["eval"]["tokens_scored"]
    figures["machine_bandwidth_gb_per_s"] = round(limits.bandwidth_gb_per_s, 2)
    q8_ratio = rows["Q8_0"]["perplexity_ratio"]
    figures["q8_0_perplexity_ratio_to_f16"] = round(q8_ratio, 4)
    covered = all(t in rows for t in QUANT_TYPES)
    targets = {"q8_0_perplexity_ratio_to_f16_max": 1.02, "types": list(QUANT_TYPES)}
    met = bool(q8_ratio <= 1.02 and covered)
    report("quantization_lab", figures, targets, met, model=model.name, reference=results["reference_kind"],
           machine=limits.record())
    return 0


if __name__ == "__main__":
    sys.exit(main())
