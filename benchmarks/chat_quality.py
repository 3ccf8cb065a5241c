"""Chat quality on simple things: short prompts with checkable answers, through the app's chat.

The prompts (``benchmarks/data/chat_prompts.json``, written for this benchmark) are facts,
arithmetic, "answer in one word", counting, lists of N items, yes/no and formatting
instructions, each with a check in code (:func:`passes`). They are split in code into a
development half and a scored half, fixed before any run: a prompt is in the development half
when the first byte of the SHA-256 of its id is even (:func:`split`).

Each reply goes through :class:`assistant.chat.session.ChatSession` (a fresh conversation per
prompt, nothing stored), so the chat template and the prompt are exactly the app's. A setting
is a system prompt, worked examples (earlier turns put before the question: see
assistant/chat/model_defaults.py) and sampling values; at a temperature above zero each
prompt is asked with three fixed seeds and the accuracy is their mean (one seed would make the
comparison a coin toss).

- ``--part development`` scores every candidate setting of :data:`CANDIDATES` on the
  development half, for each default chat model, and prints them ranked: the app's defaults
  (assistant/chat/model_defaults.py) are then chosen from this table only.
- ``--part scored`` (the default) scores today's defaults (``baseline``: the engine's
  SamplingParams, no system prompt and no examples, as before this benchmark) and the app's
  defaults now,
  side by side on the scored half, once. Target: accuracy >= 1.2x the baseline's, with replies
  no shorter than needed (the mean reply length is printed beside each).

Prints tables, then one JSON line (written to benchmarks/results/chat_quality.json, or
chat_quality_development.json).

    python benchmarks/chat_quality.py [--part development|scored] [--limit N]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import statistics
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine import privacy  # noqa: E402

privacy.install()

from assistant.app import build_services  # noqa: E402
from assistant.chat import model_defaults  # noqa: E402
from assistant.chat.events import ReplyDone  # noqa: E402
from assistant.chat.session import ChatSession  # noqa: E402
from assistant.config import AppPaths  # noqa: E402
from benchmarks.record import THROWAWAY_PASSPHRASE, report  # noqa: E402
from engine.settings import SamplingParams  # noqa: E402

PROMPTS = ROOT / "benchmarks" / "data" / "chat_prompts.json"
SEEDS = (11, 22, 33)
#: Replies are cut here: every check is decided well before (a list of five fruits is ~40 tokens).
MAX_TOKENS = 160
TARGET_RATIO = 1.2

def _candidate(system: str = "", examples: bool = False, **sampling) -> model_defaults.ChatDefaults:
    return model_defaults.ChatDefaults(system_prompt=system, sampling=replace(SamplingParams(), **sampling),
                                       examples=model_defaults.WORKED_EXAMPLES if examples else ())


#: (name, defaults) tried on the development half: a system prompt, worked examples, sampling.
CANDIDATES = [
    ("defaults", _candidate()),
    ("t0", _candidate(temperature=0.0)),
    ("t0.2", _candidate(temperature=0.2)),
    ("answer-first t0", _candidate(model_defaults.ANSWER_FIRST_PROMPT, temperature=0.0)),
    ("answer-first t0.2", _candidate(model_defaults.ANSWER_FIRST_PROMPT, temperature=0.2)),
    ("answer-first t0.7", _candidate(model_defaults.ANSWER_FIRST_PROMPT)),
    ("examples t0", _candidate(examples=True, temperature=0.0)),
    ("examples t0.2", _candidate(examples=True, temperature=0.2)),
    ("examples t0.7", _candidate(examples=True)),
]


def split(prompts: list[dict]) -> tuple[list[dict], list[dict]]:
    development = [p for p in prompts if hashlib.sha256(p["id"].encode()).digest()[0] % 2 == 0]
    scored = [p for p in prompts if hashlib.sha256(p["id"].encode()).digest()[0] % 2 == 1]
    return development, scored


# ----- the checks ------------------------------------------------------------------------------------
_NUMBER_WORDS = {"zero": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7,
                 "eight": 8, "nine": 9, "ten": 10, "eleven": 11, "twelve": 12}


def numbers_in(text: str) -> list[int]:
    found = []
    for token in re.findall(r"-?\d+(?:,\d{3})*|[A-Za-z]+", text):
        if token[0].isdigit() or token[0] == "-":
            found.append(int(token.replace(",", "")))
        elif token.lower() in _NUMBER_WORDS:
            found.append(_NUMBER_WORDS[token.lower()])
    return found


def _words(text: str) -> list[str]:
    return re.findall(r"[A-Za-zÀ-ÿ0-9']+", text.lower())


def list_items(text: str) -> list[str]:
    """The items of a list reply: its bulleted or numbered lines, else the lines, else the
    comma- or "and"-separated parts of the one line."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    marked = [line for line in lines if re.match(r"^([-*•]|\d+[.)])\s+", line)]
    if len(marked) >= 2:
        return marked
    if len(lines) >= 2:
        # An intro line ("Here are three colors:") is not an item.
        return [line for line in lines if not line.endswith(":")]
    parts = re.split(r",|\band\b", re.sub(r"^[^:]*:", "", lines[0]) if lines else "")
    return [p.strip(" .") for p in parts if p.strip(" .")]


