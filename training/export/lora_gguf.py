"""Write a peft LoRA adapter as a llama.cpp GGUF LoRA adapter (the project's own exporter).

Runs in the training process (``python -m training.run``) or a test, on the calling thread.

The file is what llama.cpp's ``llama_adapter_lora_init`` reads: ``general.type = adapter``,
``adapter.type = lora``, ``adapter.lora.alpha``, and for each adapted matrix two tensors
named after the base tensor, ``blk.N.attn_q.weight.lora_a`` (peft's ``lora_A``, ``(r, in)``)
and ``...lora_b`` (``lora_B``, ``(out, r)``). llama.cpp scales each pair by ``alpha / r``
with ``r`` read from the tensor, so the rank travels in the shapes. For the llama
architecture the rows of ``lora_B`` of ``q_proj`` and ``k_proj`` are permuted exactly as
the base weights were (see :mod:`training.export.common`); Gemma 3 needs no permutation.

Nothing but the peft folder and the base GGUF's header is read: no model is loaded, so an
export takes a second. Every check (architecture, keys, shapes) runs before the output is
opened, and the output is written to a temporary file and renamed, so a failure never
leaves a file behind.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import gguf
import numpy as np

from engine.gguf_check import MalformedModelError, check_gguf
from training.export.common import (
    ExportError,
    arch_spec,
    atomic_output,
    check_free_space,
    gguf_tensor_name,
    permute_qk_rows,
    qk_heads,
    tensor_name_map,
)

__all__ = ["AdapterTensors", "export_lora_adapter", "read_peft_adapter"]

# peft saves ``base_model.model.<module>.lora_A.weight``; an adapter name may sit before
# ``.weight`` in files written by other tools.
_KEY = re.compile(r"^(?:base_model\.model\.)?(?P<module>.+)\.lora_(?P<ab>[AB])(?:\.[A-Za-z0-9_-]+)?\.weight$")


@dataclass
class AdapterTensors:
    """A peft adapter read from disk: config and, per adapted module, its A and B (float32)."""

    config: dict
    pairs: dict[str, tuple[np.ndarray, np.ndarray]]  # module name -> (lora_A (r,in), lora_B (out,r))

    def scale(self, module: str) -> float:
        """peft's scaling for ``module``: alpha / r, or alpha / sqrt(r) with rsLoRA."""
        rank = self.pairs[module][0].shape[0]
        alphas = self.config.get("alpha_pattern") or {}
        alpha = float(self.config.get("lora_alpha", 8))
        if alphas:
            # peft's own matching rules for per-module alphas; imported only when there is a
            # pattern, since peft pulls in torch (~2 s) and the usual adapter has none.
            from peft.utils.other import get_pattern_key

            alpha = float(alphas.get(get_pattern_key(list(alphas), module), alpha))
        return alpha / (math.sqrt(rank) if self.config.get("use_rslora") else rank)


def _load_tensors(peft_dir: Path) -> dict[str, np.ndarray]:
    safetensors_file = peft_dir / "adapter_model.safetensors"
    bin_file = peft_dir / "adapter_model.bin"
    if safetensors_file.is_file():
        # numpy first: no torch import for the usual f32/f16 adapters (bf16 needs torch).
        from safetensors.numpy import load_file as load_numpy

        try:
            return {key: value.astype(np.float32) for key, value in load_numpy(str(safetensors_file)).items()}
        except Exception:
            pass
    import torch

    try:
        if safetensors_file.is_file():
            from safetensors.torch import load_file

            state = load_file(str(safetensors_file), device="cpu")
        elif bin_file.is_file():
            state = torch.load(bin_file, map_location="cpu", weights_only=True)
        else:
            raise ExportError(f"{peft_dir} holds no adapter weights (adapter_model.safetensors); is it a peft adapter folder?")
    except ExportError:
        raise
    except Exception as exc:  # a damaged or truncated file
        raise ExportError(f"The adapter weights in {peft_dir} cannot be read: {exc}") from exc
    return {key: value.detach().to(torch.float32).numpy() for key, value in state.items()}


def read_peft_adapter(peft_dir: str | Path) -> AdapterTensors:
    """Read and check a peft LoRA folder; raises :class:`ExportError` with a clear message."""
    peft_dir = Path(peft_dir)
    config_file = peft_dir / "adapter_config.json"
    if not config_file.is_file():
        raise ExportError(f"{peft_dir} is not a peft adapter folder (it has no adapter_config.json).")
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ExportError(f"{config_file} cannot be read: {exc}") from exc
    if str(config.get("peft_type", "")).upper() != "LORA":
        raise ExportError(f"{peft_dir} holds a {config.get('peft_type')!r} adapter; only LoRA adapters can be exported.")
    unsupported = [name for name, bad in (
        ("DoRA (use_dora)", config.get("use_dora")),
        ("modules_to_save", config.get("modules_to_save")),
        (f"bias={config.get('bias')!r}", config.get("bias", "none") != "none"),
        ("fan_in_fan_out", config.get("fan_in_fan_out")),
        ("target_parameters", config.get("target_parameters")),
    ) if bad]
    if unsupported:
        raise ExportError(f"The adapter uses {', '.join(unsupported)}, which llama.cpp LoRA adapters cannot hold; "
                          "train a plain LoRA on linear layers.")
    tensors = _load_tensors(peft_dir)
    halves: dict[str, dict[str, np.ndarray]] = {}
    strays = []
    for key, value in tensors.items():
        match = _KEY.match(key)
        if match is None:
            strays.append(key)
            continue
        halves.setdefault(match["module"], {})[match["ab"]] = value
    if strays:
        raise ExportError(f"The adapter has weights a llama.cpp LoRA adapter cannot hold (e.g. {strays[0]}); "
                          "only LoRA A/B matrices of linear layers are supported.")
    pairs = {}
    for module, ab in sorted(halves.items()):
        if set(ab) != {"A", "B"}:
            raise ExportError(f"The adapter is incomplete: {module} has lora_{''.join(ab)} without its partner.")
        a, b = ab["A"], ab["B"]
        if a.ndim != 2 or b.ndim != 2 or a.shape[0] != b.shape[1]:
            raise ExportError(f"The adapter's {module} matrices have shapes {a.shape} and {b.shape}, "
                              "which are not a LoRA pair (embedding or convolution LoRA is not supported).")
        pairs[module] = (a, b)
    if not pairs:
        raise ExportError(f"The adapter in {peft_dir} has no LoRA weights.")
    return AdapterTensors(config=config, pairs=pairs)


