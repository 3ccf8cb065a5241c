"""Hybrid retrieval with real embeddings: BM25, dense, RRF, scopes, cache, the IVF index."""

from __future__ import annotations

import numpy as np
import pytest

from assistant.documents.collections import Documents, default_counter
from assistant.documents.retrieval import Retriever, Scope, fts_query
from assistant.store import Store
from tests.assistant import test_ingest as docfiles
from tests.keyring_for_tests import TEST_DATABASE_KEY


@pytest.fixture()
def indexed(tmp_path, embed):  # noqa: F811
    store = Store(tmp_path / "db.sqlite3", key=TEST_DATABASE_KEY)
    documents = Documents(store, embed, default_counter())
    files = docfiles.write_all_good(tmp_path / "docs")
    list(documents.add_paths([files["txt"], files["md"], files["rst"], files["html"]], collection="home"))
    list(documents.add_paths([files["pdf"], files["docx"]], collection="work"))
    yield store, documents, Retriever(store, embed), files
    store.close()


def test_fts_query_is_safe():
    # FTS5 operators and syntax come out as quoted words (or not at all), never as operators.
    assert fts_query('What is "NEAR"(x) OR * AND -y?') == '"near"'
    assert fts_query('"NEAR"(x)') == '"near"'
    assert fts_query('title:secret ^start (a OR b)') == '"title" OR "secret" OR "start"'
    assert fts_query("the of and") == '"the" OR "of" OR "and"'  # only stopwords: keep them
    assert fts_query("") == ""


def test_each_mode_finds_the_passage(indexed):
    store, documents, retriever, files = indexed
    for mode in ("hybrid", "bm25", "dense"):
        hits = retriever.search("How many crates of cloudberry jam are in the warehouse?", k=3, mode=mode)
        assert hits and hits[0].path == str(files["pdf"].resolve()) and hits[0].page == 2, mode
    # Paraphrase with no shared keywords: only the dense side can find it.
    dense = retriever.search("Which mountain in Italy erupts most often?", k=1, mode="dense")
    assert dense[0].path.endswith("page.html") and dense[0].heading == "Volcanoes > Etna"
    hybrid = retriever.search("Which mountain in Italy erupts most often?", k=2)
    assert any(h.path.endswith("page.html") for h in hybrid)


def test_fusion_reports_both_ranks(indexed):
    _store, _documents, retriever, _files = indexed
    hit = retriever.search("barrel adjuster brake cable tension", k=1)[0]
    assert hit.path.endswith("manual.rst") and hit.heading == "Bicycle Manual > Brakes"
    assert hit.bm25_rank == 1 and hit.dense_rank == 1 and hit.dense_score > 0.4
    assert hit.score == pytest.approx(2 / 61)
    assert hit.location() == "Bicycle Manual > Brakes"


def test_scopes(indexed):
    _store, documents, retriever, files = indexed
    work = Scope(collections=[documents.collection_id("work")])
    hits = retriever.search("volcano Etna Sicily", k=5, scope=work)
    assert hits and all(h.path.endswith((".pdf", ".docx")) for h in hits)
    docx_id = next(f["id"] for f in documents.list() if f["path"].endswith(".docx"))
    only = retriever.search("cloudberry jam crates warehouse", k=5, scope=Scope(files=[docx_id]))
    assert all(h.file_id == docx_id for h in only)


def test_cache_follows_writes(indexed, tmp_path):
    store, documents, retriever, files = indexed
    retriever.search("heron", k=1)
    first = retriever.matrix()
    assert retriever.matrix() is first  # unchanged index: cached
    documents.remove(str(files["txt"]))
    second = retriever.matrix()
    assert second is not first and len(second.ids) < len(first.ids)
    assert not any(h.path.endswith("notes.txt") for h in retriever.search("blue heron willow pond", k=5))


def test_ivf_index_agrees_with_exact_scan(indexed):
    store, _documents, _retriever, _files = indexed
    rng = np.random.default_rng(1)
    with store.reading() as conn:
        file_n = conn.execute("SELECT n FROM doc_files LIMIT 1").fetchone()[0]
    centers = rng.normal(size=(30, 384)).astype(np.float32)
    vectors = centers[rng.integers(0, 30, 3000)] + rng.normal(0, 0.3, (3000, 384)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    with store.transaction() as conn:
        conn.executemany("INSERT INTO doc_chunks (file_n, ordinal, text, embedding) VALUES (?, ?, ?, ?)",
                         [(file_n, 1000 + i, f"synthetic {i}", v.tobytes()) for i, v in enumerate(vectors)])
        conn.execute("UPDATE doc_index_state SET generation = generation + 1")
    ivf = Retriever(store, lambda texts: None, ivf_threshold=1000, nprobe=24)
    assert ivf.matrix().ivf is not None
    agree = []
    for q in vectors[:20] + rng.normal(0, 0.05, (20, 384)).astype(np.float32):
        q = q / np.linalg.norm(q)
        exact = {c for c, _ in ivf.dense(q, k=10, exact=True)}
        approx = {c for c, _ in ivf.dense(q, k=10)}
        agree.append(len(exact & approx) / 10)
    assert np.mean(agree) >= 0.9


def test_bm25_term_pruning_follows_the_index(indexed):
    """Near-ubiquitous terms leave a large collection's BM25 query; the document counts
    behind that are cached per index generation, so new chunks change the decision."""
    store, _documents, _retriever, _files = indexed
    with store.reading() as conn:
        file_n = conn.execute("SELECT n FROM doc_files LIMIT 1").fetchone()[0]

    def add(texts: list[str], start: int) -> None:
        with store.transaction() as conn:
            conn.executemany("INSERT INTO doc_chunks (file_n, ordinal, text) VALUES (?, ?, ?)",
                             [(file_n, start + i, t) for i, t in enumerate(texts)])
            conn.execute("UPDATE doc_index_state SET generation = generation + 1")

    retriever = Retriever(store, lambda texts: None)
    add([f"filler passage {i}" for i in range(2400)] + [f"common zebra {i}" for i in range(100)], 10_000)
    query = fts_query("common zebra")
    assert retriever._prune(query) == query  # "common" is in 4% of the chunks: kept
    assert retriever._prune(query) == query  # from the cache: same answer
    add([f"common word {i}" for i in range(400)], 20_000)  # now in ~17%
    assert retriever._prune(query) == '"zebra"'
    hits = retriever.bm25("common zebra", k=5)
    with store.reading() as conn:
        texts = [conn.execute("SELECT text FROM doc_chunks WHERE n = ?", (c,)).fetchone()[0] for c, _ in hits]
    assert len(texts) == 5 and all("zebra" in t for t in texts)
