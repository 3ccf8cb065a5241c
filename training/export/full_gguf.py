"""Write a whole Hugging Face model as a GGUF file llama.cpp runs (the project's own writer),
and merge a peft LoRA into its base before doing so.

Runs in the training process (``python -m training.run``) or a test, on the calling thread.

The source GGUF the model came from is the template: the output has the same tensors in
the same order and shapes (checked one by one), every metadata key of the source
(tokenizer.ggml.*, the chat template, the architecture's hyperparameters, licence) copied
byte for byte, and only the weights and the file type replaced. Weights go through the
same transforms llama.cpp's converter applies (llama Q/K row permutation, Gemma's ``1 + w``
norms: see :mod:`training.export.common`), matrices in f16 (or bf16/f32) and vectors in
f32. Quantization to Q8_0 / Q4_K_M / Q4_1 is llama.cpp's own quantizer
(:func:`training.quantize.quantize_gguf`).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import gguf
import numpy as np

from engine.partial_files import partial_path
from training.export.common import (
    ArchSpec,
    ExportError,
    arch_spec,
    atomic_output,
    check_free_space,
    gguf_tensor_name,
    permute_qk_rows,
    qk_heads,
    tensor_name_map,
)

__all__ = ["DTYPES", "load_hf_model", "merge_and_export", "write_full_gguf"]

log = logging.getLogger("training.export")

#: Output weight types: name -> (GGML type of matrices, general.file_type).
DTYPES = {
    "f16": (gguf.GGMLQuantizationType.F16, gguf.LlamaFileType.MOSTLY_F16),
    "bf16": (gguf.GGMLQuantizationType.BF16, gguf.LlamaFileType.MOSTLY_BF16),
    "f32": (gguf.GGMLQuantizationType.F32, gguf.LlamaFileType.ALL_F32),
}

# Keys the writer sets itself or that describe the old file rather than the model.
_SKIP_KEYS = {
    gguf.Keys.General.ARCHITECTURE,  # GGUFWriter writes it from its arch argument
    gguf.Keys.General.FILE_TYPE,  # the new weight type
    gguf.Keys.General.QUANTIZATION_VERSION,
    gguf.Keys.General.ALIGNMENT,  # the writer pads with its own alignment
}


def _reader(source_gguf: Path) -> gguf.GGUFReader:
    if not Path(source_gguf).is_file():
        raise ExportError(f"The source model {source_gguf} does not exist.")
    try:
        return gguf.GGUFReader(str(source_gguf), "r")
    except Exception as exc:  # gguf raises ValueError / struct errors on damaged files
        raise ExportError(f"{Path(source_gguf).name} is not a readable GGUF file: {exc}") from exc


def _field_value(field) -> tuple[Any, gguf.GGUFValueType, gguf.GGUFValueType | None]:
    """A reader field as (value, type, sub_type) for GGUFWriter.add_key_value; strings stay
    bytes so that no token is re-encoded (a vocabulary may hold invalid UTF-8 pieces)."""
    vtype = gguf.GGUFValueType(field.types[0])
    if vtype == gguf.GGUFValueType.STRING:
        return bytes(field.parts[field.data[0]]), vtype, None
    if vtype == gguf.GGUFValueType.ARRAY:
        if len(field.types) > 2:
            raise ExportError(f"The source key {field.name} is an array of arrays, which this writer cannot copy.")
        sub = gguf.GGUFValueType(field.types[-1])
        if sub == gguf.GGUFValueType.STRING:
            return [bytes(field.parts[i]) for i in field.data], vtype, sub
        return field.contents(), vtype, sub
    return field.contents(), vtype, None


def _source_ints(reader: gguf.GGUFReader, key: str, default: int = 0) -> int:
    field = reader.get_field(key)
    return int(field.contents()) if field is not None else default


def _state_of(hf_model_or_dir) -> tuple[dict[str, Any], dict]:
    """(state dict of torch tensors, config dict) of a model object or an HF folder."""
    if isinstance(hf_model_or_dir, (str, os.PathLike)):
        folder = Path(hf_model_or_dir)
        config_file = folder / "config.json"
        files = sorted(folder.glob("*.safetensors"))
        if not config_file.is_file() or not files:
            raise ExportError(f"{folder} is not a Hugging Face model folder (config.json and *.safetensors).")
        from safetensors.torch import load_file

        state: dict[str, Any] = {}
        for file in files:
            state.update(load_file(str(file), device="cpu"))
        return state, json.loads(config_file.read_text(encoding="utf-8"))
    model = hf_model_or_dir
    if hasattr(model, "peft_config"):
        raise ExportError("The model still carries a peft adapter; merge it first (merge_and_export does).")
    return model.state_dict(), model.config.to_dict()


def _plan(state: dict[str, Any], config: dict, reader: gguf.GGUFReader, spec: ArchSpec, arch: str,
          matrix_type: gguf.GGMLQuantizationType) -> list[tuple[str, np.ndarray, gguf.GGMLQuantizationType | None]]:
    """Every output tensor, in the source's order, converted; raises before anything is written."""
    model_type = config.get("model_type")
    if model_type not in spec.hf_model_types:
        raise ExportError(f"The model is a {model_type!r} model but the source GGUF is {arch!r}; "
                          "export a model with the source it came from.")
    n_head = _source_ints(reader, f"{arch}.attention.head_count")
    n_head_kv = _source_ints(reader, f"{arch}.attention.head_count_kv", n_head)
    # A model pruned from the source (fewer blocks, narrower FFN: training.prune) takes the
    # source's first n_blocks blocks as its template, with its own FFN width.
    template, n_blocks, ffn = _template(reader, config, arch)
    name_map = tensor_name_map(spec, n_blocks)
    source_names = {t.name for t in template}

    mapped: dict[str, Any] = {}
    for hf_name, tensor in state.items():
        target = gguf_tensor_name(name_map, hf_name)
        if target == "output.weight" and target not in source_names and config.get("tie_word_embeddings", True):
            continue  # tied to token_embd, as in the source
        if target is None or target not in source_names:
            raise ExportError(f"The model has a tensor {hf_name} that {arch} GGUF files have no place for; "
                              "it would be lost, so nothing was written.")
        mapped[target] = tensor

    import torch

    plan = []
    for source in template:
        name = source.name
        ne = tuple(int(d) for d in source.shape)
        if ffn is not None and ".ffn_" in name:
            ne = tuple(ffn[1] if d == ffn[0] else d for d in ne)
        tensor = mapped.pop(name, None)
        if tensor is None:
            if source.tensor_type in (gguf.GGMLQuantizationType.F32, gguf.GGMLQuantizationType.F16):
                # Tables llama.cpp computes at conversion (e.g. rope_freqs): kept as they were.
                plan.append((name, np.array(source.data), None))
                continue
            raise ExportError(f"The model lacks {name}, which {arch} needs; is it the model the source GGUF holds?")
        data = tensor.detach().to(torch.float32).cpu().numpy()
        if tuple(reversed(data.shape)) != ne:
            raise ExportError(f"{name} is {tuple(data.shape)} in the model but {tuple(reversed(ne))} in the source; "
                              "the model does not match the source GGUF.")
        heads = qk_heads(name, n_head, n_head_kv) if spec.permute_qk else None
        if heads is not None:
            data = permute_qk_rows(data, n_head, heads)
        if spec.norm_shift and name.endswith("norm.weight"):
            data = data + np.float32(spec.norm_shift)
        if data.ndim <= 1 or matrix_type == gguf.GGMLQuantizationType.F32:
            plan.append((name, np.ascontiguousarray(data, dtype=np.float32), None))
        elif matrix_type == gguf.GGMLQuantizationType.F16:
            plan.append((name, np.ascontiguousarray(data, dtype=np.float16), None))
        else:
            plan.append((name, gguf.quants.quantize(np.ascontiguousarray(data), matrix_type), matrix_type))
    return plan


