"""Cutting a student out of a teacher: layer importance, layer dropping, FFN narrowing.

Runs in the training process (``python -m training.run``), main thread, or a benchmark/test.

The student stays an ordinary transformers model of the teacher's class whose config says
what it now is (``num_hidden_layers``, ``intermediate_size``, ``layer_types``), so it saves,
loads and exports to GGUF like any model of that architecture. Its layers are the teacher's
own (DistilBERT's initialisation: "taking one layer out of two"); ``layer_map[s]`` is the
teacher layer student layer ``s`` came from, which the distillation's hidden-state loss uses.
"""

from __future__ import annotations

import copy
import math
from contextlib import contextmanager

import numpy as np
import torch
import torch.nn.functional as F

from training.prune.config import PruneConfig


class PruneError(ValueError):
    """The pruning asked for cannot be done; str() says why."""


def decoder_layers(model) -> torch.nn.ModuleList:
    inner = getattr(model, "model", None)
    layers = getattr(inner, "layers", None)
    if not isinstance(layers, torch.nn.ModuleList):
        raise PruneError(f"{type(model).__name__} has no decoder layer list (model.model.layers); "
                         "only decoder-only language models (llama, gemma3) can be pruned.")
    return layers


def _set_layers(model, layers: list) -> None:
    """Point the model (and its config) at ``layers``; per-layer config lists follow."""
    config = model.config
    old = list(decoder_layers(model))
    index = {id(layer): i for i, layer in enumerate(old)}
    model.model.layers = torch.nn.ModuleList(layers)
    types = getattr(config, "layer_types", None)
    if isinstance(types, (list, tuple)) and len(types) == len(old):
        config.layer_types = [types[index[id(layer)]] for layer in layers]
    config.num_hidden_layers = len(layers)


@contextmanager
def _only_layers(model, keep: list[int]):
    """Run the model with a subset of its layers (for measurement), restoring it after."""
    config = model.config
    saved = (model.model.layers, config.num_hidden_layers, getattr(config, "layer_types", None))
    _set_layers(model, [saved[0][i] for i in keep])
    try:
        yield model
    finally:
        model.model.layers = saved[0]
        config.num_hidden_layers = saved[1]
        if saved[2] is not None:
            config.layer_types = saved[2]


def _batches(blocks: np.ndarray, batch_size: int = 4):
    for start in range(0, len(blocks), batch_size):
        yield torch.from_numpy(np.asarray(blocks[start:start + batch_size], dtype=np.int64))


@torch.no_grad()
def mean_loss(model, blocks: np.ndarray) -> float:
    """Mean next-token loss of ``model`` on token blocks (every position but the first)."""
    model.eval()
    total, count = 0.0, 0
    for ids in _batches(blocks):
        out = model(input_ids=ids, labels=ids, use_cache=False)
        n = ids.numel() - ids.size(0)
        total += float(out.loss) * n
        count += n
    return total / max(1, count)


@torch.no_grad()
def cosine_importance(model, blocks: np.ndarray, active: list[int] | None = None) -> dict[int, float]:
    """Block influence of each active layer: mean (1 - cos(input, output)) over the tokens.

    One forward pass; a layer that barely turns the hidden state is cheap to drop
    (Men et al., "ShortGPT", 2024). Keys are the model's own layer indices.
    """
    layers = decoder_layers(model)
    active = list(range(len(layers))) if active is None else list(active)
    sums = {i: 0.0 for i in active}
    count = 0
    handles = []
    inputs: dict[int, torch.Tensor] = {}

    def pre(i):
        def hook(_module, args, kwargs):
            inputs[i] = args[0] if args else kwargs["hidden_states"]
        return hook

    def post(i):
        def hook(_module, _args, output):
            out = output[0] if isinstance(output, tuple) else output
            sums[i] += float((1.0 - F.cosine_similarity(inputs.pop(i).float(), out.float(), dim=-1)).sum())
        return hook

    for i in active:
        handles.append(layers[i].register_forward_pre_hook(pre(i), with_kwargs=True))
        handles.append(layers[i].register_forward_hook(post(i)))
    model.eval()
    try:
        with _only_layers(model, active):
            for ids in _batches(blocks):
                model.model(input_ids=ids, use_cache=False)
                count += ids.numel()
    finally:
        for handle in handles:
            handle.remove()
    return {i: sums[i] / max(1, count) for i in active}


