"""Answers from documents you can trust: the shown answer against the model's answer, on three
collections.

    .venv/bin/python benchmarks/grounded_answers.py --part development   # choose the settings
    .venv/bin/python benchmarks/grounded_answers.py                       # the scored part, once

The questions are ``benchmarks/data/grounded/questions.json``, written before the method: the
typing PEPs (``../shared/data/documents/typing-peps``), personal notes and a made-up espresso
machine manual (``benchmarks/data/grounded/notes`` and ``manual``). Each collection goes through
the real pipeline (Documents: parse, chunk, embed through the engine, index) into a temporary
data folder, and each question is asked through the chat's own
:class:`~assistant.chat.session.ChatSession` with that collection attached, as the Documents
page and ``assistant ask`` ask it ("only from my documents" off, the page's default), with the
default chat model, the app's sampling for replies from documents (temperature at most 0.2),
a fixed seed and replies of at most 128 tokens (two cores: a small model's answer is in its first
sentences). ``--data DIR`` keeps the data folder, and a later run over it reuses its index.

Split in code (:func:`split`): within each collection, questions 0, 2, 4... are the development
part and 1, 3, 5... the scored part.

Each question's outcome for what a screen shows first:

- ``answer`` (this method): the extractive sentence (``assistant.chat.sources.shown_answer``), or
  "I couldn't find this in your documents";
- ``baseline`` (before it): the model's reply, as the Documents page showed it in bold.

correct: it holds one of the accepted phrases (case, whitespace, backquotes and asterisks
ignored), or it says it does not know when the question has none; i_dont_know: it says it does
not know when there is an answer; wrong: anything else. Also counted: how often the model's
wording was shown beside the answer (the agreement check passed) and how often it then lacked
every accepted phrase.

``--part development`` also searches the sentence score's weights, the overlap floor, the score
threshold and the agreement cosine (assistant.documents.answers) on the development questions
and prints the best (the most correct answers with at most 10 % wrong, then fewer wrong; the
middle of the thresholds that tie); those are then set in the code. The scored part runs with
the app's settings as they are.

Prints a line a question, a table, then one JSON line; the scored part writes
benchmarks/results/grounded_answers.json.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import re
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine import privacy  # noqa: E402

privacy.install()

from assistant.app import build_services  # noqa: E402
from benchmarks.record import THROWAWAY_PASSPHRASE, results_line, write_results  # noqa: E402
from assistant.chat.events import ReplyDone, TurnPrepared  # noqa: E402
from assistant.chat.prompt import grounded_chat  # noqa: E402
from assistant.chat.session import ChatSession  # noqa: E402
from assistant.chat.sources import shown_answer  # noqa: E402
from assistant.config import AppPaths  # noqa: E402
from assistant.documents import answers as method  # noqa: E402
from assistant.documents.grounded import DONT_KNOW  # noqa: E402
from assistant.documents.retrieval import Scope  # noqa: E402

SHARED = Path(os.environ.get("ASSISTANT_SHARED_DATA", ROOT.parent / "shared" / "data"))
DATA = ROOT / "benchmarks" / "data" / "grounded"
FOLDERS = {"peps": SHARED / "documents" / "typing-peps", "notes": DATA / "notes", "manual": DATA / "manual"}
RESULTS = ROOT / "benchmarks" / "results" / "grounded_answers.json"
TARGETS = {"answer_wrong_rate": 0.10, "answer_correct_rate": 0.75}
REPLY_TOKENS = 128
_DONT_KNOW_WORDS = re.compile(r"(?:do(?:es)? not|don't|doesn't|cannot|can't|couldn't) (?:know|find|contain|mention|"
                              r"say|provide)|not (?:mentioned|found|provided|specified|in the sources)|"
                              r"no (?:information|mention)", re.IGNORECASE)


def index_collections(documents) -> dict[str, int]:
    """Index the three collections through the app's own pipeline (unless the data folder
    already holds them); their ids by name."""
    indexed = {c["name"] for c in documents.collections() if c["files"]}
    for name, folder in FOLDERS.items():
        if name not in indexed:
            list(documents.add_paths([folder], name))
    return {name: documents.collection_id(name) for name in FOLDERS}


def split(spec: dict) -> tuple[list[dict], list[dict]]:
    """(development, scored): alternate questions of each collection, fixed before any run."""
    development, scored = [], []
    for collection, questions in spec["collections"].items():
        for i, item in enumerate(questions):
            (development if i % 2 == 0 else scored).append({**item, "collection": collection})
    return development, scored


def normal(text: str) -> str:
    return " ".join(re.sub(r"[`*]", "", text).lower().split())


def says_dont_know(text: str) -> bool:
    return not text.strip() or text.strip() == DONT_KNOW or text.strip() == method.NOT_FOUND \
        or bool(_DONT_KNOW_WORDS.search(text))


def outcome(text: str, accept: list[str], dont_know: bool) -> str:
    if dont_know:
        return "correct" if not accept else "i_dont_know"
    if accept and any(normal(phrase) in normal(text) for phrase in accept):
        return "correct"
    return "wrong"


def rates(outcomes: list[str]) -> dict:
    n = max(1, len(outcomes))
    return {key: round(outcomes.count(key) / n, 4) for key in ("correct", "wrong", "i_dont_know")}


def ask(services, collection_id: int, question: str, sampling) -> tuple[TurnPrepared, ReplyDone | None]:
    session = ChatSession(services, persist=False, documents={"collections": [collection_id], "only": False},
                          sampling=sampling)
    events = list(session.turn(question))
    done = next((e for e in events if isinstance(e, ReplyDone)), None)
    return events[0], done


def develop(rows: list[dict]) -> dict:
    """The best weights, overlap floor, answer threshold and agreement cosine on the development
    rows: the most correct answers with at most the target's share wrong, then fewer wrong; of
    the thresholds that tie for the best weights and floor, the middle one."""
    weights_grid = list(itertools.product([1.0], [0.25, 0.5, 0.75, 1.0], [0.0, 0.3], [0.0, 0.1, 0.2],
                                          [0.0, 0.3, 0.6], [0.0, 0.1, 0.2, 0.3, 0.4]))
    overlaps = [0.3, 0.35, 0.4, 0.45]
    thresholds = [round(0.5 + 0.1 * i, 2) for i in range(11)]
    n = len(rows)
    best = None
    for weights in weights_grid:
        # The best candidate depends on the weights only; the floors decide whether it is shown.
        tops = [max(row["candidates"], key=lambda c: c.score(weights)) if row["candidates"] else None for row in rows]
        for min_overlap in overlaps:
            for threshold in thresholds:
                results = []
                for row, top in zip(rows, tops):
                    answer = method.best_answer([top] if top else [], weights, threshold, min_overlap)
                    text = answer.text if answer else method.NOT_FOUND
                    results.append(outcome(text, row["accept"], answer is None))
                correct, wrong = results.count("correct") / n, results.count("wrong") / n
                key = (wrong <= TARGETS["answer_wrong_rate"], correct, -wrong)
                if best is None or key > best[0]:
                    best = (key, weights, min_overlap, [threshold], correct, wrong)
                elif key == best[0] and (weights, min_overlap) == (best[1], best[2]):
                    best[3].append(threshold)
    _key, weights, min_overlap, tied, correct, wrong = best
    threshold = tied[len(tied) // 2]
    agree_best = None
    for agree in [round(0.30 + 0.05 * i, 2) for i in range(14)]:
        shown_right = shown_wrong = 0
        for row in rows:
            verdict = row["verdict"]
            if verdict.cosine is None or verdict.unsupported or verdict.cosine < agree:
                continue
            if row["accept"] and outcome(row["reply"], row["accept"], False) == "correct":
                shown_right += 1
            else:
                shown_wrong += 1
        key = (shown_right - 3 * shown_wrong, agree)
        if agree_best is None or key > agree_best[0]:
            agree_best = (key, agree, shown_right, shown_wrong)
    return {"weights": weights, "min_overlap": min_overlap, "threshold": threshold, "thresholds_tied": tied,
            "dev_correct": round(correct, 4), "dev_wrong": round(wrong, 4),
            "agree_cosine": agree_best[1], "dev_shown_right": agree_best[2], "dev_shown_wrong": agree_best[3]}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--part", choices=("development", "scored"), default="scored")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--data", type=Path, help="the data folder to index into, or whose index to reuse")
    args = parser.parse_args(argv)
    spec = json.loads((DATA / "questions.json").read_text(encoding="utf-8"))
    development, scored = split(spec)
    questions = development if args.part == "development" else scored
    data = args.data or Path(tempfile.mkdtemp(prefix="bench-grounded-answers-")) / "data"
    services = build_services(AppPaths(data), passphrase=THROWAWAY_PASSPHRASE)
    rows = []
    try:
        documents, retriever = services.documents_core()
        ids = index_collections(documents)
        sampling = replace(services.settings.sampling, seed=args.seed, max_tokens=REPLY_TOKENS)
        model_path = services.library.for_task("chat").path
        for item in questions:
            prepared, done = ask(services, ids[item["collection"]], item["q"], sampling)
            reply = done.message.text if done else ""
            shown = shown_answer(done.sources if done else prepared.sources) or \
                {"found": False, "text": method.NOT_FOUND, "agrees": False}
            row = {"collection": item["collection"], "q": item["q"], "accept": item["accept"], "reply": reply,
                   "answer": shown["text"], "agrees": bool(shown.get("agrees")),
                   "answer_outcome": outcome(shown["text"], item["accept"], not shown["found"]),
                   "baseline_outcome": outcome(reply, item["accept"], says_dont_know(reply))}
            if args.part == "development":
                # The features once per question; develop() scores them under each setting.
                chat = grounded_chat(services, model_path)
                turn = chat.prepare(item["q"], Scope(collections=[ids[item["collection"]]]))
                row["candidates"] = method.candidates(item["q"], turn.sources, retriever.embed)
                quoted = next((s for s in prepared.sources if s.get("quote")), None)
                known = "\n".join([item["q"]] + [s["passage"] for s in prepared.sources])
                row["verdict"] = method.judge_reply(reply, quoted["quote"] if quoted else None, known,
                                                    retriever.embed, threshold=-1.0)
            rows.append(row)
            print(f"[{item['collection']}] {item['q']}\n    answer   {row['answer_outcome']:11s} "
                  f"{' '.join(shown['text'].split())[:110]}{'  (+ model agrees)' if row['agrees'] else ''}\n"
                  f"    baseline {row['baseline_outcome']:11s} {' '.join(reply.split())[:110]}", flush=True)
        chosen = develop(rows) if args.part == "development" else None
    finally:
        services.close()
    answer = rates([r["answer_outcome"] for r in rows])
    baseline = rates([r["baseline_outcome"] for r in rows])
    shown = [r for r in rows if r["agrees"]]
    shown_wrong = sum(outcome(r["reply"], r["accept"], False) != "correct" for r in shown)
    print(f"\n{args.part} part, {len(rows)} questions ({sum(not r['accept'] for r in rows)} without an answer)")
    print(f"{'shown first':34s}{'correct':>9s}{'wrong':>9s}{'dont know':>11s}")
    for label, figures in (("extractive answer (this method)", answer), ("model's answer (baseline)", baseline)):
        print(f"{label:34s}{figures['correct']:>9.3f}{figures['wrong']:>9.3f}{figures['i_dont_know']:>11.3f}")
    print(f"model's wording shown beside it: {len(shown)} times, {shown_wrong} of them without an accepted phrase")
    figures = {
        "questions": len(rows), "questions_without_answer": sum(not r["accept"] for r in rows),
        "answer_correct_rate": answer["correct"], "answer_wrong_rate": answer["wrong"],
        "answer_i_dont_know_rate": answer["i_dont_know"],
        "baseline_correct_rate": baseline["correct"], "baseline_wrong_rate": baseline["wrong"],
        "baseline_i_dont_know_rate": baseline["i_dont_know"],
        "model_wording_shown": len(shown), "model_wording_shown_without_accepted_phrase": shown_wrong,
        "settings": {"weights": [method.W_COSINE, method.W_OVERLAP, method.W_PASSAGE, method.W_KIND, method.W_FORM,
                                 method.W_NAMES],
                     "min_overlap": method.MIN_OVERLAP, "min_answer_score": method.MIN_ANSWER_SCORE,
                     "agree_cosine": method.AGREE_COSINE},
    }
    if chosen is not None:
        print(f"development search: weights {chosen['weights']}, overlap floor {chosen['min_overlap']}, "
              f"threshold {chosen['threshold']} (tied: {chosen['thresholds_tied']}) "
              f"(correct {chosen['dev_correct']}, wrong {chosen['dev_wrong']}); agreement cosine "
              f"{chosen['agree_cosine']} (shown right {chosen['dev_shown_right']}, wrong {chosen['dev_shown_wrong']})")
        figures["development_search"] = chosen
    met = answer["wrong"] <= TARGETS["answer_wrong_rate"] and answer["correct"] >= TARGETS["answer_correct_rate"]
    line = results_line("grounded_answers", figures, TARGETS, met, part=args.part)
    if args.part == "scored":
        write_results(line, RESULTS)
    print(json.dumps(line))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