def passes(check: dict, reply: str) -> bool:
    """Does ``reply`` satisfy ``check``? The head of the reply (its first 300 characters) must
    hold the answer: a right word buried after a wrong one is not an answer."""
    kind = check["type"]
    head = reply.strip()[:300]
    low = head.lower()
    if kind == "contains_any":
        return any(re.search(rf"\b{re.escape(a)}", low) for a in check["answers"])
    if kind == "lower_contains":
        return head == head.lower() and any(a in head for a in check["answers"])
    if kind == "contains_case":
        return check["text"] in head
    if kind == "exact_upper":
        return head.strip(" .!\"'") == check["text"]
    if kind == "number":
        found = numbers_in(head)
        return bool(found) and found[0] == check["value"]
    if kind == "number_only":
        return head.strip(" .") == str(check["value"])
    if kind == "one_word":
        words = _words(head)
        return 1 <= len(words) <= 2 and words[0] in check["answers"]
    if kind == "yes_no":
        words = _words(head)
        return bool(words) and words[0] == check["answer"]
    if kind == "sequence":
        wanted = check["numbers"]
        found = numbers_in(head)
        return any(found[i:i + len(wanted)] == wanted for i in range(len(found)))
    if kind == "list_count":
        return len(list_items(reply)) == check["count"]
    if kind == "json_key":
        match = re.search(r"\{.*?\}", head, re.S)
        try:
            value = json.loads(match.group(0))[check["key"]] if match else None
        except (ValueError, KeyError, TypeError):
            return False
        return isinstance(value, str) and value.strip().lower() in check["answers"]
    raise ValueError(f"unknown check {kind!r}")


# ----- asking -----------------------------------------------------------------------------------------
def ask(services, model_id: str, prompt: str, defaults: model_defaults.ChatDefaults, sampling: SamplingParams) -> str:
    """One reply through the app's ChatSession with ``defaults`` given explicitly (the session's
    own model defaults are switched off around the benchmark, see :func:`main`)."""
    session = ChatSession(services, model_id=model_id, system_prompt=defaults.system_prompt, documents=None,
                          sampling=sampling, persist=False, history=defaults.example_turns())
    reply = ""
    for event in session.turn(prompt):
        if isinstance(event, ReplyDone):
            reply = event.message.text
    return reply


def score(services, model_id: str, prompts: list[dict], defaults: model_defaults.ChatDefaults,
          sampling: SamplingParams) -> dict:
    """Accuracy (mean over seeds above temperature 0) and mean reply length in characters."""
    seeds = SEEDS if sampling.temperature > 0 else SEEDS[:1]
    accuracies, lengths, failures = [], [], []
    for seed in seeds:
        seeded = replace(sampling, seed=seed, max_tokens=MAX_TOKENS)
        right = 0
        for item in prompts:
            reply = ask(services, model_id, item["prompt"], defaults, seeded)
            ok = passes(item["check"], reply)
            right += ok
            lengths.append(len(reply))
            if not ok and seed == seeds[0]:
                failures.append((item["id"], item["prompt"], " ".join(reply.split())[:100]))
        accuracies.append(right / len(prompts))
    return {"accuracy": round(statistics.mean(accuracies), 4), "seeds": len(seeds),
            "mean_reply_chars": round(statistics.mean(lengths), 1), "failures": failures}