@torch.no_grad()
def perplexity_importance(model, blocks: np.ndarray, active: list[int] | None = None) -> dict[int, float]:
    """Rise of the mean loss when each active layer alone is skipped (one forward per layer)."""
    n = len(decoder_layers(model))
    active = list(range(n)) if active is None else list(active)
    with _only_layers(model, active):
        base = mean_loss(model, blocks)
    scores = {}
    for i in active:
        with _only_layers(model, [j for j in active if j != i]):
            scores[i] = mean_loss(model, blocks) - base
    return scores


def positional_layer_types(model_type: str | None, n_layers: int) -> list[str] | None:
    """The attention kind llama.cpp gives each of ``n_layers`` blocks where it derives it from
    the block's position alone (Gemma 3: every sixth block global, the rest sliding-window);
    None for architectures whose blocks are all alike (llama)."""
    if model_type in ("gemma3", "gemma3_text"):
        return ["full_attention" if (i + 1) % 6 == 0 else "sliding_attention" for i in range(n_layers)]
    return None


def fit_layer_pattern(teacher_types: list[str], required: list[str], score) -> list[int] | None:
    """Increasing teacher layer indices, one per student slot, each of the kind the slot
    requires, with the largest total ``score(slot, teacher_index)``; None if none exists.

    Dynamic programming over (slot, teacher index): O(slots x layers^2), instant for the
    few dozen layers of a small model.
    """
    n, k = len(teacher_types), len(required)
    NEG = float("-inf")
    best = [[NEG] * n for _ in range(k)]
    back = [[-1] * n for _ in range(k)]
    for s in range(k):
        for i in range(n):
            if teacher_types[i] != required[s]:
                continue
            if s == 0:
                best[s][i] = score(s, i)
                continue
            prev = max(range(i), key=lambda j: best[s - 1][j], default=None)
            if prev is not None and best[s - 1][prev] > NEG:
                best[s][i] = best[s - 1][prev] + score(s, i)
                back[s][i] = prev
    last = max(range(n), key=lambda i: best[k - 1][i]) if k else None
    if last is None or best[k - 1][last] == NEG:
        return None
    chosen = [last]
    for s in range(k - 1, 0, -1):
        chosen.append(back[s][chosen[-1]])
    return chosen[::-1]


def _pattern(model, keep: int) -> tuple[list[str] | None, list[str] | None]:
    """(teacher layer kinds, kinds a ``keep``-layer student must have) where llama.cpp fixes them
    by position; (None, None) otherwise."""
    config = model.config
    types = getattr(config, "layer_types", None)
    required = positional_layer_types(getattr(config, "model_type", None), keep)
    if required is None or not isinstance(types, (list, tuple)):
        return None, None
    return list(types), required


_PATTERN_HELP = ("llama.cpp gives Gemma 3's blocks local or global attention by their position (every sixth "
                 "global), so the student's kept layers must follow that pattern")


