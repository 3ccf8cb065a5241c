"""BERT sentence embeddings computed with numpy's BLAS, from the weights of a GGUF file.

Runs only inside the engine worker process (or a training job's process), on the thread that
calls :meth:`BertEncoder.encode`, which spreads the work over ``threads`` pool threads of its own.

Why not llama.cpp here: an embedding model such as MiniLM is a stack of small matrix products
(a ~150-token passage is a 150 x 384 matrix) whose speed is the matrix-multiply kernel's, and
llama.cpp's CPU kernels stay well below numpy's OpenBLAS on the same cores on these shapes,
whatever the batch shape (``benchmarks/retrieval.py`` measures both in one run). So the encoder runs the same network with the same weights (read from the GGUF, F16
matrices widened to F32) as BLAS products: passages of like length go together in groups of at
most :data:`GROUP_TOKENS` (padding is masked out of attention and pooling), one group per pool
thread, each thread's BLAS on one core, so the element-wise work (GELU, softmax, layer norm),
which numpy does on one core, runs on every core too. Tokenization stays llama.cpp's (the
caller's), so the tokens, and thus the vectors, are the ones the llama.cpp path makes.

Only what llama.cpp's ``bert`` architecture with mean pooling is: :func:`load` returns None for
any other file (another architecture, CLS pooling, quantized weights), and the caller keeps
llama.cpp for it.
"""

from __future__ import annotations

import math
import struct
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

#: Tokens (padded) of one group, the unit of work of a pool thread: 512 against 1,024 and 2,048,
#: measured on the chunks of the first four typing PEPs (part of the retrieval benchmark's
#: corpus: a speed setting, chosen before its run); larger groups were slower.
GROUP_TOKENS = 512
#: llama.cpp's pooling_type for mean pooling (LLAMA_POOLING_TYPE_MEAN).
MEAN_POOLING = 1
_FLOAT_TYPES = {"F16", "F32"}
_GELU_C = math.sqrt(2.0 / math.pi)
#: -2y = x * (_GELU_LINEAR + _GELU_CUBE * x^2), y being the tanh form's argument.
_GELU_LINEAR = -2.0 * _GELU_C
_GELU_CUBE = -2.0 * _GELU_C * 0.044715


@dataclass
class _Layer:
    qkv_w: np.ndarray  # (hidden, 3 * hidden): queries, keys, values side by side
    qkv_b: np.ndarray
    out_w: np.ndarray
    out_b: np.ndarray
    norm1_w: np.ndarray
    norm1_b: np.ndarray
    up_w: np.ndarray
    up_b: np.ndarray
    down_w: np.ndarray
    down_b: np.ndarray
    norm2_w: np.ndarray
    norm2_b: np.ndarray


def _field(reader, key: str):
    field = reader.fields.get(key)
    if field is None or not field.data:
        return None
    value = field.parts[field.data[0]]
    if field.types and field.types[0].name == "STRING":
        return bytes(value).decode("utf-8", "replace")
    return value.tolist()[0] if hasattr(value, "tolist") else value


