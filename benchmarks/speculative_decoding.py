"""Speculative decoding without a draft model (prompt lookup): decode speed and output,
with it against without it, on the tasks where a reply repeats text the model was given.

    .venv/bin/python benchmarks/speculative_decoding.py --part development   # choose settings
    .venv/bin/python benchmarks/speculative_decoding.py                       # the scored part, once

Runs in its own process with the app's engine worker (the real llama.cpp, the default chat
model); nothing else CPU-heavy should run beside it (the load average is printed).

Tasks, each a list of chat requests sent to the engine twice, once with ``speculative`` off
(the baseline: plain one-token steps) and once on, in alternating order from one request to
the next so that drift in the machine's speed hits both alike:

- ``grounded``: the questions of ``benchmarks/data/grounded/questions.json`` over their three
  collections (the typing PEPs, notes, a manual), with the passages the app retrieves and the
  messages it builds (:meth:`assistant.documents.grounded.GroundedChat.prepare`);
- ``edit_and_resend``: ``benchmarks/data/speculative/edits.json``, pairs of a question and the
  same question edited; the first question's reply is the text the edited one replaces, and
  the engine drafts from it as the chat session asks it to (``lookup_texts``);
- ``free_chat``: the first questions of those pairs, with nothing to draft from but the
  prompt: the case where drafting must switch itself off and cost nothing.

Greedy decoding (temperature 0), replies of at most ``REPLY_TOKENS``. Figures per task: decode
tokens/s (completion tokens after the first over the time after the first token, summed over
the requests), the ratio on/off, how many replies came out identical, and the share of drafted
tokens the model accepted. llama.cpp's CPU kernels round differently for a batch than for one
token, so a near tie between two tokens can go the other way when verified in a batch; where
replies differ the benchmark prints how far they agreed, and for grounded questions how many
replies of each hold an accepted answer phrase (the grounded benchmark's rule).

Split in code: grounded questions as ``benchmarks/grounded_answers.split`` splits them; edit
pairs 0, 2, 4... development, 1, 3, 5... scored. The development part is where the drafting
settings (:mod:`engine.prompt_lookup`) were chosen; the scored part is run once and writes
``benchmarks/results/speculative_decoding.json``.
"""

from __future__ import annotations

import argparse
import json
import os
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
from benchmarks.grounded_answers import DATA as GROUNDED_DATA, index_collections, outcome, says_dont_know  # noqa: E402
from benchmarks.grounded_answers import split as split_grounded  # noqa: E402
from benchmarks.record import THROWAWAY_PASSPHRASE, report  # noqa: E402

EDITS = ROOT / "benchmarks" / "data" / "speculative" / "edits.json"
REPLY_TOKENS = 160
TARGETS = {"grounded_speedup": 1.3, "edit_and_resend_speedup": 1.3, "free_chat_speedup_at_least": 1.0,
           "identical_replies": 1.0}
GREEDY = {"temperature": 0.0, "max_tokens": REPLY_TOKENS, "seed": 1}


def split_edits(pairs: list) -> tuple[list, list]:
    return pairs[0::2], pairs[1::2]


def run_pair(engine, model: str, messages: list[dict], order: int, lookup_texts: list[str] | None = None) -> dict:
    """The same request without and with drafting (order 0: off first, 1: on first)."""
    results = {}
    for speculative in ((False, True) if order == 0 else (True, False)):
        options = {"speculative": speculative}
        if lookup_texts:
            options["lookup_texts"] = lookup_texts
        done = engine.chat(model, messages, GREEDY, **options).result()
        results[speculative] = {"text": done["result"]["text"], "metrics": done["metrics"]}
    return results


