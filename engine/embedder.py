"""Sentence embeddings through llama.cpp: a GGUF BERT model in an embedding context.

Runs only inside the engine worker process (or a training job's process), on its request
thread (llama.cpp contexts are not thread-safe). Tokens always come from llama.cpp's tokenizer
of the file. A BERT with mean pooling and F16/F32 weights (MiniLM, the sentiment students'
encoders) is then computed by :mod:`engine.bert_numpy` on numpy's BLAS, which is faster here;
any other embedding GGUF goes through llama.cpp: several texts in one ``llama_encode`` call,
each as its own sequence, mean-pooled by llama.cpp (``llama_get_embeddings_seq``). Either way
the vectors come back L2-normalised, float32, as sentence-transformers' all-MiniLM-L6-v2
pipeline (mean pooling + Normalize) makes them.
"""

from __future__ import annotations

import threading
import time

import llama_cpp
import numpy as np

from engine.llama_context import EngineError, free_llama, load_model, new_context, tokenize
from engine.llama_runtime import Cancelled

#: sentence-transformers truncates MiniLM's input at 256 tokens (sentence_bert_config.json);
#: doing the same keeps the vectors identical for long passages.
MAX_SEQ_TOKENS = 256


class Embedder:
    """One embedding model and context; :meth:`embed` turns texts into unit vectors."""

    def __init__(self, path: str, n_threads: int = 2, n_batch: int = MAX_SEQ_TOKENS, n_seq_max: int = 32,
                 max_tokens: int = MAX_SEQ_TOKENS, force_llama: bool = False):
        """``n_batch`` tokens go into one ``llama_encode`` (its micro-batch too). Keep it near
        ``max_tokens``: attention in a non-causal micro-batch spans all of its tokens (other
        sequences' are masked, not skipped): passages of the typing PEPs embed 1.23x faster
        per CPU-second at 256 than at the 1024 used before (measured side by side). ``n_seq_max``
        bounds how many short texts (questions) share one call. Both shape llama.cpp's path only.
        ``force_llama`` keeps llama.cpp even for a BERT numpy computes (the benchmark's baseline,
        the tests that compare the two)."""
        from engine import bert_numpy

        self.path = path
        self.max_tokens = int(max_tokens)
        self.n_threads = max(1, int(n_threads))
        self._cancel = threading.Event()
        self._abort_cb = llama_cpp.ggml_abort_callback(lambda _data: self._cancel.is_set())
        self.ctx = self._batch = None
        #: The numpy forward pass when the file is a BERT it computes, else None (llama.cpp's).
        self.numpy_encoder = None if force_llama else bert_numpy.load(path)
        self.model = load_model(path, what="the embedding model", vocab_only=self.numpy_encoder is not None)
        self.vocab = llama_cpp.llama_model_get_vocab(self.model)
        self.n_embd = int(llama_cpp.llama_model_n_embd(self.model))
        n_ctx_train = int(llama_cpp.llama_model_n_ctx_train(self.model))
        self.max_tokens = min(self.max_tokens, n_ctx_train) if n_ctx_train > 0 else self.max_tokens
        if self.numpy_encoder is not None:
            self.max_tokens = min(self.max_tokens, self.numpy_encoder.max_positions)
        # A non-causal model needs each sequence whole inside one micro-batch, so the batch
        # and micro-batch are equal and at least one maximal sequence long.
        self.n_batch = max(int(n_batch), self.max_tokens)
        self.n_seq_max = max(1, int(n_seq_max))
        if self.numpy_encoder is not None:
            return
        try:
            self.ctx = new_context(self.model, n_ctx=self.n_batch, n_batch=self.n_batch, n_threads=self.n_threads,
                                   n_seq_max=self.n_seq_max, embeddings=True,
                                   failure=f"llama.cpp could not create an embedding context for {path}.")
            self._batch = llama_cpp.llama_batch_init(self.n_batch, 0, self.n_seq_max)
        except BaseException:
            self.close()
            raise

    @property
    def backend(self) -> str:
        """"numpy" or "llama.cpp": which computes the vectors (reported in the metrics)."""
        return "numpy" if self.numpy_encoder is not None else "llama.cpp"

    def set_threads(self, n_threads: int) -> None:
        """Use ``n_threads`` cores for the next :meth:`embed` (the worker lowers it while other
        programs keep cores busy, see :mod:`engine.threads`)."""
        self.n_threads = max(1, int(n_threads))
        if self.ctx is not None:
            llama_cpp.llama_set_n_threads(self.ctx, self.n_threads, self.n_threads)

    def tokenize(self, text: str) -> list[int]:
        """WordPiece tokens with [CLS] and [SEP], truncated as sentence-transformers does."""
        tokens = tokenize(self.vocab, text, add_special=True, parse_special=False, errors="replace")
        if len(tokens) > self.max_tokens:
            tokens = tokens[: self.max_tokens - 1] + tokens[-1:]  # keep the closing [SEP]
        return tokens

    def _encode(self, groups: list[list[int]], out: np.ndarray, rows: list[int]) -> None:
        batch = self._batch
        n = 0
        for seq, tokens in enumerate(groups):
            for pos, token in enumerate(tokens):
                batch.token[n] = token
                batch.pos[n] = pos
                batch.n_seq_id[n] = 1
                batch.seq_id[n][0] = seq
                batch.logits[n] = True
                n += 1
        batch.n_tokens = n
        rc = llama_cpp.llama_encode(self.ctx, batch)
        if rc != 0:
            if self._cancel.is_set():
                raise Cancelled()
            raise EngineError(f"llama.cpp failed to embed (code {rc}).")
        for seq, row in enumerate(rows):
            ptr = llama_cpp.llama_get_embeddings_seq(self.ctx, seq)
            if not ptr:
                raise EngineError("llama.cpp returned no embedding; is this an embedding model?")
            out[row] = np.ctypeslib.as_array(ptr, shape=(self.n_embd,))

    def embed(self, texts: list[str], cancel: threading.Event | None = None) -> tuple[np.ndarray, dict]:
        """Unit-length float32 vectors, one row per text, and metrics (tokens, ms, texts/s)."""
        self._cancel = cancel if cancel is not None else threading.Event()
        started = time.perf_counter()
        tokenized = [self.tokenize(t) for t in texts]
        if self.numpy_encoder is not None:
            out = self.numpy_encoder.encode(tokenized, self.n_threads, cancel=self._cancel)
            return out, self._metrics(texts, tokenized, started)
        out = np.zeros((len(texts), self.n_embd), dtype=np.float32)
        groups: list[list[int]] = []
        rows: list[int] = []
        used = 0
        # Longest first: texts of like length share a call, so calls are full and short
        # texts do not each pay a call of their own between long ones.
        order = sorted(range(len(tokenized)), key=lambda i: -len(tokenized[i]))
        llama_cpp.llama_set_abort_callback(self.ctx, self._abort_cb, None)
        try:
            for row in order:
                tokens = tokenized[row]
                if groups and (used + len(tokens) > self.n_batch or len(groups) >= self.n_seq_max):
                    self._encode(groups, out, rows)
                    groups, rows, used = [], [], 0
                if self._cancel.is_set():
                    raise Cancelled()
                groups.append(tokens)
                rows.append(row)
                used += len(tokens)
            if groups:
                self._encode(groups, out, rows)
        finally:
            llama_cpp.llama_set_abort_callback(self.ctx, llama_cpp.ggml_abort_callback(), None)
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        out /= np.maximum(norms, 1e-12)
        return out, self._metrics(texts, tokenized, started)

    def _metrics(self, texts: list[str], tokenized: list[list[int]], started: float) -> dict:
        elapsed = time.perf_counter() - started
        return {
            "texts": len(texts),
            "tokens": sum(len(t) for t in tokenized),
            "truncated": sum(1 for t in tokenized if len(t) >= self.max_tokens),
            "embed_ms": elapsed * 1000.0,
            "texts_per_s": len(texts) / elapsed if elapsed > 0 else None,
            "backend": self.backend,
        }

    def close(self) -> None:
        if getattr(self, "numpy_encoder", None) is not None:
            self.numpy_encoder.close()
        free_llama(batch=getattr(self, "_batch", None), ctx=getattr(self, "ctx", None),
                   model=getattr(self, "model", None))
        self._batch = self.ctx = self.model = None