def _template(reader: gguf.GGUFReader, config: dict, arch: str) -> tuple[list, int, tuple[int, int] | None]:
    """(source tensors the model's tensors take the place of, the model's block count,
    (source FFN width, model FFN width) when they differ)."""
    source_blocks = _source_ints(reader, f"{arch}.block_count")
    n_blocks = int(config.get("num_hidden_layers") or source_blocks)
    if n_blocks > source_blocks:
        raise ExportError(f"The model has {n_blocks} blocks but the source GGUF only {source_blocks}; "
                          "the model does not match the source GGUF.")
    template = [t for t in reader.tensors
                if not t.name.startswith("blk.") or int(t.name.split(".", 2)[1]) < n_blocks]
    source_ffn = _source_ints(reader, f"{arch}.feed_forward_length")
    model_ffn = int(config.get("intermediate_size") or source_ffn)
    return template, n_blocks, ((source_ffn, model_ffn) if source_ffn and model_ffn != source_ffn else None)


def _shape_overrides(reader: gguf.GGUFReader, config: dict, arch: str) -> dict[str, int]:
    """The block count and FFN width keys of a model smaller than its source."""
    overrides = {}
    for key, value in ((f"{arch}.block_count", config.get("num_hidden_layers")),
                       (f"{arch}.feed_forward_length", config.get("intermediate_size"))):
        if value is not None and reader.get_field(key) is not None and _source_ints(reader, key) != int(value):
            overrides[key] = int(value)
    return overrides


