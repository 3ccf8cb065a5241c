"""Writing-suggestion latency: from a pause in typing to the suggestion being ready.

Types two hand-written texts word by word through `assistant.tasks.suggestions.Suggester`, the
path the window uses (engine worker, default completion model SmolLM2, up to 6 greedy
tokens); at every word boundary it asks for a suggestion and measures request -> result.

Baseline side by side: the same requests, but alternating between the two texts, so that
no request finds its prompt in the engine's KV cache (what a suggester without prompt
re-use would pay on every keystroke).

    python benchmarks/suggest_latency.py [--rounds 1]

Prints a table, then one JSON line.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine import privacy  # noqa: E402

privacy.install()

from assistant.tasks.suggestions import MAX_TOKENS, Suggester  # noqa: E402
from engine import model_pack  # noqa: E402
from engine.client import EngineClient  # noqa: E402
from engine.settings import EngineSettings  # noqa: E402
from benchmarks.record import report  # noqa: E402

TEXTS = [
    "Hi Sarah, thanks for sending the notes from yesterday's meeting. I have read them carefully and I think "
    "we should move the launch to the first week of next month, because the testing team still needs more time "
    "to finish their work. Could you let me know what you think before Friday?",
    "The old lighthouse stood at the edge of the cliff for more than a hundred years. Every night the keeper "
    "climbed the narrow stairs to light the lamp, and every morning he wrote a short note about the weather "
    "and the ships that had passed during the night.",
]


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def prefixes(text: str) -> list[str]:
    """The text before the cursor at each pause: after every word, as a typist pauses."""
    out = []
    for i, ch in enumerate(text):
        if ch == " ":
            out.append(text[: i + 1])
    return out


def measure(suggester: Suggester, prompts: list[str]) -> tuple[list[float], list[int]]:
    latencies, tokens = [], []
    for prompt in prompts:
        started = time.perf_counter()
        suggestion = suggester.suggest(prompt)
        latencies.append((time.perf_counter() - started) * 1000.0)
        tokens.append(int(suggestion.metrics.get("completion_tokens", 0)))
    return latencies, tokens


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    model = str(model_pack.locate(model_pack.SMOLLM2, Path("/nonexistent")))
    typed = [p for text in TEXTS for p in prefixes(text)]
    a, b = prefixes(TEXTS[0]), prefixes(TEXTS[1])
    alternating = [x for pair in zip(a, b) for x in pair]
    with EngineClient(EngineSettings()) as engine:
        suggester = Suggester(engine, model)
        suggester.suggest("Warm-up.")  # model load is not a keystroke
        cached, cold, cached_tokens = [], [], []
        for _ in range(args.rounds):
            lat, toks = measure(suggester, typed)
            cached += lat
            cached_tokens += toks
            cold += measure(suggester, alternating)[0]
    figures = {
        "p50_ms": round(pct(cached, 0.5), 1),
        "p95_ms": round(pct(cached, 0.95), 1),
        "baseline_no_cache_p50_ms": round(pct(cold, 0.5), 1),
        "baseline_no_cache_p95_ms": round(pct(cold, 0.95), 1),
        "p50_ratio_baseline_over_cached": round(pct(cold, 0.5) / pct(cached, 0.5), 2),
        "max_tokens": MAX_TOKENS,
        "mean_tokens": round(sum(cached_tokens) / len(cached_tokens), 2),
        "requests": len(cached),
    }
    print(f"{'suggester':<32} | {'p50 ms':>8} | {'p95 ms':>8} | requests")
    print(f"{'prompt cache re-used':<32} | {figures['p50_ms']:>8.1f} | {figures['p95_ms']:>8.1f} | {len(cached)}")
    print(f"{'baseline: no cache re-use':<32} | {figures['baseline_no_cache_p50_ms']:>8.1f} | "
          f"{figures['baseline_no_cache_p95_ms']:>8.1f} | {len(cold)}")
    report("suggest_latency", figures, {"p50_ms": 150}, figures["p50_ms"] < 150)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
