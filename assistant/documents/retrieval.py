"""Hybrid retrieval over document chunks: FTS5 BM25 and dense vectors, fused by RRF.

Threading: a :class:`Retriever` may be used from any worker thread (not the GUI thread: a
query embeds through the engine and reads the store); its in-memory vector matrix is
guarded by a lock and rebuilt when the index generation (bumped by every write in
``assistant.documents.collections``) moves.

Dense search is an exact dot product over every vector while the collection is small;
from :data:`IVF_THRESHOLD` chunks on, an inverted-file index (k-means centroids in numpy)
narrows the search to the ``nprobe`` nearest lists (``benchmarks/retrieval.py`` measures
both, and the recall the index keeps).
"""

from __future__ import annotations

import re
import threading
from dataclasses import asdict, dataclass
from typing import Callable, Iterable

import numpy as np

from assistant.store import Store

#: Reciprocal rank fusion constant from Cormack et al. (2009); 60 is the usual choice.
RRF_K = 60
#: Candidates taken from each retriever before fusion.
CANDIDATES = 50
#: From this many chunks on the dense search uses the IVF index instead of a full scan.
IVF_THRESHOLD = 20_000
#: Query terms found in more than this share of chunks are dropped from the BM25 query
#: (when others remain): their IDF is near zero, so they barely move the ranking, but
#: scoring their posting lists is most of the query time in a large collection.
MAX_TERM_SHARE = 0.08

# Question words carry no topic; dropping them keeps BM25 from scanning every chunk's
# posting list for "what" and "the" (a large share of query time at 50k chunks).
STOPWORDS = frozenset("""a an and are as at be by can do does did for from how i if in is it its of on or
so than that the their them then there these this to was what when where which who why will with you your
about into not no yes should would could may might must shall has have had been being we they he she our""".split())


def _scores(matrix: np.ndarray, query: np.ndarray) -> np.ndarray:
    """``matrix @ query`` without BLAS. OpenBLAS splits even a 1,300 x 384 product over its
    threads, and on a busy machine (or beside the engine worker embedding the question)
    waiting for them costs tens of milliseconds; numpy's own single-threaded loop takes
    0.1 ms there (p50 against ~40 ms, measured side by side on a loaded two-core machine)
    and is faster at 50,000 rows too."""
    return np.einsum("ij,j->i", matrix, query)


@dataclass
class Hit:
    chunk_id: int
    file_id: int
    path: str
    title: str
    heading: str
    page: int | None
    text: str
    score: float  # fused (RRF) score, or the single retriever's score
    bm25_rank: int | None = None  # 1-based rank in the BM25 list, None if absent
    dense_rank: int | None = None
    dense_score: float | None = None  # cosine similarity with the question

    def to_dict(self) -> dict:
        return asdict(self)

    def location(self) -> str:
        """"page 3" or "Specification > Generic protocols": where the passage is."""
        if self.page:
            return f"page {self.page}" + (f", {self.heading}" if self.heading else "")
        return self.heading or "(beginning)"


@dataclass
class Scope:
    """Which chunks a query may see: all, some collections, or a conversation's files."""

    collections: list[int] | None = None  # collection ids
    files: list[int] | None = None  # file ids (attached documents)

    def is_all(self) -> bool:
        return self.collections is None and self.files is None


def fts_query(text: str) -> str:
    """A safe FTS5 query: each content word quoted, joined by OR (BM25 ranks the overlap)."""
    words = re.findall(r"\w+", text.lower())
    terms = [w for w in words if w not in STOPWORDS and len(w) > 1] or [w for w in words if w]
    seen: list[str] = []
    for word in terms:
        if word not in seen:
            seen.append(word)
    return " OR ".join(f'"{w}"' for w in seen[:32])