def write_full_gguf(hf_model_or_dir, source_gguf: str | Path, out_path: str | Path, dtype: str = "f16",
                    name: str | None = None, metadata_overrides: dict[str, Any] | None = None) -> Path:
    """Write ``hf_model_or_dir`` (a transformers model or an HF folder) as a GGUF at ``out_path``.

    ``source_gguf`` is the GGUF the model came from: its metadata and tokenizer are copied
    and its tensor list is the template. ``dtype`` is "f16" (default), "bf16" or "f32" for
    the matrices; ``name`` replaces ``general.name``. A model with fewer blocks or a narrower
    feed-forward width than the source (a pruned student) is written with its own
    ``block_count`` / ``feed_forward_length``; ``metadata_overrides`` replaces the values of
    further source keys (same types). Raises :class:`ExportError`
    (:class:`UnsupportedArchitectureError` for an unsupported architecture) before writing
    anything; ``out_path`` either does not change or is a complete file.
    """
    source_gguf, out_path = Path(source_gguf), Path(out_path)
    if dtype not in DTYPES:
        raise ExportError(f"A full model can be written as {', '.join(DTYPES)}, not {dtype!r}; "
                          "quantize it afterwards (merge_and_export(..., quantize=...)).")
    reader = _reader(source_gguf)
    arch_field = reader.get_field(gguf.Keys.General.ARCHITECTURE)
    arch = arch_field.contents() if arch_field is not None else None
    spec = arch_spec(arch, f"The source model {source_gguf.name}")
    matrix_type, file_type = DTYPES[dtype]
    state, config = _state_of(hf_model_or_dir)
    overrides = {**_shape_overrides(reader, config, arch), **dict(metadata_overrides or {})}
    unknown = [key for key in overrides if reader.get_field(key) is None]
    if unknown:
        raise ExportError(f"The source model {source_gguf.name} has no metadata key {unknown[0]} to replace.")
    plan = _plan(state, config, reader, spec, arch, matrix_type)
    metadata = []
    for field in reader.fields.values():
        if field.name.startswith("GGUF.") or field.name in _SKIP_KEYS or (name and field.name == gguf.Keys.General.NAME):
            continue
        value, vtype, sub = _field_value(field)
        if field.name in overrides:
            value = overrides[field.name]
        if vtype == gguf.GGUFValueType.ARRAY and len(value) == 0:
            log.warning("skipping the empty array %s (GGUF writers cannot write empty arrays)", field.name)
            continue
        metadata.append((field.name, value, vtype, sub))

    check_free_space(out_path.parent if out_path.parent.exists() else Path.cwd(),
                     sum(t.nbytes for _, t, _ in plan) + (64 << 20))
    with atomic_output(out_path) as tmp:
        writer = gguf.GGUFWriter(tmp, arch)
        try:
            if name:
                writer.add_name(name)
            for key, value, vtype, sub in metadata:
                writer.add_key_value(key, value, vtype, sub_type=sub)
            writer.add_file_type(int(file_type))
            writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
            for tensor_name, data, raw_type in plan:
                writer.add_tensor(tensor_name, data, raw_dtype=raw_type)
            writer.write_header_to_file(tmp)
            writer.write_kv_data_to_file()
            writer.write_tensors_to_file()
        finally:
            writer.close()
    return out_path


