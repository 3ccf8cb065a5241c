"""Study cards from the typing PEPs: how many proposed cards are acceptable, what the check
removes, how long proposing takes, and how well typed answers are judged.

    .venv/bin/python benchmarks/study_cards.py

Cards: the six documents in ``LABELLED`` (fixed here before the first run) go through the real
pipeline (Documents: parse, chunk, embed, index into a temporary data folder; then
:func:`assistant.study.cards.propose` on the store's chunks). Every card the method makes,
kept or dropped by its check, is looked up in ``benchmarks/data/study_card_labels.json``,
where each was judged by hand by the rule written at the top of that file. A card without a
label stops the run (the labels must cover what is measured); ``--dump`` writes the unlabelled
ones for judging. Figures: the share of proposed (kept) cards that are acceptable, and of the
check: the share of unacceptable cards it removes and of acceptable ones it loses.

Speed: proposing cards for PEP 544 (7,245 words, above the 5,000 the issue names), from the
store, once, with the engine warm.

Typed answers: ``benchmarks/data/study_answer_pairs.json`` split in code by pairs of lines
(lines 0-1, 4-5, ... are the development part; 2-3, 6-7, ... are scored). The development part
gives the best cosine threshold (printed); the scored part is scored once, at the threshold
the app uses (assistant.study.answers.SEMANTIC_THRESHOLD).

Prints a table and one JSON line; writes benchmarks/results/study_cards.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine import privacy  # noqa: E402

privacy.install()

import numpy as np  # noqa: E402

from assistant.app import build_services  # noqa: E402
from benchmarks.record import THROWAWAY_PASSPHRASE, results_line, write_results  # noqa: E402
from assistant.config import AppPaths  # noqa: E402
from assistant.study.answers import SEMANTIC_THRESHOLD, check_answer  # noqa: E402
from assistant.study.cards import propose  # noqa: E402
from assistant.study.sources import documents_from_store  # noqa: E402

SHARED = Path(os.environ.get("ASSISTANT_SHARED_DATA", ROOT.parent / "shared" / "data"))
PEPS = SHARED / "documents" / "typing-peps"
LABELLED = ("pep-0526.rst", "pep-0561.rst", "pep-0563.rst", "pep-0586.rst", "pep-0589.rst", "pep-0593.rst")
TIMED = "pep-0544.rst"
#: Where the method is developed: PEPs that are neither labelled nor timed. ``--develop`` writes
#: their cards (kept and dropped, with the check's reasons) for reading; they are never scored.
DEVELOPMENT = ("pep-0484.rst", "pep-0585.rst", "pep-0591.rst", "pep-0604.rst", "pep-0612.rst", "pep-0613.rst",
               "pep-0646.rst")
LABELS = ROOT / "benchmarks" / "data" / "study_card_labels.json"
PAIRS = ROOT / "benchmarks" / "data" / "study_answer_pairs.json"
RESULTS = ROOT / "benchmarks" / "results" / "study_cards.json"
TARGETS = {"acceptable_share": 0.90, "propose_s_5000_words": 30.0, "answer_accuracy_scored": 0.90}


def card_record(card, why: str | None) -> dict:
    return {"key": card.key(), "kind": card.kind, "front": card.front, "back": card.back, "choices": card.choices,
            "sentence": card.source["sentence"], "file": card.source["file"], "dropped": why}


def split_pairs(pairs: list[dict]) -> tuple[list[dict], list[dict]]:
    development = [p for i, p in enumerate(pairs) if (i // 2) % 2 == 0]
    scored = [p for i, p in enumerate(pairs) if (i // 2) % 2 == 1]
    return development, scored


def accuracy(pairs: list[dict], embed, threshold: float) -> float:
    return sum(check_answer(p["expected"], p["typed"], embed, threshold).right == p["accept"] for p in pairs) / len(pairs)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dump", type=Path, help="write the cards that have no label to this file and stop")
    parser.add_argument("--develop", type=Path, help="write the cards of the development PEPs to this file and stop")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="bench-study-"))
    (work / "docs").mkdir()
    for name in (DEVELOPMENT if args.develop else (*LABELLED, TIMED)):
        (work / "docs" / name).write_bytes((PEPS / name).read_bytes())
    services = build_services(AppPaths(work / "data"), passphrase=THROWAWAY_PASSPHRASE)
    try:
        documents, _retriever = services.documents_core()
        list(documents.add_paths([work / "docs"], "peps"))
        _d, retriever = services.documents_core()

        def embed(texts):
            return np.asarray(retriever.embed(texts), dtype=np.float32)

        store_docs = {Path(d.path).name: d for d in documents_from_store(services.store)}
        if args.develop:
            cards = []
            for name in DEVELOPMENT:
                proposal = propose([store_docs[name]], embed)
                cards += [card_record(c, None) for c in proposal.kept]
                cards += [card_record(c, why) for c, why in proposal.dropped]
            args.develop.write_text(json.dumps(cards, indent=1, ensure_ascii=False), encoding="utf-8")
            print(f"{len(cards)} development cards written to {args.develop}", file=sys.stderr)
            return 0
        records = []
        for name in LABELLED:
            proposal = propose([store_docs[name]], embed)
            records += [card_record(c, None) for c in proposal.kept]
            records += [card_record(c, why) for c, why in proposal.dropped]
        labels = json.loads(LABELS.read_text(encoding="utf-8"))["cards"] if LABELS.exists() else {}
        missing = [r for r in records if r["key"] not in labels]
        if missing:
            target = args.dump or work / "unlabelled.json"
            target.write_text(json.dumps(missing, indent=1, ensure_ascii=False), encoding="utf-8")
            print(f"{len(missing)} of {len(records)} cards have no label: written to {target}", file=sys.stderr)
            return 3
        kept = [r for r in records if r["dropped"] is None]
        dropped = [r for r in records if r["dropped"] is not None]
        good = [r for r in records if labels[r["key"]]["ok"]]
        bad = [r for r in records if not labels[r["key"]]["ok"]]
        acceptable = sum(labels[r["key"]]["ok"] for r in kept) / max(1, len(kept))
        bad_removed = sum(r["dropped"] is not None for r in bad) / max(1, len(bad))
        good_lost = sum(r["dropped"] is not None for r in good) / max(1, len(good))
        # Speed: one 7,245-word document, engine warm (the labelled runs above loaded MiniLM).
        started = time.perf_counter()
        timed = propose([store_docs[TIMED]], embed)
        propose_s = time.perf_counter() - started
        # Typed answers.
        pairs = json.loads(PAIRS.read_text(encoding="utf-8"))["pairs"]
        development, scored = split_pairs(pairs)
        grid = [round(0.50 + 0.01 * i, 2) for i in range(50)]
        dev_scores = [(accuracy(development, embed, t), t) for t in grid]
        best = max(score for score, _t in dev_scores)
        best_thresholds = [t for score, t in dev_scores if score == best]
        dev_threshold = best_thresholds[len(best_thresholds) // 2]
        scored_accuracy = accuracy(scored, embed, SEMANTIC_THRESHOLD)
        no_meaning = accuracy(scored, None, SEMANTIC_THRESHOLD)
    finally:
        services.close()
    figures = {
        "cards_judged": len(records), "cards_proposed": len(kept), "cards_dropped": len(dropped),
        "acceptable_share": round(acceptable, 4), "check_removes_bad_share": round(bad_removed, 4),
        "check_loses_good_share": round(good_lost, 4), "bad_cards_made": len(bad),
        "propose_s_5000_words": round(propose_s, 2), "timed_document_cards": len(timed.kept),
        "answer_threshold_dev_best": dev_threshold, "answer_threshold_used": SEMANTIC_THRESHOLD,
        "answer_accuracy_dev_at_best": round(best, 4), "answer_accuracy_scored": round(scored_accuracy, 4),
        "answer_accuracy_scored_without_meaning": round(no_meaning, 4),
        "answer_pairs_dev": len(development), "answer_pairs_scored": len(scored),
    }
    met = (acceptable >= TARGETS["acceptable_share"] and propose_s <= TARGETS["propose_s_5000_words"]
           and scored_accuracy >= TARGETS["answer_accuracy_scored"])
    print(f"\n{'cards judged':34s}{len(records):>8d}\n{'proposed (kept by the check)':34s}{len(kept):>8d}")
    print(f"{'acceptable share of proposed':34s}{acceptable:>8.3f}   target >= {TARGETS['acceptable_share']}")
    print(f"{'check removes of the bad cards':34s}{bad_removed:>8.3f}   ({len(bad)} bad made)")
    print(f"{'check loses of the good cards':34s}{good_lost:>8.3f}")
    print(f"{'propose, 7,245-word document (s)':34s}{propose_s:>8.2f}   target <= {TARGETS['propose_s_5000_words']}")
    print(f"{'answer threshold, dev best / used':34s}{dev_threshold:>8.2f} / {SEMANTIC_THRESHOLD}")
    print(f"{'answers right, scored part':34s}{scored_accuracy:>8.3f}   target >= {TARGETS['answer_accuracy_scored']}"
          f" (without the meaning check {no_meaning:.3f})")
    line = results_line("study_cards", figures, TARGETS, met)
    write_results(line, RESULTS)
    print(json.dumps(line))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
