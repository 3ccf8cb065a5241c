"""Time to the first token of a grounded answer, with and without the fast-prompt copy of the
weights (engine.fast_prefill), and what the hand-over costs in quality.

    .venv/bin/python benchmarks/fast_prefill.py --part development
    .venv/bin/python benchmarks/fast_prefill.py                       # the scored part, once

Runs in its own process with two engine workers of the app (the real llama.cpp, the default
chat model): one with ``fast_prefill`` off (the baseline: the model evaluates its own prompt)
and one with it on; nothing else CPU-heavy should run beside it (the load average is
printed; a run above 2.5 is not a figure). The copy is made before the timed part.

1. Time to first token: the grounded questions of ``benchmarks/data/grounded/questions.json``
   over their three collections, with the passages and messages the app builds
   (:meth:`assistant.documents.grounded.GroundedChat.prepare`), sent to both workers in
   alternating order, greedy, replies of at most ``REPLY_TOKENS``. Each worker's cache is
   emptied between questions by a short unrelated request, so each question's prompt is
   evaluated whole, as a user's first question over a collection is. Figures: median and
   mean TTFT of each, their ratio, prompt tokens, and how many greedy replies are identical.
2. Quality: perplexity of the Q4_1 model on held-out news text (the English side of
   ``translation/news/newstest2013-eng-fra.tsv``, never used by the app) over windows of
   ``CONTEXT`` tokens of context then ``SCORED`` scored tokens: the context's cache computed
   by the model itself or by the copy and handed over; the scored tokens are evaluated by the
   Q4_1 model in both cases. Figure: the perplexity ratio (copy / model) less one.

Split in code: grounded questions as ``benchmarks/grounded_answers.split`` splits them; news
windows 0, 2, 4... development, 1, 3, 5... scored. The settings (``MIN_TOKENS``, the formats
that get a copy) were chosen from measurements of prompt rates, before this benchmark's
first run.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine import privacy  # noqa: E402

privacy.install()

from assistant.app import build_services  # noqa: E402
from assistant.chat.prompt import grounded_chat  # noqa: E402
from assistant.config import AppPaths  # noqa: E402
from assistant.documents.retrieval import Scope  # noqa: E402
from benchmarks.grounded_answers import DATA as GROUNDED_DATA, SHARED, index_collections  # noqa: E402
from benchmarks.grounded_answers import split as split_grounded  # noqa: E402
from benchmarks.record import THROWAWAY_PASSPHRASE, report  # noqa: E402
from engine.client import EngineClient  # noqa: E402
from engine.settings import EngineSettings  # noqa: E402

REPLY_TOKENS = 48
CONTEXT = 1536
SCORED = 256
WINDOWS = 4  # per part: the 500 news lines hold eight windows
NEWS = SHARED / "translation" / "news" / "newstest2013-eng-fra.tsv"
TARGETS = {"ttft_ratio_at_most": 0.6, "perplexity_cost_below": 0.02}
GREEDY = {"temperature": 0.0, "max_tokens": REPLY_TOKENS, "seed": 1}


def ttft(services, part: str, data_ids: dict, questions: list) -> dict:
    model = services.library.for_task("chat").path
    chat = grounded_chat(services, model)
    base = services.settings.engine
    copies = str(services.paths.models_dir / "fast-prefill")
    # Threads fixed: two workers taking turns would each see the other's work as a busy machine.
    workers = {on: EngineClient(EngineSettings.from_dict({**base.to_dict(), "fast_prefill": on, "adapt_threads": False,
                                                          "prefill_copies_dir": copies}))
               for on in (False, True)}
    rows = []
    try:
        for client in workers.values():
            client.start()
            client.chat(model, [{"role": "user", "content": "Hello."}], GREEDY).result()  # load, make the copy
        for i, item in enumerate(questions):
            messages = chat.prepare(item["q"], Scope(collections=[data_ids[item["collection"]]])).messages
            row = {}
            for on in ((False, True) if i % 2 == 0 else (True, False)):
                client = workers[on]
                client.chat(model, [{"role": "user", "content": f"Say {i}."}], {**GREEDY, "max_tokens": 1}).result()
                done = client.chat(model, messages, GREEDY).result()
                row[on] = {"ttft_ms": done["metrics"]["ttft_ms"], "prompt_tokens": done["metrics"]["prompt_tokens"],
                           "text": done["result"]["text"]}
            rows.append(row)
            print(f"{i:2d} {row[False]['prompt_tokens']:5d} tokens: {row[False]['ttft_ms']:7.0f} ms -> "
                  f"{row[True]['ttft_ms']:7.0f} ms, same={row[True]['text'] == row[False]['text']}", flush=True)
    finally:
        for client in workers.values():
            client.close()
    plain = [r[False]["ttft_ms"] for r in rows]
    fast = [r[True]["ttft_ms"] for r in rows]
    return {"questions": len(rows), "prompt_tokens_median": statistics.median(r[False]["prompt_tokens"] for r in rows),
            "ttft_ms_median_plain": round(statistics.median(plain), 1), "ttft_ms_median_fast": round(statistics.median(fast), 1),
            "ttft_ms_mean_plain": round(statistics.fmean(plain), 1), "ttft_ms_mean_fast": round(statistics.fmean(fast), 1),
            "ttft_ratio_median": round(statistics.median(fast) / statistics.median(plain), 3),
            "ttft_ratio_mean": round(statistics.fmean(fast) / statistics.fmean(plain), 3),
            "identical_replies": sum(r[True]["text"] == r[False]["text"] for r in rows)}


def perplexity(model_path: str, copies: str, part: str) -> dict:
    """Perplexity of the model on news windows after a cache from itself or from the copy."""
    import numpy as np

    import llama_cpp
    from engine import fast_prefill
    from engine.llama_context import fill_sequence
    from engine.llama_runtime import LoadedModel
    from engine.settings import EngineSettings

    with NEWS.open(encoding="utf-8") as handle:
        text = "\n".join(row["eng"] for row in csv.DictReader(handle, delimiter="\t"))
    model = LoadedModel(model_path, EngineSettings(n_ctx=2 * (CONTEXT + SCORED)))
    copy = fast_prefill.FastPrefill(fast_prefill.ensure_copy(model_path, copies), model.settings)
    tokens = model.tokenize(text, add_special=False, parse_special=False)
    span = CONTEXT + SCORED
    windows = [tokens[i * span:(i + 1) * span] for i in range(min(2 * WINDOWS, len(tokens) // span))]
    windows = windows[0::2] if part == "development" else windows[1::2]
    batch = llama_cpp.llama_batch_init(SCORED, 0, 1)
    n_vocab = model.n_vocab
    totals = {"model": 0.0, "copy": 0.0}
    try:
        for window in windows:
            context, scored = window[:CONTEXT], window[CONTEXT:]
            for source in ("model", "copy"):
                model.clear_cache()
                if source == "model":
                    model.evaluate_prompt(context)
                else:
                    copy.evaluate(model, context)
                first = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(model.ctx, -1), shape=(n_vocab,)).copy()
                base = len(model.cached_tokens)
                inputs = scored[:-1]
                fill_sequence(batch, inputs, base)
                rc = llama_cpp.llama_decode(model.ctx, batch)
                if rc != 0:
                    raise RuntimeError(f"llama_decode failed while scoring (code {rc}, {source}, at {base})")
                rows = [first] + [np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(model.ctx, j), shape=(n_vocab,))
                                  for j in range(len(inputs))]
                for row, target in zip(rows, scored):
                    row = row.astype(np.float64)
                    top = row.max()
                    totals[source] += -(row[target] - top - math.log(np.exp(row - top).sum()))
                model.clear_cache()
    finally:
        llama_cpp.llama_batch_free(batch)
        copy.close()
        model.close()
    count = len(windows) * SCORED
    ppl = {source: math.exp(total / count) for source, total in totals.items()}
    return {"windows": len(windows), "scored_tokens": count, "perplexity_model_cache": round(ppl["model"], 4),
            "perplexity_copy_cache": round(ppl["copy"], 4),
            "perplexity_cost": round(ppl["copy"] / ppl["model"] - 1.0, 5)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--part", choices=("development", "scored"), default="scored")
    parser.add_argument("--data", type=Path, help="a data folder to index into, or whose index to reuse")
    args = parser.parse_args(argv)
    development, scored = split_grounded(json.loads((GROUNDED_DATA / "questions.json").read_text("utf-8")))
    questions = development if args.part == "development" else scored
    data = args.data or Path(tempfile.mkdtemp(prefix="bench-fast-prefill-")) / "data"
    services = build_services(AppPaths(data), passphrase=THROWAWAY_PASSPHRASE)
    try:
        ids = index_collections(services.documents_core()[0])
        first = ttft(services, args.part, ids, questions)
        quality = perplexity(str(services.library.for_task("chat").path),
                             str(services.paths.models_dir / "fast-prefill"), args.part)
    finally:
        services.close()
    load = os.getloadavg()[0]
    print(f"\n{args.part} part, load {load:.2f}")
    print(f"time to first token, median of {first['questions']} grounded questions "
          f"(~{first['prompt_tokens_median']:.0f} prompt tokens): {first['ttft_ms_median_plain']:.0f} ms -> "
          f"{first['ttft_ms_median_fast']:.0f} ms = {first['ttft_ratio_median']:.3f}x; "
          f"identical greedy replies {first['identical_replies']}/{first['questions']}")
    print(f"perplexity on {quality['scored_tokens']} held-out news tokens: {quality['perplexity_model_cache']} "
          f"(own cache) vs {quality['perplexity_copy_cache']} (copy's cache) = {quality['perplexity_cost']:+.4%}")
    met = first["ttft_ratio_median"] <= TARGETS["ttft_ratio_at_most"] \
        and quality["perplexity_cost"] < TARGETS["perplexity_cost_below"]
    report("fast_prefill", {"ttft": first, "quality": quality}, TARGETS, met,
           name="fast_prefill" if args.part == "scored" else "fast_prefill_development", part=args.part)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