def load_hf_model(gguf_path: str | Path, cache_root: str | Path | None = None):
    """The transformers model (float32) of a GGUF: from the base cache of
    :mod:`training.base_model` when ``cache_root`` is given, else read from the GGUF."""
    gguf_path = Path(gguf_path)
    if cache_root is not None:
        from training.base_model import load_base

        return load_base(gguf_path, Path(cache_root))[0]
    import torch
    from transformers import AutoModelForCausalLM

    try:
        model = AutoModelForCausalLM.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name, dtype=torch.float32)
    except (ValueError, KeyError, OSError) as exc:
        raise ExportError(f"transformers cannot read {gguf_path.name}: {exc}") from exc
    # The GGUF "quantizer" only dequantized at load; without this mark the fp32 model
    # could not be saved as an ordinary HF folder.
    model.hf_quantizer = None
    if getattr(model.config, "quantization_config", None) is not None:
        del model.config.quantization_config
    return model


def merge_and_export(base_gguf: str | Path, peft_dir: str | Path, out_path: str | Path, dtype: str = "f16", *,
                     quantize: str | None = None, cache_root: str | Path | None = None, name: str | None = None,
                     threads: int | None = None, model=None) -> Path:
    """Merge the peft LoRA in ``peft_dir`` into the model of ``base_gguf`` and write it as a
    full GGUF at ``out_path``: ``dtype`` weights, or quantized to ``quantize`` (e.g. "Q8_0",
    "Q4_K_M", "Q4_1") by llama.cpp's quantizer. ``model`` may pass the base model already
    loaded (it is changed: the adapter is merged into it). Every check runs before the
    model is loaded; ``out_path`` either does not change or is complete.
    """
    from training.export.lora_gguf import read_peft_adapter

    base_gguf, peft_dir, out_path = Path(base_gguf), Path(peft_dir), Path(out_path)
    reader = _reader(base_gguf)
    arch_field = reader.get_field(gguf.Keys.General.ARCHITECTURE)
    arch_spec(arch_field.contents() if arch_field is not None else None, f"The base model {base_gguf.name}")
    del reader
    if dtype not in DTYPES:
        raise ExportError(f"A full model can be written as {', '.join(DTYPES)}, not {dtype!r}.")
    if quantize is not None:
        from training.quantize import QUANT_TYPES

        if quantize.upper() not in QUANT_TYPES:
            raise ExportError(f"Unknown quantization {quantize!r}; choose one of {', '.join(QUANT_TYPES)}.")
    read_peft_adapter(peft_dir)  # clear messages for a bad folder before the slow load

    from peft import PeftModel

    base = model if model is not None else load_hf_model(base_gguf, cache_root)
    try:
        merged = PeftModel.from_pretrained(base, str(peft_dir)).merge_and_unload()
    except (RuntimeError, ValueError, KeyError) as exc:
        raise ExportError(f"The adapter in {peft_dir} does not fit {base_gguf.name}: {exc}") from exc
    if name is None:
        source_name = reader_name(base_gguf)
        name = f"{source_name} + {peft_dir.name}" if source_name else None
    if quantize is None or quantize.upper() == dtype.upper():
        return write_full_gguf(merged, base_gguf, out_path, dtype=dtype, name=name)

    from training.quantize import QuantizeError, quantize_gguf

    staging = partial_path(out_path, tag=f"staging_{dtype}")
    try:
        write_full_gguf(merged, base_gguf, staging, dtype=dtype, name=name)
        try:
            return quantize_gguf(staging, out_path, quantize.upper(), threads=threads)
        except QuantizeError as exc:
            raise ExportError(str(exc)) from exc
    finally:
        if staging.exists():
            staging.unlink()


def reader_name(gguf_path: Path) -> str | None:
    field = _reader(gguf_path).get_field(gguf.Keys.General.NAME)
    return field.contents() if field is not None else None
