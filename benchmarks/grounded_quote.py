"""Chat with your documents on short personal notes: the model's answer against the quote.

    .venv/bin/python benchmarks/grounded_quote.py [--questions benchmarks/data/personal_notes_questions.json]

The notes of the question file go through the real pipeline (Documents: chunk, embed through
the engine, index) into a temporary data folder, and each question is asked through the
chat's own :class:`~assistant.chat.session.ChatSession` with the notes attached, as the
Documents page and ``assistant ask`` ask it, with the default chat model. For each question it
counts, side by side:

- ``retrieval``: the note holding the answer is among the sources;
- ``model``: the chat model's reply contains one of the expected words;
- ``quote``: the sentence quoted above the reply (assistant.documents.grounded.best_quote) contains one.

Answers use the app's sampling for replies from documents (temperature at most 0.2) with a fixed
seed. Prints a line a question, a table, then one JSON line.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine import privacy  # noqa: E402

privacy.install()

from assistant.app import build_services  # noqa: E402
from assistant.chat.events import ReplyDone  # noqa: E402
from assistant.chat.session import ChatSession  # noqa: E402
from assistant.config import AppPaths  # noqa: E402
from benchmarks.record import THROWAWAY_PASSPHRASE, report  # noqa: E402


def contains(text: str, expected: list[str]) -> bool:
    return any(word.lower() in text.lower() for word in expected)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--questions", default=str(ROOT / "benchmarks/data/personal_notes_questions.json"))
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    spec = json.loads(Path(args.questions).read_text(encoding="utf-8"))
    work = Path(tempfile.mkdtemp(prefix="bench-grounded-"))
    notes = work / "notes"
    notes.mkdir()
    for name, text in spec["notes"].items():
        (notes / name).write_text(text, encoding="utf-8")
    services = build_services(AppPaths(work / "data"), passphrase=THROWAWAY_PASSPHRASE)
    try:
        documents, _retriever = services.documents_core()
        list(documents.add_paths([notes], "notes"))
        sampling = replace(services.settings.sampling, seed=args.seed)
        counts = {"retrieval": 0, "model": 0, "quote": 0}
        for item in spec["questions"]:
            session = ChatSession(services, persist=False, documents={"collections": None, "only": False},
                                  sampling=sampling)
            events = list(session.turn(item["q"]))
            prepared, last = events[0], events[-1]
            answer = last.message.text if isinstance(last, ReplyDone) else ""
            quote = next((s["quote"] for s in prepared.sources if s.get("quote")), None)
            found = {
                "retrieval": any(contains(s["passage"], item["expect"]) for s in prepared.sources),
                "model": contains(answer, item["expect"]),
                "quote": quote is not None and contains(quote, item["expect"]),
            }
            for key, ok in found.items():
                counts[key] += ok
            print(f"{item['q']}\n    model {'ok ' if found['model'] else 'no '} {' '.join(answer.split())[:100]}\n"
                  f"    quote {'ok ' if found['quote'] else 'no '} {(quote or '(none)')[:100]}", flush=True)
    finally:
        services.close()
    total = len(spec["questions"])
    print(f"\n{'':12s}{'right':>8s}\n" + "\n".join(f"{k:12s}{v:>5d}/{total}" for k, v in counts.items()))
    report("grounded_quote", counts, {}, True, questions=total)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