def chat_models(services) -> list:
    """The default pack's models that chat (the benchmark tunes each of them)."""
    return [m for m in services.library.list() if m.source == "pack" and "chat" in m.tasks and m.is_gguf]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=("development", "scored"), default="scored")
    parser.add_argument("--limit", type=int, default=0, help="only the first N prompts of the part (a smoke run)")
    parser.add_argument("--data", type=Path, help="a data folder to reuse (default: a fresh temporary one)")
    args = parser.parse_args(argv)
    development, scored = split(json.loads(PROMPTS.read_text(encoding="utf-8")))
    prompts = development if args.part == "development" else scored
    if args.limit:
        prompts = prompts[: args.limit]
    data = args.data or Path(tempfile.mkdtemp(prefix="bench-chat-quality-")) / "data"
    services = build_services(AppPaths(data), passphrase=THROWAWAY_PASSPHRASE)
    figures: dict = {"prompts": len(prompts)}
    met = True
    chosen_defaults = {m.id: model_defaults.for_model(m) for m in chat_models(services)}
    # Every candidate gives its system prompt and examples explicitly: the session's own model
    # defaults are switched off for the run, so nothing is added twice (a benchmark-only switch).
    model_defaults.for_model = lambda _model: model_defaults.ChatDefaults()
    try:
        for model in chat_models(services):
            key = model.id.split("-")[0]
            rows = []
            if args.part == "development":
                for name, candidate in CANDIDATES:
                    rows.append((name, score(services, model.id, prompts, candidate, candidate.sampling)))
            else:
                # Today's defaults before this benchmark: the engine's sampling, no system prompt,
                # no worked examples; then the app's defaults for this model, as a new user gets them.
                rows.append(("baseline", score(services, model.id, prompts, model_defaults.ChatDefaults(),
                                               SamplingParams())))
                chosen = chosen_defaults[model.id]
                rows.append(("app defaults", score(services, model.id, prompts, chosen,
                                                   model_defaults.under(services.settings.sampling, chosen))))
            print(f"\n{model.display_name}: {args.part} half, {len(prompts)} prompts")
            print(f"{'setting':26s}{'accuracy':>10s}{'seeds':>7s}{'reply chars':>13s}")
            for name, result in sorted(rows, key=lambda r: -r[1]["accuracy"]) if args.part == "development" else rows:
                print(f"{name:26s}{result['accuracy']:>10.3f}{result['seeds']:>7d}{result['mean_reply_chars']:>13.1f}")
            for name, result in rows:
                figures[f"{key}_{name.replace(' ', '_')}_accuracy"] = result["accuracy"]
                figures[f"{key}_{name.replace(' ', '_')}_mean_reply_chars"] = result["mean_reply_chars"]
            if args.part == "scored":
                ratio = rows[1][1]["accuracy"] / max(rows[0][1]["accuracy"], 1e-9)
                figures[f"{key}_ratio_to_baseline"] = round(ratio, 3)
                met = met and ratio >= TARGET_RATIO
                print(f"ratio to the baseline: {ratio:.2f} (target {TARGET_RATIO})")
                print("failures of the app defaults (first seed):")
                for item_id, prompt, reply in rows[1][1]["failures"]:
                    print(f"  {item_id} {prompt!r}: {reply!r}")
    finally:
        services.close()
    name = "chat_quality" if args.part == "scored" else "chat_quality_development"
    if args.limit:
        name += "_smoke"
    report("chat_quality", figures, {"accuracy_ratio_to_baseline": TARGET_RATIO}, met and args.part == "scored",
           name=name, part=args.part)
    return 0


if __name__ == "__main__":
    sys.exit(main())