class _IVF:
    """Inverted-file index: vectors grouped by their nearest of ``nlist`` k-means centroids."""

    def __init__(self, matrix: np.ndarray, nlist: int, seed: int = 0, iterations: int = 8):
        rng = np.random.default_rng(seed)
        sample = matrix[rng.choice(len(matrix), size=min(len(matrix), nlist * 40), replace=False)]
        centroids = sample[rng.choice(len(sample), size=nlist, replace=False)].copy()
        for _ in range(iterations):  # spherical k-means on a sample: fast and good enough for lists
            assign = np.argmax(sample @ centroids.T, axis=1)
            for c in range(nlist):
                members = sample[assign == c]
                if len(members):
                    mean = members.sum(axis=0)
                    centroids[c] = mean / max(np.linalg.norm(mean), 1e-12)
        self.centroids = centroids.astype(np.float32)
        assign = np.empty(len(matrix), dtype=np.int64)
        for start in range(0, len(matrix), 8192):
            assign[start:start + 8192] = np.argmax(matrix[start:start + 8192] @ self.centroids.T, axis=1)
        order = np.argsort(assign, kind="stable")
        self.order = order  # row numbers grouped by list
        self.bounds = np.searchsorted(assign[order], np.arange(nlist + 1))
        self.sorted_matrix = np.ascontiguousarray(matrix[order])

    def search(self, query: np.ndarray, nprobe: int, mask: np.ndarray | None, k: int) -> tuple[np.ndarray, np.ndarray]:
        lists = np.argpartition(-_scores(self.centroids, query), min(nprobe, len(self.centroids)) - 1)[:nprobe]
        rows = np.concatenate([np.arange(self.bounds[c], self.bounds[c + 1]) for c in lists])
        scores = _scores(self.sorted_matrix[rows], query)
        original = self.order[rows]
        if mask is not None:
            keep = mask[original]
            scores, original = scores[keep], original[keep]
        if len(scores) > k:
            top = np.argpartition(-scores, k - 1)[:k]
            top = top[np.argsort(-scores[top])]
        else:
            top = np.argsort(-scores)
        return original[top], scores[top]


@dataclass
class _Matrix:
    generation: int
    ids: np.ndarray  # chunk ids, row order
    files: np.ndarray  # file id per row
    collections: np.ndarray  # collection id per row
    matrix: np.ndarray  # (n, dim) float32 unit vectors
    ivf: _IVF | None = None