def load(path: str) -> "BertEncoder | None":
    """The encoder for a GGUF of llama.cpp's ``bert`` architecture with mean pooling and F16 or
    F32 weights, or None when the file is anything else (the caller then uses llama.cpp)."""
    import gguf

    try:
        reader = gguf.GGUFReader(path)
    except (OSError, ValueError, IndexError, KeyError, struct.error):
        return None  # not a GGUF this reader can read: llama.cpp's load says what is wrong with it
    if _field(reader, "general.architecture") != "bert":
        return None
    if _field(reader, "bert.pooling_type") != MEAN_POOLING or _field(reader, "bert.attention.causal"):
        return None
    tensors = {t.name: t for t in reader.tensors}
    if any(t.tensor_type.name not in _FLOAT_TYPES for t in tensors.values()):
        return None
    hidden = int(_field(reader, "bert.embedding_length") or 0)
    heads = int(_field(reader, "bert.attention.head_count") or 0)
    blocks = int(_field(reader, "bert.block_count") or 0)
    epsilon = float(_field(reader, "bert.attention.layer_norm_epsilon") or 1e-12)
    if not hidden or not heads or not blocks or hidden % heads:
        return None

    query_scale = np.float32(1.0 / math.sqrt(hidden // heads))

    def weight(name: str) -> np.ndarray:
        return np.asarray(tensors[name].data, dtype=np.float32)

    try:
        layers = []
        for i in range(blocks):
            def w(part: str, i=i) -> np.ndarray:
                return weight(f"blk.{i}.{part}")

            layers.append(_Layer(
                # GGUF keeps a Linear's weight as (out, in); x @ weight.T is the product.
                # Queries carry attention's 1/sqrt(head size): one pass fewer over the scores.
                qkv_w=np.ascontiguousarray(np.concatenate([w("attn_q.weight") * query_scale, w("attn_k.weight"),
                                                           w("attn_v.weight")]).T),
                qkv_b=np.concatenate([w("attn_q.bias") * query_scale, w("attn_k.bias"), w("attn_v.bias")]),
                out_w=np.ascontiguousarray(w("attn_output.weight").T), out_b=w("attn_output.bias"),
                norm1_w=w("attn_output_norm.weight"), norm1_b=w("attn_output_norm.bias"),
                up_w=np.ascontiguousarray(w("ffn_up.weight").T), up_b=w("ffn_up.bias"),
                down_w=np.ascontiguousarray(w("ffn_down.weight").T), down_b=w("ffn_down.bias"),
                norm2_w=w("layer_output_norm.weight"), norm2_b=w("layer_output_norm.bias")))
        encoder = BertEncoder(
            token_embd=weight("token_embd.weight"), position_embd=weight("position_embd.weight"),
            token_type0=weight("token_types.weight")[0], embd_norm_w=weight("token_embd_norm.weight"),
            embd_norm_b=weight("token_embd_norm.bias"), layers=layers, heads=heads, epsilon=epsilon)
    except (KeyError, ValueError, IndexError):
        return None  # a tensor missing or of another shape: not the BERT this code computes
    if encoder.token_embd.shape[1] != hidden or layers[0].qkv_w.shape != (hidden, 3 * hidden):
        return None
    return encoder


class _Buffers:
    """One thread's float32 work arrays, kept between groups and grown when a group needs more."""

    def __init__(self):
        self._flat: dict[str, np.ndarray] = {}

    def take(self, name: str, shape: tuple[int, ...]) -> np.ndarray:
        """A C-contiguous array of ``shape`` over the buffer ``name`` (its contents are stale)."""
        need = math.prod(shape)
        flat = self._flat.get(name)
        if flat is None or flat.size < need:
            flat = self._flat[name] = np.empty(need, dtype=np.float32)
        return flat[:need].reshape(shape)


class BertEncoder:
    """The network's weights in F32 and the forward pass; see the module docstring."""

    def __init__(self, *, token_embd, position_embd, token_type0, embd_norm_w, embd_norm_b, layers, heads, epsilon):
        self.token_embd, self.position_embd, self.token_type0 = token_embd, position_embd, token_type0
        self.embd_norm_w, self.embd_norm_b = embd_norm_w, embd_norm_b
        self.layers: list[_Layer] = layers
        self.heads = int(heads)
        self.epsilon = float(epsilon)
        self.hidden = int(token_embd.shape[1])
        self.max_positions = int(position_embd.shape[0])
        # Kept between calls: a new thread's first BLAS call allocates OpenBLAS's buffers for it.
        self._pool: ThreadPoolExecutor | None = None
        self._pool_size = 0
        self._local = threading.local()

    def close(self) -> None:
        """Stop the pool threads (the caller's thread; waits for none running: calls are serial)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
        self._pool, self._pool_size = None, 0

    # ----- the forward pass ---------------------------------------------------------------
    def _layer_norm(self, x: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
        """Layer norm of each row of ``x``, in place."""
        x -= x.mean(axis=1, keepdims=True)
        variance = np.einsum("ij,ij->i", x, x)
        variance /= x.shape[1]
        variance += self.epsilon
        x *= (1.0 / np.sqrt(variance))[:, None]
        x *= weight
        x += bias
        return x

    @staticmethod
    def _gelu(x: np.ndarray, out: np.ndarray) -> np.ndarray:
        """GELU in its tanh form, as llama.cpp's BERT computes it, written as
        ``x * sigmoid(2 * y)`` (the same function: ``(1 + tanh(y)) / 2 == sigmoid(2 * y)``),
        because numpy's ``exp`` is several times faster than its ``tanh``. Into ``out``."""
        t = np.multiply(x, x, out=out)
        t *= _GELU_CUBE
        t += _GELU_LINEAR
        t *= x  # t = -2y
        with np.errstate(over="ignore"):  # exp(-2y) overflows to inf for very negative x: x / inf = -0
            np.exp(t, out=t)
        t += 1.0
        np.divide(x, t, out=t)
        return t

    def _buffers(self) -> "_Buffers":
        """This thread's work arrays (each pool thread has its own)."""
        buffers = getattr(self._local, "buffers", None)
        if buffers is None:
            buffers = self._local.buffers = _Buffers()
        return buffers

    def forward(self, group: list[list[int]]) -> np.ndarray:
        """Mean-pooled, unit-length vectors of a group of token lists (each at most
        ``max_positions`` long), one row each.

        Every large array is a view of this thread's reused buffers (``out=`` everywhere):
        allocating fresh megabytes per product cost page faults worth about a tenth of the time."""
        count, longest = len(group), max(len(tokens) for tokens in group)
        ids = np.zeros((count, longest), dtype=np.int64)
        lengths = np.array([len(tokens) for tokens in group])
        for row, tokens in enumerate(group):
            ids[row, :len(tokens)] = tokens
        real = np.arange(longest)[None, :] < lengths[:, None]
        hidden, heads = self.hidden, self.heads
        size = hidden // heads
        rows = count * longest
        take = self._buffers().take
        x, spare = take("x", (rows, hidden)), take("spare", (rows, hidden))
        qkv, wide, gelu = take("qkv", (rows, 3 * hidden)), take("wide", (rows, 4 * hidden)), take("gelu", (rows, 4 * hidden))
        scores = take("scores", (count, heads, longest, longest))
        by_head, attended = take("by_head", (count, heads, longest, size)), take("attended", (rows, hidden))
        np.take(self.token_embd, ids.reshape(-1), axis=0, out=x)
        x.reshape(count, longest, hidden)[...] += self.position_embd[:longest][None]
        x += self.token_type0
        self._layer_norm(x, self.embd_norm_w, self.embd_norm_b)
        # Padding keys get -inf-like scores: a passage never attends to the zeros after it.
        padding = None if real.all() else np.where(real, 0.0, -1e9).astype(np.float32)[:, None, None, :]
        for layer in self.layers:
            np.matmul(x, layer.qkv_w, out=qkv)
            qkv += layer.qkv_b
            parts = qkv.reshape(count, longest, 3, heads, size).transpose(2, 0, 3, 1, 4)
            np.matmul(parts[0], parts[1].transpose(0, 1, 3, 2), out=scores)
            if padding is not None:
                scores += padding
            scores -= scores.max(axis=-1, keepdims=True)
            np.exp(scores, out=scores)
            total = scores.sum(axis=-1, keepdims=True)
            scores *= np.reciprocal(total, out=total)
            np.matmul(scores, parts[2], out=by_head)
            np.copyto(attended.reshape(count, longest, heads, size), by_head.transpose(0, 2, 1, 3))
            np.matmul(attended, layer.out_w, out=spare)
            spare += layer.out_b
            spare += x
            x, spare = self._layer_norm(spare, layer.norm1_w, layer.norm1_b), x
            np.matmul(x, layer.up_w, out=wide)
            wide += layer.up_b
            np.matmul(self._gelu(wide, gelu), layer.down_w, out=spare)
            spare += layer.down_b
            spare += x
            x, spare = self._layer_norm(spare, layer.norm2_w, layer.norm2_b), x
        x = x.reshape(count, longest, hidden)
        x *= real[..., None]
        pooled = x.sum(axis=1) / lengths[:, None]
        return pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)

    # ----- many texts ---------------------------------------------------------------------
    def encode(self, tokenized: list[list[int]], threads: int, cancel: threading.Event | None = None) -> np.ndarray:
        """Vectors of every token list (rows in the given order). ``threads`` pool threads each
        take groups of like length, their BLAS on one core each; ``cancel`` is checked between
        groups (raises :class:`engine.llama_runtime.Cancelled`)."""
        from threadpoolctl import threadpool_limits

        from engine.llama_runtime import Cancelled

        out = np.zeros((len(tokenized), self.hidden), dtype=np.float32)
        if not tokenized:
            return out
        # Longest first, so each group holds passages of about one length (little padding).
        order = sorted(range(len(tokenized)), key=lambda i: -len(tokenized[i]))
        groups, start = [], 0
        while start < len(order):
            per_group = max(1, GROUP_TOKENS // max(1, len(tokenized[order[start]])))
            groups.append(order[start:start + per_group])
            start += per_group

        def run(rows: list[int]) -> None:
            if cancel is not None and cancel.is_set():
                raise Cancelled()
            out[rows] = self.forward([tokenized[i] for i in rows])

        with threadpool_limits(limits=1, user_api="blas"):
            if threads <= 1 or len(groups) == 1:
                for rows in groups:
                    run(rows)
            else:
                if self._pool_size != threads:
                    self.close()
                    self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="bert")
                    self._pool_size = threads
                futures = [self._pool.submit(run, rows) for rows in groups]
                try:
                    for future in futures:
                        future.result()
                finally:
                    for future in futures:  # a cancel or an error: the groups not started are dropped
                        future.cancel()
        return out