def summarise(rows: list[dict]) -> dict:
    def rate(speculative: bool) -> float:
        tokens = sum(max(0, r[speculative]["metrics"]["completion_tokens"] - 1) for r in rows)
        seconds = sum(r[speculative]["metrics"]["generation_ms"] for r in rows) / 1000.0
        return tokens / seconds if seconds > 0 else 0.0

    def shared_share(row: dict) -> float:
        plain, speculative = row[False]["text"], row[True]["text"]
        same = next((i for i, (a, b) in enumerate(zip(plain, speculative)) if a != b), min(len(plain), len(speculative)))
        return same / max(1, len(plain))

    off, on = rate(False), rate(True)
    drafted = sum(r[True]["metrics"].get("draft_tokens", 0) for r in rows)
    accepted = sum(r[True]["metrics"].get("draft_tokens_accepted", 0) for r in rows)
    return {"requests": len(rows), "tokens_per_s_plain": round(off, 2), "tokens_per_s_speculative": round(on, 2),
            "speedup": round(on / off, 3) if off else None,
            "identical_replies": sum(r[True]["text"] == r[False]["text"] for r in rows),
            "completion_tokens": sum(r[True]["metrics"]["completion_tokens"] for r in rows),
            "draft_tokens": drafted, "draft_acceptance": round(accepted / drafted, 3) if drafted else None,
            # Where replies differ: the share of the plain reply written before they part.
            "shared_prefix_share_where_different": round(sum(shared_share(r) for r in differing) / len(differing), 3)
            if (differing := [r for r in rows if r[True]["text"] != r[False]["text"]]) else None,
            **({"correct_plain": sum(r[False]["correct"] for r in rows), "correct_speculative": sum(r[True]["correct"] for r in rows)}
               if rows and "correct" in rows[0][False] else {})}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--part", choices=("development", "scored"), default="scored")
    parser.add_argument("--data", type=Path, help="a data folder to index into, or whose index to reuse")
    args = parser.parse_args(argv)
    development = args.part == "development"
    grounded_dev, grounded_scored = split_grounded(json.loads((GROUNDED_DATA / "questions.json").read_text("utf-8")))
    edits_dev, edits_scored = split_edits(json.loads(EDITS.read_text("utf-8"))["pairs"])
    questions = grounded_dev if development else grounded_scored
    edits = edits_dev if development else edits_scored
    data = args.data or Path(tempfile.mkdtemp(prefix="bench-speculative-")) / "data"
    services = build_services(AppPaths(data), passphrase=THROWAWAY_PASSPHRASE)
    tasks: dict[str, list] = {"grounded": [], "edit_and_resend": [], "free_chat": []}
    try:
        ids = index_collections(services.documents_core()[0])
        engine = services.engine
        model = services.library.for_task("chat").path
        chat = grounded_chat(services, model)
        for i, item in enumerate(questions):
            messages = chat.prepare(item["q"], Scope(collections=[ids[item["collection"]]])).messages
            row = run_pair(engine, model, messages, i % 2)
            for speculative in (False, True):
                reply = row[speculative]["text"]
                row[speculative]["correct"] = outcome(reply, item["accept"], says_dont_know(reply)) == "correct"
            tasks["grounded"].append(row)
            print(f"grounded {i:2d} {row[True]['metrics'].get('draft_tokens_accepted', 0):3d}/"
                  f"{row[True]['metrics'].get('draft_tokens', 0):3d} drafts kept, same={row[True]['text'] == row[False]['text']}",
                  flush=True)
        for i, (first, edited) in enumerate(edits):
            asked = [{"role": "user", "content": first}]
            row = run_pair(engine, model, asked, i % 2)
            tasks["free_chat"].append(row)
            earlier = row[False]["text"]
            row = run_pair(engine, model, [{"role": "user", "content": edited}], (i + 1) % 2, lookup_texts=[earlier])
            tasks["edit_and_resend"].append(row)
            print(f"edit {i:2d} free chat {tasks['free_chat'][-1][True]['metrics'].get('draft_tokens', 0):3d} drafted; "
                  f"edited {row[True]['metrics'].get('draft_tokens_accepted', 0):3d}/"
                  f"{row[True]['metrics'].get('draft_tokens', 0):3d} kept, same={row[True]['text'] == row[False]['text']}",
                  flush=True)
    finally:
        services.close()
    figures = {name: summarise(rows) for name, rows in tasks.items()}
    print(f"\n{args.part} part, greedy, replies of at most {REPLY_TOKENS} tokens, load {os.getloadavg()[0]:.2f}")
    print(f"{'task':18s}{'plain tok/s':>13s}{'lookup tok/s':>14s}{'ratio':>8s}{'same':>8s}{'accepted':>10s}")
    for name, f in figures.items():
        print(f"{name:18s}{f['tokens_per_s_plain']:>13.1f}{f['tokens_per_s_speculative']:>14.1f}"
              f"{(f['speedup'] or 0):>8.3f}{f['identical_replies']:>5d}/{f['requests']:<3d}"
              f"{(f['draft_acceptance'] or 0):>9.3f}")
    met = (figures["grounded"]["speedup"] or 0) >= TARGETS["grounded_speedup"] \
        and (figures["edit_and_resend"]["speedup"] or 0) >= TARGETS["edit_and_resend_speedup"] \
        and (figures["free_chat"]["speedup"] or 0) >= TARGETS["free_chat_speedup_at_least"] \
        and all(f["identical_replies"] == f["requests"] for f in figures.values())
    name = "speculative_decoding" if not development else "speculative_decoding_development"
    report("speculative_decoding", figures, TARGETS, met, name=name, part=args.part)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
