"""What encryption at rest costs: the same history and documents workloads on an encrypted store
and on a plaintext one, side by side in one run (issue 24).

Two databases are built in one temporary folder from the very same generated data:

- encrypted: :class:`assistant.store.Store` as the app opens it (SQLCipher 4 through
  ``sqlcipher3``, a raw random 256-bit key, WAL, ``secure_delete``, temp data in memory);
- plaintext: the same ``Store`` code over a connection without a key. For this baseline only,
  ``assistant.store.connect`` is replaced, while the plaintext store opens, by
  :func:`plaintext_connect`: the same driver and SQLite build, the same connection settings and
  PRAGMAs, but no ``PRAGMA key``, so the file is an ordinary SQLite database (checked by its
  header). This baseline exists only in this benchmark: the app has no way to open a store
  without a key.

The workloads (``benchmarks/history_workload.py``, shared with ``history_search.py``):

- history: 10,000 conversations and 200,000 Zipf-distributed messages through
  ``Conversations`` (FTS5 triggers included). Inserts are timed one transaction per
  conversation (batched) and, afterwards, one transaction per message (as a live chat adds
  them); then 400 searches of every kind through ``History.search``, the same query list for
  both, with p50 and p95 latency;
- documents: 50,000 passages (about 130 Zipf words each, with a 384-float vector BLOB as the
  app stores them) in ``doc_chunks``, indexed by the store's FTS5 triggers, then 400 questions
  through ``Retriever.search(mode="bm25")`` (term pruning, BM25 ranking and the passages' text
  included). Dense retrieval is not measured: the vectors are searched in memory, in the
  retriever's matrix, where encryption plays no part (the one-off load of that matrix from
  the database is timed for both, for information).

Fairness of the order: neither store runs first throughout. Every step alternates between
them (conversation by conversation, message by message, query by query), and which of the two
goes first swaps at every step, so both see the same machine load and the same warmth of the
OS page cache; each store's own SQLite page cache is the default size in both. A warm-up search
on each store precedes the timed ones.

The window's first paint is not measured here: it no longer opens the database (the theme
comes from ``appearance.json``; the unlock comes after the first paint), so encryption cannot
change it; ``benchmarks/startup.py`` measures the first paint.

Speed figures need a quiet machine: the 1-minute load average is printed at the start and the
end, and above 2.5 the run says its speed figures are not valid and does not claim the targets.

    python benchmarks/encryption_overhead.py [--smoke]

``--smoke`` runs tiny sizes to check that the script works (seconds); its figures mean nothing
and it writes no results file. A full run prints a table, then one JSON line, kept in
``benchmarks/results/encryption_overhead.json``.
Targets (issue 24): search p95 encrypted / plaintext <= 1.3; message inserts encrypted /
plaintext >= 0.7; documents query p95 encrypted / plaintext <= 1.3.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine import privacy  # noqa: E402

privacy.install()

import numpy as np  # noqa: E402

import assistant.store  # noqa: E402
from assistant.documents.retrieval import Retriever  # noqa: E402
from assistant.history.archive import History  # noqa: E402
from assistant.history.conversations import Conversations  # noqa: E402
from assistant.store import Store  # noqa: E402
from assistant.vault.cipher import dbapi, is_plaintext_database, new_key  # noqa: E402
from benchmarks import history_workload as hw  # noqa: E402
from benchmarks.record import RESULTS_DIR, results_line, write_results  # noqa: E402

#: The issue's targets, encrypted / plaintext.
TARGET_SEARCH_P95_RATIO = 1.3
TARGET_INSERT_RATIO = 0.7
TARGET_DOCUMENTS_P95_RATIO = 1.3
#: Above this 1-minute load average (on this 2-core machine) speed figures are not trusted.
MAX_LOAD_AVERAGE = 2.5
VARIANTS = ("plaintext", "encrypted")


@dataclass(frozen=True)
class Sizes:
    conversations: int
    messages: int
    vocabulary: int
    searches: int
    single_inserts: int  # one transaction each, after the batched build
    passages: int
    passages_per_file: int
    questions: int


FULL = Sizes(conversations=hw.CONVERSATIONS, messages=hw.MESSAGES, vocabulary=hw.VOCABULARY, searches=400,
             single_inserts=2_000, passages=50_000, passages_per_file=100, questions=400)
SMOKE = Sizes(conversations=100, messages=2_000, vocabulary=3_000, searches=28, single_inserts=50, passages=1_000,
              passages_per_file=50, questions=20)
#: Words per passage: the app's passages are about 180 MiniLM tokens (assistant.documents.collections).
PASSAGE_WORDS = (100, 160)
#: Float32 values per passage vector (MiniLM's 384 dimensions), stored as the app stores them.
VECTOR_DIM = 384


# ----- the plaintext baseline (this benchmark only) --------------------------------------------------
def plaintext_connect(path, key: bytes, *, check: bool = True):
    """``assistant.vault.cipher.connect`` without ``PRAGMA key``: the same driver, SQLite build,
    connection settings and other PRAGMAs, over an unencrypted file. ``key`` is ignored."""
    conn = dbapi.connect(str(path), check_same_thread=False, isolation_level=None)
    conn.execute("PRAGMA cipher_log_level = NONE")
    if check:
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    return conn


@contextmanager
def plaintext_connections():
    """While the block runs, a ``Store`` opens its file with :func:`plaintext_connect`."""
    original = assistant.store.connect
    assistant.store.connect = plaintext_connect
    try:
        yield
    finally:
        assistant.store.connect = original


def open_stores(folder: Path) -> dict[str, Store]:
    """The two stores, each checked to be what it says (by the file's first 16 bytes)."""
    with plaintext_connections():
        plain = Store(folder / "plaintext.sqlite3", key=new_key())
    encrypted = Store(folder / "encrypted.sqlite3", key=new_key())  # as the app opens it
    if not is_plaintext_database(plain.path) or is_plaintext_database(encrypted.path):
        raise RuntimeError("the baseline store is not plaintext, or the encrypted one is not encrypted")
    return {"plaintext": plain, "encrypted": encrypted}


def alternate(step: int) -> tuple[str, str]:
    """The order of the two variants at ``step``: which goes first swaps every step."""
    return VARIANTS if step % 2 == 0 else VARIANTS[::-1]


# ----- history ---------------------------------------------------------------------------------------
@dataclass
class HistoryFigures:
    batched_s: float = 0.0
    single_s: float = 0.0
    search_ms: list[float] = field(default_factory=list)


def run_history(stores: dict[str, Store], sizes: Sizes) -> dict[str, HistoryFigures]:
    workload = hw.generate(sizes.conversations, sizes.messages, sizes.vocabulary)
    clock = hw.YearClock(sizes.conversations)
    conversations = {v: Conversations(stores[v], clock=clock) for v in VARIANTS}
    figures = {v: HistoryFigures() for v in VARIANTS}
    # Conversation ids are uuids, different in each store; a query filtered on a conversation
    # uses the conversation at the same position in both.
    ids: dict[str, list[str]] = {v: [] for v in VARIANTS}
    for i, title in enumerate(workload.titles):
        for v in alternate(i):
            ids[v].append(conversations[v].create(title).id)
    for i in range(sizes.conversations):
        clock.tick()
        batch = workload.batch(i)
        for v in alternate(i):
            figures[v].batched_s += hw.seconds(conversations[v].add_messages, ids[v][i], batch)
    live = {v: conversations[v].create("single inserts").id for v in VARIANTS}
    for j, text in enumerate(workload.texts[: sizes.single_inserts]):
        for v in alternate(j):
            figures[v].single_s += hw.seconds(conversations[v].add_message, live[v], "user", text)

    queries = hw.make_queries(workload, ids["plaintext"], sizes.searches)
    position = {cid: k for k, cid in enumerate(ids["plaintext"])}
    histories = {v: History(stores[v]) for v in VARIANTS}
    for v in VARIANTS:
        histories[v].search("warm up the page cache")  # the first query pays for opening the index
    for k, query in enumerate(queries):
        for v in alternate(k):
            filters = dict(query.filters)
            if "conversation_id" in filters:
                filters["conversation_id"] = ids[v][position[filters["conversation_id"]]]
            figures[v].search_ms.append(hw.timed_search(histories[v], hw.Query(query.kind, query.text, filters))[0])
    return figures


# ----- documents --------------------------------------------------------------------------------------
@dataclass
class DocumentFigures:
    insert_s: float = 0.0
    matrix_load_s: float = 0.0
    query_ms: list[float] = field(default_factory=list)


def _no_embedding(texts):
    raise AssertionError("the BM25 measurement must not embed anything")


def passage_rows(sizes: Sizes, rng: random.Random, vocab: list[str]) -> list[tuple]:
    """(file number, ordinal, text, title, heading, vector BLOB) of every passage."""
    texts = hw.zipf_texts(rng, vocab, [rng.randint(*PASSAGE_WORDS) for _ in range(sizes.passages)])
    vectors = np.random.default_rng(hw.SEED).standard_normal((sizes.passages, VECTOR_DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    rows = []
    for n, text in enumerate(texts):
        file_n, ordinal = n // sizes.passages_per_file + 1, n % sizes.passages_per_file
        heading = " ".join(text.split()[:3]).title()
        rows.append((file_n, ordinal, text, f"Document {file_n}", heading, vectors[n].tobytes()))
    return rows


def add_files(store: Store, files: int) -> None:
    with store.transaction() as conn:
        conn.execute("INSERT INTO doc_collections (n, name, created_at) VALUES (1, 'benchmark', ?)", (time.time(),))
        conn.executemany("INSERT INTO doc_files (n, collection_n, path, type, title, status, chunk_count, added_at) "
                         "VALUES (?, 1, ?, 'text', ?, 'indexed', 0, ?)",
                         [(f, f"/documents/{f}.txt", f"Document {f}", time.time()) for f in range(1, files + 1)])


def add_passages(store: Store, rows: list[tuple]) -> None:
    """One transaction per file's passages, as an ingestion writes a file's chunks."""
    with store.transaction() as conn:
        conn.executemany("INSERT INTO doc_chunks (file_n, ordinal, text, title, heading, tokens, embedding) "
                         "VALUES (?, ?, ?, ?, ?, 180, ?)", rows)
        conn.execute("UPDATE doc_index_state SET generation = generation + 1")


def make_questions(rng: random.Random, vocab: list[str], count: int) -> list[str]:
    """Questions as people type them: a stop word or two, two common words (which the retriever
    prunes when they are in too many passages) and two to four topic words."""
    size = len(vocab)

    def rank(low: int, high: int) -> str:
        return vocab[rng.randrange(min(low, size - 1), min(high, size))]

    return [" ".join(["what", "does", rank(10, 300), rank(10, 300),
                      *(rank(300, 10_000) for _ in range(rng.randint(2, 4)))]) + "?" for _ in range(count)]


def run_documents(stores: dict[str, Store], sizes: Sizes) -> dict[str, DocumentFigures]:
    rng = random.Random(hw.SEED + 3)
    vocab = hw.make_vocabulary(rng, sizes.vocabulary)
    rows = passage_rows(sizes, rng, vocab)
    figures = {v: DocumentFigures() for v in VARIANTS}
    files = (sizes.passages + sizes.passages_per_file - 1) // sizes.passages_per_file
    for v in VARIANTS:
        add_files(stores[v], files)
    for step, start in enumerate(range(0, len(rows), sizes.passages_per_file)):
        part = rows[start: start + sizes.passages_per_file]
        for v in alternate(step):
            figures[v].insert_s += hw.seconds(add_passages, stores[v], part)
    retrievers = {v: Retriever(stores[v], _no_embedding) for v in VARIANTS}
    for v in alternate(0):
        figures[v].matrix_load_s = hw.seconds(retrievers[v].matrix)
    for v in VARIANTS:
        retrievers[v].search("warm up the index", mode="bm25")
    for k, question in enumerate(make_questions(rng, vocab, sizes.questions)):
        for v in alternate(k):
            started = time.perf_counter()
            retrievers[v].search(question, k=5, mode="bm25")
            figures[v].query_ms.append((time.perf_counter() - started) * 1000)
    return figures


# ----- the run -----------------------------------------------------------------------------------------
def load_average() -> float:
    return round(os.getloadavg()[0], 2)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, to check the script works; no results file")
    args = parser.parse_args(argv)
    sizes = SMOKE if args.smoke else FULL
    load_start = load_average()
    print(f"1-minute load average at the start: {load_start}", flush=True)

    with tempfile.TemporaryDirectory(prefix="encryption-bench-") as tmp:
        stores = open_stores(Path(tmp))
        try:
            started = time.perf_counter()
            history = run_history(stores, sizes)
            history_s = time.perf_counter() - started
            started = time.perf_counter()
            documents = run_documents(stores, sizes)
            documents_s = time.perf_counter() - started
            megabytes = {v: sum(p.stat().st_size for p in Path(tmp).glob(f"{v}.sqlite3*")) / 1e6 for v in VARIANTS}
        finally:
            for store in stores.values():
                store.close()
    load_end = load_average()

    p = hw.percentile
    figures: dict = {}
    for v in VARIANTS:
        h, d = history[v], documents[v]
        figures.update({
            f"search_ms_p50_{v}": round(p(h.search_ms, 0.50), 2),
            f"search_ms_p95_{v}": round(p(h.search_ms, 0.95), 2),
            f"insert_messages_per_s_batched_{v}": round(sizes.messages / h.batched_s),
            f"insert_messages_per_s_one_txn_each_{v}": round(sizes.single_inserts / h.single_s),
            f"documents_query_ms_p50_{v}": round(p(d.query_ms, 0.50), 2),
            f"documents_query_ms_p95_{v}": round(p(d.query_ms, 0.95), 2),
            f"documents_insert_passages_per_s_{v}": round(sizes.passages / d.insert_s),
            f"documents_matrix_load_s_{v}": round(d.matrix_load_s, 3),
            f"database_mb_{v}": round(megabytes[v], 1),
        })

    def ratio(name: str) -> float:
        return round(figures[f"{name}_encrypted"] / figures[f"{name}_plaintext"], 3)

    figures.update({
        "search_ms_p95_ratio": ratio("search_ms_p95"),
        "search_ms_p50_ratio": ratio("search_ms_p50"),
        "insert_messages_per_s_ratio_one_txn_each": ratio("insert_messages_per_s_one_txn_each"),
        "insert_messages_per_s_ratio_batched": ratio("insert_messages_per_s_batched"),
        "documents_query_ms_p95_ratio": ratio("documents_query_ms_p95"),
        "documents_insert_passages_per_s_ratio": ratio("documents_insert_passages_per_s"),
    })
    targets = {"search_ms_p95_ratio": f"<= {TARGET_SEARCH_P95_RATIO}",
               "insert_messages_per_s_ratio_one_txn_each": f">= {TARGET_INSERT_RATIO}",
               "insert_messages_per_s_ratio_batched": f">= {TARGET_INSERT_RATIO}",
               "documents_query_ms_p95_ratio": f"<= {TARGET_DOCUMENTS_P95_RATIO}",
               "first_paint": "unchanged: the window paints before it opens the database (benchmarks/startup.py)"}
    met_each = {
        "search_ms_p95_ratio": figures["search_ms_p95_ratio"] <= TARGET_SEARCH_P95_RATIO,
        "insert_messages_per_s_ratio_one_txn_each":
            figures["insert_messages_per_s_ratio_one_txn_each"] >= TARGET_INSERT_RATIO,
        "insert_messages_per_s_ratio_batched": figures["insert_messages_per_s_ratio_batched"] >= TARGET_INSERT_RATIO,
        "documents_query_ms_p95_ratio": figures["documents_query_ms_p95_ratio"] <= TARGET_DOCUMENTS_P95_RATIO,
    }
    valid = max(load_start, load_end) <= MAX_LOAD_AVERAGE

    print(f"\nEncryption overhead: {sizes.conversations:,} conversations, {sizes.messages:,} messages, "
          f"{sizes.searches} searches; {sizes.passages:,} passages, {sizes.questions} questions"
          f"{' (smoke sizes: the figures mean nothing)' if args.smoke else ''}")
    print(f"history part {history_s:.0f} s, documents part {documents_s:.0f} s (both stores, interleaved)\n")
    print(f"{'measure':<42}{'plaintext':>12}{'encrypted':>12}{'ratio':>8}  target")
    print("-" * 90)
    rows = [("search ms p50", "search_ms_p50", ""),
            ("search ms p95", "search_ms_p95", f"<= {TARGET_SEARCH_P95_RATIO}"),
            ("insert messages/s, one txn each", "insert_messages_per_s_one_txn_each", f">= {TARGET_INSERT_RATIO}"),
            ("insert messages/s, batched", "insert_messages_per_s_batched", f">= {TARGET_INSERT_RATIO}"),
            ("documents BM25 query ms p50", "documents_query_ms_p50", ""),
            ("documents BM25 query ms p95", "documents_query_ms_p95", f"<= {TARGET_DOCUMENTS_P95_RATIO}"),
            ("documents insert passages/s", "documents_insert_passages_per_s", ""),
            ("documents vector matrix load s", "documents_matrix_load_s", ""),
            ("database MB (with WAL)", "database_mb", "")]
    def shown(value: float) -> str:
        return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3f}"

    for label, name, target in rows:
        plain, enc = figures[f"{name}_plaintext"], figures[f"{name}_encrypted"]
        print(f"{label:<42}{shown(plain):>12}{shown(enc):>12}{enc / plain if plain else float('nan'):>8.3f}  {target}")
    print("\nDense retrieval is not measured: its vectors are searched in memory, unaffected by encryption.")
    print("First paint: the window paints before it opens the database; benchmarks/startup.py measures it.")
    print(f"1-minute load average at the end: {load_end}")
    if not valid:
        print(f"WARNING: the load average was above {MAX_LOAD_AVERAGE} (start {load_start}, end {load_end}): "
              "these speed figures are not valid; run again on a quiet machine.")
    met = valid and all(met_each.values())
    line = results_line("encryption_overhead", figures, targets, met, met_each=met_each, sizes="smoke" if args.smoke
                        else "full", load_average_1m_start=load_start, load_average_1m_end=load_end,
                        speed_figures_valid=valid)
    if not args.smoke:
        write_results(line, RESULTS_DIR / "encryption_overhead.json")
    print(json.dumps(line), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
