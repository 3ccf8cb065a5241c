"""Child process of the ingestion crash test: indexes a folder until it is killed.

Usage: python ingest_child.py DB_PATH FOLDER MINILM_GGUF

Prints ``W <pid>`` (its engine worker), then ``ready``, then ``I <path> <chunks>`` (flushed)
only after a file's chunks were committed, so the parent knows what must survive a SIGKILL.
Runs on its own main thread; re-indexes with ``force`` so every round replaces committed
chunks, the riskiest write there is.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root

import assistant  # noqa: E402,F401  (the privacy guard, as in the app)
import numpy as np  # noqa: E402

from assistant.documents.collections import Documents, default_counter  # noqa: E402
from assistant.store import Store  # noqa: E402
from engine.client import EngineClient  # noqa: E402
from engine.settings import EngineSettings  # noqa: E402
from tests.keyring_for_tests import TEST_DATABASE_KEY


def report(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def main() -> None:
    db_path, folder, model = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
    store = Store(db_path, key=TEST_DATABASE_KEY)
    engine = EngineClient(EngineSettings())
    engine.start()
    report(f"W {engine.pid}")

    def embed(texts: list[str]) -> np.ndarray:
        return np.asarray(engine.embed(model, texts, with_metrics=True)[0], dtype=np.float32)

    documents = Documents(store, embed, default_counter())
    report("ready")
    while True:
        for progress in documents.add_paths([folder], force=True):
            if progress.kind == "indexed":
                report(f"I {progress.path} {progress.chunks}")
            elif progress.kind == "error":
                report(f"E {progress.path} {progress.message}")


if __name__ == "__main__":
    main()