def _base_header(base_gguf: Path):
    try:
        return check_gguf(base_gguf)
    except MalformedModelError as exc:
        raise ExportError(f"The base model cannot be read: {exc}") from exc


def export_lora_adapter(peft_dir: str | Path, base_gguf: str | Path, out_path: str | Path,
                        dtype: str = "f32") -> Path:
    """Write the peft LoRA in ``peft_dir`` as a llama.cpp GGUF adapter for ``base_gguf``.

    ``dtype`` is the tensor type of lora_a/lora_b ("f32" or "f16"; adapters are small, so
    f32 by default keeps them exact). Returns ``out_path``. Raises :class:`ExportError`
    (:class:`UnsupportedArchitectureError` for an architecture the exporter cannot map)
    before anything is written; ``out_path`` either does not change or is complete.
    """
    peft_dir, base_gguf, out_path = Path(peft_dir), Path(base_gguf), Path(out_path)
    if dtype not in ("f32", "f16"):
        raise ExportError(f"Adapter tensors can be written as f32 or f16, not {dtype!r}.")
    header = _base_header(base_gguf)
    meta = header.metadata
    arch = str(meta.get("general.architecture"))
    spec = arch_spec(arch, f"The base model {base_gguf.name}")
    n_blocks = int(meta.get(f"{arch}.block_count") or 0)
    n_head = int(meta.get(f"{arch}.attention.head_count") or 0)
    n_head_kv = int(meta.get(f"{arch}.attention.head_count_kv") or n_head)
    base_shapes = {t.name: t.shape for t in header.tensors}
    name_map = tensor_name_map(spec, n_blocks)

    adapter = read_peft_adapter(peft_dir)
    # llama.cpp scales every pair by alpha / rank with one alpha for the file; the alpha is
    # chosen so the most common module needs no change, and any module whose peft scaling
    # differs (rank_pattern, alpha_pattern) has the difference folded into its lora_B.
    llama_alpha = Counter(adapter.scale(m) * a.shape[0] for m, (a, _) in adapter.pairs.items()).most_common(1)[0][0]

    np_dtype = np.float32 if dtype == "f32" else np.float16
    planned: list[tuple[str, np.ndarray]] = []
    for module, (a, b) in adapter.pairs.items():
        target = gguf_tensor_name(name_map, module + ".weight")
        if target is None or target not in base_shapes:
            raise ExportError(f"The adapter changes {module}, which has no counterpart in {base_gguf.name} "
                              f"({arch}); was it trained on another model?")
        shape = base_shapes[target]  # ggml order: (in, out)
        if len(shape) != 2 or shape[0] != a.shape[1] or shape[1] != b.shape[0]:
            raise ExportError(f"The adapter's {module} is {b.shape[0]}x{a.shape[1]} but {base_gguf.name} has "
                              f"{'x'.join(str(d) for d in reversed(shape))}; the adapter was trained on another model.")
        rank = a.shape[0]
        factor = adapter.scale(module) * rank / llama_alpha
        if not math.isclose(factor, 1.0, rel_tol=1e-6):
            b = b * factor
        heads = qk_heads(target, n_head, n_head_kv) if spec.permute_qk else None
        if heads is not None:
            b = permute_qk_rows(b, n_head, heads)
        planned.append((target + ".lora_a", np.ascontiguousarray(a, dtype=np_dtype)))
        planned.append((target + ".lora_b", np.ascontiguousarray(b, dtype=np_dtype)))

    planned.sort(key=lambda item: _tensor_order(item[0]))
    check_free_space(out_path.parent if out_path.parent.exists() else Path.cwd(),
                     sum(t.nbytes for _, t in planned) + (1 << 20))
    ranks = sorted({a.shape[0] for a, _ in adapter.pairs.values()})
    with atomic_output(out_path) as tmp:
        writer = gguf.GGUFWriter(tmp, arch)
        try:
            writer.add_type(gguf.GGUFType.ADAPTER)
            writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
            writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, float(llama_alpha))
            writer.add_name(f"LoRA for {meta.get('general.name') or base_gguf.stem}")
            # Informational: llama.cpp reads each pair's rank from its shape.
            writer.add_uint32("training.lora.rank", int(ranks[-1]))
            writer.add_string("training.lora.target_modules",
                              ",".join(sorted({m.rsplit('.', 1)[-1] for m in adapter.pairs})))
            for name, tensor in planned:
                writer.add_tensor(name, tensor)
            writer.write_header_to_file(tmp)
            writer.write_kv_data_to_file()
            writer.write_tensors_to_file()
        finally:
            writer.close()
    return out_path


def _tensor_order(name: str) -> tuple[int, str]:
    match = re.match(r"blk\.(\d+)\.", name)
    return (int(match.group(1)) if match else -1, name)