class Retriever:
    """BM25 + dense + RRF over the documents in ``store``; see the module docstring."""

    def __init__(self, store: Store, embed: Callable[[list[str]], np.ndarray], ivf_threshold: int = IVF_THRESHOLD,
                 nprobe: int = 24):
        self.store = store
        self.embed = embed
        self.ivf_threshold = ivf_threshold
        self.nprobe = nprobe  # lists searched; measured recall vs exact in benchmarks/retrieval.py
        self._lock = threading.Lock()
        self._cache: _Matrix | None = None
        # (index generation, chunk count, {term: document frequency}) for BM25 term pruning.
        self._df_cache: tuple[int, int | None, dict[str, int]] = (-1, None, {})

    # ----- the vector matrix ------------------------------------------------------------------
    def _generation(self) -> int:
        with self.store.reading() as conn:
            return int(conn.execute("SELECT generation FROM doc_index_state WHERE id = 1").fetchone()[0])

    def matrix(self) -> _Matrix:
        generation = self._generation()
        with self._lock:
            if self._cache is not None and self._cache.generation == generation:
                return self._cache
            with self.store.snapshot() as conn:
                generation = int(conn.execute("SELECT generation FROM doc_index_state WHERE id = 1").fetchone()[0])
                rows = conn.execute("SELECT c.n, c.file_n, f.collection_n, c.embedding FROM doc_chunks c "
                                    "JOIN doc_files f ON f.n = c.file_n WHERE c.embedding IS NOT NULL ORDER BY c.n").fetchall()
            if rows:
                ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
                files = np.fromiter((r[1] for r in rows), dtype=np.int64, count=len(rows))
                collections = np.fromiter((r[2] for r in rows), dtype=np.int64, count=len(rows))
                matrix = np.frombuffer(b"".join(r[3] for r in rows), dtype=np.float32).reshape(len(rows), -1)
            else:
                ids = files = collections = np.zeros(0, dtype=np.int64)
                matrix = np.zeros((0, 384), dtype=np.float32)
            cache = _Matrix(generation, ids, files, collections, matrix)
            if len(rows) >= self.ivf_threshold:
                cache.ivf = _IVF(matrix, nlist=int(4 * np.sqrt(len(rows))))
            self._cache = cache
            return cache

    def invalidate(self) -> None:
        with self._lock:
            self._cache = None

    # ----- single retrievers --------------------------------------------------------------------
    def _prune(self, match: str) -> str:
        """Drop near-ubiquitous terms (see :data:`MAX_TERM_SHARE`) from an OR query."""
        terms = match.split(" OR ")
        if len(terms) < 2:
            return match
        words = [t.strip('"') for t in terms]
        # Counts are cached per index generation: the chunk count and the terms' document
        # frequencies were a few ms of every query at 50,000 chunks, and they only change
        # when documents do.
        generation = self._generation()
        with self._lock:
            if self._df_cache[0] != generation:
                self._df_cache = (generation, None, {})
            _, total, cached = self._df_cache
            df = {w: cached[w] for w in words if w in cached}
        with self.store.reading() as conn:
            if total is None:
                total = int(conn.execute("SELECT COUNT(*) FROM doc_chunks").fetchone()[0])
            if total < 2000:
                new_df = {}
            else:
                missing = [w for w in dict.fromkeys(words) if w not in df]
                new_df = {w: 0 for w in missing}
                if missing:
                    conn.execute("CREATE VIRTUAL TABLE IF NOT EXISTS temp.doc_chunks_vocab "
                                 "USING fts5vocab(main, doc_chunks_fts, row)")
                    new_df.update(conn.execute(f"SELECT term, doc FROM temp.doc_chunks_vocab WHERE term IN "
                                               f"({','.join('?' * len(missing))})", missing).fetchall())
        with self._lock:
            if self._df_cache[0] == generation:
                self._df_cache[2].update(new_df)
                self._df_cache = (generation, total, self._df_cache[2])
        if total < 2000:
            return match  # small collections are fast anyway; keep every signal
        df.update(new_df)
        kept = [t for t in terms if df.get(t.strip('"'), 0) <= MAX_TERM_SHARE * total]
        return " OR ".join(kept) if kept else match

    def bm25(self, query: str, k: int = CANDIDATES, scope: Scope | None = None) -> list[tuple[int, float]]:
        """(chunk id, BM25 score; lower is better as FTS5 reports it) best first."""
        match = fts_query(query)
        if not match:
            return []
        match = self._prune(match)
        sql = ("SELECT doc_chunks_fts.rowid, bm25(doc_chunks_fts, 1.0, 2.0, 1.0) AS score FROM doc_chunks_fts")
        where = ["doc_chunks_fts MATCH ?"]
        args: list = [match]
        if scope is not None and not scope.is_all():
            sql += " JOIN doc_chunks c ON c.n = doc_chunks_fts.rowid JOIN doc_files f ON f.n = c.file_n"
            if scope.collections is not None:
                where.append(f"f.collection_n IN ({','.join('?' * len(scope.collections)) or 'NULL'})")
                args.extend(scope.collections)
            if scope.files is not None:
                where.append(f"f.n IN ({','.join('?' * len(scope.files)) or 'NULL'})")
                args.extend(scope.files)
        sql += " WHERE " + " AND ".join(where) + " ORDER BY score LIMIT ?"
        args.append(int(k))
        with self.store.reading() as conn:
            return [(int(r[0]), float(r[1])) for r in conn.execute(sql, args)]

    def dense(self, query: str | np.ndarray, k: int = CANDIDATES, scope: Scope | None = None,
              exact: bool | None = None) -> list[tuple[int, float]]:
        """(chunk id, cosine) best first; ``exact`` forces (True) or forbids (False) the full scan."""
        vector = self.embed([query])[0] if isinstance(query, str) else query
        vector = np.asarray(vector, dtype=np.float32)
        cache = self.matrix()
        if not len(cache.ids):
            return []
        mask = None
        if scope is not None and not scope.is_all():
            mask = np.ones(len(cache.ids), dtype=bool)
            if scope.collections is not None:
                mask &= np.isin(cache.collections, scope.collections)
            if scope.files is not None:
                mask &= np.isin(cache.files, scope.files)
        use_ivf = cache.ivf is not None and exact is not True
        if use_ivf:
            rows, scores = cache.ivf.search(vector, self.nprobe, mask, k)
        else:
            scores = _scores(cache.matrix, vector)
            if mask is not None:
                scores = np.where(mask, scores, -np.inf)
            k_eff = min(k, len(scores))
            rows = np.argpartition(-scores, k_eff - 1)[:k_eff]
            rows = rows[np.argsort(-scores[rows])]
            rows = rows[np.isfinite(scores[rows])]
            scores = scores[rows]
        return [(int(cache.ids[r]), float(s)) for r, s in zip(rows, scores)]

    # ----- hybrid -----------------------------------------------------------------------------
    def search(self, query: str, k: int = 5, scope: Scope | None = None, mode: str = "hybrid") -> list[Hit]:
        """The ``k`` best passages for ``query``; ``mode`` "hybrid", "bm25" or "dense"."""
        vector: list = []
        embedder = None
        if mode in ("hybrid", "dense"):
            # The question is embedded in the engine process while this thread runs BM25:
            # the two overlap, so a hybrid query costs about the slower of them, not the sum.
            def embed_question() -> None:
                try:
                    vector.append(self.embed([query])[0])
                except BaseException as exc:  # re-raised on the caller's thread below
                    vector.append(exc)

            embedder = threading.Thread(target=embed_question, name="retrieval-embed", daemon=True)
            embedder.start()
        try:
            bm25 = self.bm25(query, CANDIDATES, scope) if mode in ("hybrid", "bm25") else []
        finally:
            if embedder is not None:
                embedder.join()
        if vector and isinstance(vector[0], BaseException):
            raise vector[0]
        dense = self.dense(np.asarray(vector[0], dtype=np.float32), CANDIDATES, scope) if vector else []
        fused: dict[int, float] = {}
        for ranked in (bm25, dense):
            for rank, (chunk_id, _score) in enumerate(ranked, 1):
                fused[chunk_id] = fused.get(chunk_id, 0.0) + 1.0 / (RRF_K + rank)
        best = sorted(fused, key=lambda c: -fused[c])[:k]
        bm25_rank = {c: r for r, (c, _) in enumerate(bm25, 1)}
        dense_rank = {c: r for r, (c, _) in enumerate(dense, 1)}
        dense_score = dict(dense)
        details = self._details(best)
        hits = []
        for chunk_id in best:
            row = details.get(chunk_id)
            if row is None:
                continue  # removed between the two reads
            hits.append(Hit(chunk_id=chunk_id, file_id=row[0], path=row[1], title=row[2], heading=row[3], page=row[4],
                            text=row[5], score=fused[chunk_id], bm25_rank=bm25_rank.get(chunk_id),
                            dense_rank=dense_rank.get(chunk_id), dense_score=dense_score.get(chunk_id)))
        return hits

    def _details(self, chunk_ids: Iterable[int]) -> dict[int, tuple]:
        ids = list(chunk_ids)
        if not ids:
            return {}
        with self.store.reading() as conn:
            rows = conn.execute(f"SELECT c.n, f.n, f.path, c.title, c.heading, c.page, c.text FROM doc_chunks c "
                                f"JOIN doc_files f ON f.n = c.file_n WHERE c.n IN ({','.join('?' * len(ids))})", ids).fetchall()
        return {r[0]: r[1:] for r in rows}