def choose_layers(model, config: PruneConfig, calibration: np.ndarray | None, reporter=None) -> tuple[list[int], dict]:
    """Teacher layer indices the student keeps (sorted) and the importance measurements made.

    Where llama.cpp fixes each block's attention kind by its position (Gemma 3), the layers
    are chosen so that the student's pattern is the one llama.cpp will give it: otherwise
    its GGUF would not compute what was trained.
    """
    n = len(decoder_layers(model))
    keep = config.n_keep(n)
    types, required = _pattern(model, keep)
    if config.strategy == "explicit":
        chosen = sorted(set(int(i) for i in config.layers))
        if len(chosen) != len(config.layers) or chosen[0] < 0 or chosen[-1] >= n:
            raise PruneError(f"The layers to keep must be distinct indices from 0 to {n - 1}; got {config.layers}.")
        if required is not None and [types[i] for i in chosen] != required:
            raise PruneError(f"{_PATTERN_HELP}; layers {chosen} do not (choose the every-other or importance "
                             "strategy, which keep it).")
        return chosen, {}
    if keep >= n:
        raise PruneError(f"Keeping {keep} of the teacher's {n} layers drops nothing; choose fewer.")
    if config.strategy == "every_other":
        targets = np.linspace(0, n - 1, keep)
        if required is None:
            return sorted(set(int(round(x)) for x in targets)), {}
        chosen = fit_layer_pattern(types, required, lambda s, i: -(i - targets[s]) ** 2)
        if chosen is None:
            raise PruneError(f"{_PATTERN_HELP}; no {keep} of the teacher's {n} layers do. Keep another number.")
        return chosen, {"pattern": "evenly spaced within llama.cpp's local/global attention pattern"}
    if calibration is None or len(calibration) == 0:
        raise PruneError("Importance-guided pruning needs calibration text; there is none.")
    measure = cosine_importance if config.metric == "cosine" else perplexity_importance
    protected = {0, n - 1} if config.always_keep_first_last and keep >= 2 else set()
    active = list(range(n))
    history = []
    scores = measure(model, calibration, active)
    first_scores = dict(scores)
    while len(active) > keep:
        candidates = [i for i in active if i not in protected]
        if config.iterative:
            drop = [min(candidates, key=lambda i: scores[i])]
        else:
            drop = sorted(candidates, key=lambda i: scores[i])[: len(active) - keep]
        for i in drop:
            history.append({"layer": i, "score": round(scores[i], 6)})
            active.remove(i)
        if reporter is not None:
            reporter.message(f"Dropped layer {', '.join(map(str, drop))}; {len(active)} left.")
        if config.iterative and len(active) > keep:
            scores = measure(model, calibration, active)
    measured = {"metric": config.metric, "iterative": config.iterative,
                "scores": {str(k): round(v, 6) for k, v in first_scores.items()}, "dropped": history}
    if required is not None and [types[i] for i in active] != required:
        # The most important layers break the pattern: keep the most important set that follows
        # it (by the first measurement; protected layers count as most important of all).
        bonus = 1e6
        chosen = fit_layer_pattern(types, required,
                                   lambda s, i: first_scores[i] + (bonus if i in protected else 0.0))
        if chosen is None:
            raise PruneError(f"{_PATTERN_HELP}; no {keep} of the teacher's {n} layers do. Keep another number.")
        measured["pattern"] = (f"greedy choice {active} broke llama.cpp's local/global attention pattern; kept the "
                               "most important layers that follow it")
        active = chosen
    return active, measured


@torch.no_grad()
def neuron_importance(model, blocks: np.ndarray) -> list[torch.Tensor]:
    """Per layer, per FFN neuron: mean |activation| x norm of its output column (Wanda-style)."""
    layers = decoder_layers(model)
    sums = [None] * len(layers)
    handles = []

    def hook(i):
        def pre(_module, args):
            act = args[0].detach().abs().float().reshape(-1, args[0].size(-1)).sum(0)
            sums[i] = act if sums[i] is None else sums[i] + act
        return pre

    for i, layer in enumerate(layers):
        handles.append(layer.mlp.down_proj.register_forward_pre_hook(hook(i)))
    model.eval()
    try:
        for ids in _batches(blocks):
            model.model(input_ids=ids, use_cache=False)
    finally:
        for handle in handles:
            handle.remove()
    return [s * layer.mlp.down_proj.weight.float().norm(dim=0) for s, layer in zip(sums, layers)]


