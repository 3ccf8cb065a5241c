"""Which encrypted SQLite library: sqlcipher3 (SQLCipher 4) against apsw-sqlite3mc (SQLite3
Multiple Ciphers), measured the same way, for the choice assistant/vault/cipher.py names.

For each library, on a fresh file with a random 256-bit raw key: whether FTS5 is compiled in,
the SQLite version, and, encrypted and (each library's own baseline) without a key: inserts of messages one transaction each (as a chat adds them) and in one
transaction (an import), and the p50/p95 of FTS5 MATCH queries with bm25 ranking, on the same
generated text (Zipf-distributed words of benchmarks/history_workload.py). apsw-sqlite3mc is not a
dependency of the app: install it into the environment that runs this (``pip install
apsw-sqlite3mc``); without it only sqlcipher3 is measured. Both use each library's default cipher
(SQLCipher 4's AES-256-CBC + HMAC-SHA512; sqlite3mc's ChaCha20-Poly1305), the way each would ship.

    python benchmarks/cipher_choice.py [--messages 50000] [--single 2000] [--queries 300]

Prints a table, the 1-minute load average, then one JSON line (benchmarks/results/cipher_choice.json).
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.history_workload import make_vocabulary, percentile  # noqa: E402
from benchmarks.record import report  # noqa: E402

SCHEMA = ("CREATE TABLE messages (n INTEGER PRIMARY KEY, text TEXT NOT NULL)",
          "CREATE VIRTUAL TABLE messages_fts USING fts5(text, content='messages', content_rowid='n')",
          "CREATE TRIGGER messages_ai AFTER INSERT ON messages BEGIN "
          "INSERT INTO messages_fts(rowid, text) VALUES (new.n, new.text); END")


def open_sqlcipher(path: str, key: bytes | None):
    from sqlcipher3 import dbapi2

    conn = dbapi2.connect(path, isolation_level=None)
    if key is not None:
        conn.execute(f"PRAGMA key = \"x'{key.hex()}'\"")
    return conn, "sqlcipher3 " + conn.execute("PRAGMA cipher_version").fetchone()[0] + ("" if key else " (no key)")


def open_sqlite3mc(path: str, key: bytes | None):
    import apsw

    conn = apsw.Connection(path)
    if key is not None:
        conn.pragma("hexkey", key.hex())
    return conn, "apsw-sqlite3mc " + apsw.apsw_version() + ("" if key else " (no key)")


def measure(opener, texts: list[str], single: int, queries: list[str], encrypted: bool = True) -> dict:
    """One library, encrypted or (the library's own baseline: its driver without a cipher) not."""
    with tempfile.TemporaryDirectory() as folder:
        conn, name = opener(os.path.join(folder, "bench.db"), os.urandom(32) if encrypted else None)
        execute = conn.execute
        execute("PRAGMA journal_mode = WAL")
        execute("PRAGMA synchronous = NORMAL")
        options = [r[0] for r in execute("PRAGMA compile_options").fetchall()]
        version = execute("SELECT sqlite_version()").fetchone()[0]
        for statement in SCHEMA:
            execute(statement)
        started = time.perf_counter()
        for text in texts[:single]:
            execute("BEGIN IMMEDIATE")
            execute("INSERT INTO messages (text) VALUES (?)", (text,))
            execute("COMMIT")
        single_rate = single / (time.perf_counter() - started)
        started = time.perf_counter()
        execute("BEGIN IMMEDIATE")
        for text in texts[single:]:
            execute("INSERT INTO messages (text) VALUES (?)", (text,))
        execute("COMMIT")
        batch_rate = (len(texts) - single) / (time.perf_counter() - started)
        timings = []
        for query in queries:
            started = time.perf_counter()
            execute("SELECT rowid, bm25(messages_fts) FROM messages_fts WHERE messages_fts MATCH ? "
                    "ORDER BY bm25(messages_fts) LIMIT 20", (query,)).fetchall()
            timings.append((time.perf_counter() - started) * 1000)
        conn.close()
    return {"library": name, "sqlite": version, "fts5": "ENABLE_FTS5" in options,
            "inserts_single_per_s": round(single_rate, 1), "inserts_batched_per_s": round(batch_rate, 1),
            "search_p50_ms": round(percentile(timings, 0.5), 3), "search_p95_ms": round(percentile(timings, 0.95), 3)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=50_000)
    parser.add_argument("--single", type=int, default=2_000)
    parser.add_argument("--queries", type=int, default=300)
    args = parser.parse_args(argv)
    rng = random.Random(1234)
    words = make_vocabulary(rng)
    weights = [1 / (rank + 1) for rank in range(len(words))]
    texts = [" ".join(rng.choices(words, weights, k=rng.randint(8, 60))) for _ in range(args.messages)]
    queries = [" ".join(f'"{w}"' for w in rng.choices(words[:3000], k=rng.randint(1, 2))) for _ in range(args.queries)]
    load_before = os.getloadavg()[0]
    rows = [measure(open_sqlcipher, texts, args.single, queries),
            measure(open_sqlcipher, texts, args.single, queries, encrypted=False)]
    try:
        rows.append(measure(open_sqlite3mc, texts, args.single, queries))
        rows.append(measure(open_sqlite3mc, texts, args.single, queries, encrypted=False))
    except ImportError:
        print("apsw-sqlite3mc is not installed here: only sqlcipher3 was measured", file=sys.stderr)
    print(f"{'library':40s}{'sqlite':>8s}{'fts5':>6s}{'single/s':>10s}{'batched/s':>11s}{'p50 ms':>8s}{'p95 ms':>8s}")
    for row in rows:
        print(f"{row['library']:40s}{row['sqlite']:>8s}{str(row['fts5']):>6s}{row['inserts_single_per_s']:>10.0f}"
              f"{row['inserts_batched_per_s']:>11.0f}{row['search_p50_ms']:>8.2f}{row['search_p95_ms']:>8.2f}")
    print(f"load average (1 min): {load_before:.2f} before, {os.getloadavg()[0]:.2f} after")
    figures = {row["library"].split()[0] + ("_no_key" if "no key" in row["library"] else ""): row for row in rows}
    figures["load_average_1m_before"] = round(load_before, 2)
    report("cipher_choice", figures, {}, True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