def _narrow_linear(linear: torch.nn.Linear, idx: torch.Tensor, dim: int) -> None:
    linear.weight = torch.nn.Parameter(linear.weight.data.index_select(dim, idx).clone())
    if linear.bias is not None and dim == 0:
        linear.bias = torch.nn.Parameter(linear.bias.data.index_select(0, idx).clone())
    if dim == 0:
        linear.out_features = len(idx)
    else:
        linear.in_features = len(idx)


def narrow_ffn(model, keep_ratio: float, calibration: np.ndarray) -> dict:
    """Keep the ``keep_ratio`` most important FFN neurons of every layer (the same count in each,
    since the config has one ``intermediate_size``)."""
    width = int(model.config.intermediate_size)
    # A multiple of 32 keeps every GGUF quantization block (32 or 256 wide) whole.
    keep = max(32, int(math.floor(width * keep_ratio / 32)) * 32)
    if keep >= width:
        return {"intermediate_size": width, "narrowed": False}
    scores = neuron_importance(model, calibration)
    for layer, score in zip(decoder_layers(model), scores):
        idx = torch.sort(torch.topk(score, keep).indices).values
        mlp = layer.mlp
        _narrow_linear(mlp.gate_proj, idx, 0)
        _narrow_linear(mlp.up_proj, idx, 0)
        _narrow_linear(mlp.down_proj, idx, 1)
        if hasattr(mlp, "intermediate_size"):
            mlp.intermediate_size = keep
    model.config.intermediate_size = keep
    return {"intermediate_size": keep, "narrowed": True, "teacher_intermediate_size": width}


def build_student(teacher, layer_map: list[int], ffn_keep_ratio: float = 1.0,
                  calibration: np.ndarray | None = None) -> tuple[torch.nn.Module, dict]:
    """A new model: a copy of ``teacher`` with only the layers in ``layer_map`` (in that order)
    and, if asked, a narrower FFN. The teacher is left unchanged."""
    student = copy.deepcopy(teacher)
    layers = decoder_layers(student)
    _set_layers(student, [layers[i] for i in layer_map])
    for new_index, layer in enumerate(decoder_layers(student)):
        # The KV cache is indexed by layer_idx; a gap would break generation.
        if hasattr(layer, "self_attn"):
            layer.self_attn.layer_idx = new_index
        if hasattr(layer, "layer_idx"):
            layer.layer_idx = new_index
    ffn = {"intermediate_size": int(student.config.intermediate_size), "narrowed": False}
    if ffn_keep_ratio < 1.0:
        if calibration is None or len(calibration) == 0:
            raise PruneError("Narrowing the feed-forward layers needs calibration text; there is none.")
        ffn = narrow_ffn(student, ffn_keep_ratio, calibration)
    return student, {"layer_map": list(layer_map), "ffn": ffn}


def prune(teacher, config: PruneConfig, calibration: np.ndarray | None, reporter=None) -> tuple[torch.nn.Module, dict]:
    """Choose the layers, build the student; returns (student, record of how it was made)."""
    n = len(decoder_layers(teacher))
    layer_map, measured = choose_layers(teacher, config, calibration, reporter)
    if len(layer_map) >= n and config.ffn_keep_ratio >= 1.0:
        raise PruneError("The student would be as large as the teacher; keep fewer layers or narrow the FFN.")
    student, record = build_student(teacher, layer_map, config.ffn_keep_ratio, calibration)
    record.update({"teacher_layers": n, "student_layers": len(layer_map), "importance": measured,
                   "config": config.to_dict(), "teacher_params": count_params(teacher),
                   "student_params": count_params(student)})
    return student, record


def count_params(model) -> int:
    """Distinct parameters (a tied embedding/head counts once)."""
    seen = set()
    total = 0
    for p in model.parameters():
        if id(p) not in seen:
            seen.add(id(p))
            total += p.numel()
    return total
