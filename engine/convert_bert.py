"""Convert the shipped MiniLM (a Hugging Face BERT folder, safetensors) to a GGUF file.

Runs on any thread of whichever process needs the embedder first (the CLI's main thread,
a GUI worker thread), never the GUI thread: it reads ~90 MB and writes ~45 MB. No torch:
the weights are read with ``safetensors.numpy`` and written with ``gguf.GGUFWriter`` for
llama.cpp's ``bert`` architecture, following what llama.cpp's own ``convert_hf_to_gguf.py``
(``BertModel``) writes, so the engine can embed through llama.cpp like any other model.

The result is cached in the models folder under a name keyed by the source's SHA-256, and
written atomically (temp file in the same folder, fsync, ``os.replace``), so a crash never
leaves a half-written model that llama.cpp would then open.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

from engine.atomic import atomic_path
from engine.errors import UserError

#: Files of the source folder that decide the result; their hash names the cached GGUF.
SOURCE_FILES = ("config.json", "model.safetensors", "vocab.txt", "tokenizer.json", "tokenizer_config.json",
                "special_tokens_map.json", "1_Pooling/config.json")
#: Bumped whenever the conversion itself changes, so an old cached file is not reused.
CONVERTER_VERSION = 1

# llama.cpp's names for the tensors of a Hugging Face BertModel (gguf.TensorNameMap, BERT).
_GLOBAL_NAMES = {
    "embeddings.word_embeddings.weight": "token_embd.weight",
    "embeddings.token_type_embeddings.weight": "token_types.weight",
    "embeddings.position_embeddings.weight": "position_embd.weight",
    "embeddings.LayerNorm.weight": "token_embd_norm.weight",
    "embeddings.LayerNorm.bias": "token_embd_norm.bias",
}
_LAYER_NAMES = {
    "attention.self.query": "attn_q",
    "attention.self.key": "attn_k",
    "attention.self.value": "attn_v",
    "attention.output.dense": "attn_output",
    "attention.output.LayerNorm": "attn_output_norm",
    "intermediate.dense": "ffn_up",
    "output.dense": "ffn_down",
    "output.LayerNorm": "layer_output_norm",
}


class ConversionError(UserError, RuntimeError):
    """The source folder is not a BERT model this converter understands; str() says why."""


def source_hash(folder: str | os.PathLike) -> str:
    folder = Path(folder)
    digest = hashlib.sha256(f"convert_bert v{CONVERTER_VERSION}\n".encode())
    for name in SOURCE_FILES:
        path = folder / name
        if not path.is_file():
            continue
        digest.update(name.encode() + b"\0")
        with open(path, "rb") as handle:
            while block := handle.read(4 * 1024 * 1024):
                digest.update(block)
    return digest.hexdigest()


def gguf_name(folder: str | os.PathLike) -> str:
    return f"{Path(folder).name if Path(folder).name != 'model' else Path(folder).parent.name}-{source_hash(folder)[:16]}.gguf"


def tensor_name(hf_name: str) -> str | None:
    """llama.cpp's name for a Hugging Face BERT tensor; None for tensors it does not use."""
    if hf_name in _GLOBAL_NAMES:
        return _GLOBAL_NAMES[hf_name]
    prefix = "encoder.layer."
    if not hf_name.startswith(prefix):
        return None  # position_ids (a buffer), pooler (unused by mean pooling)
    rest = hf_name[len(prefix):]
    index, _, tail = rest.partition(".")
    stem, _, kind = tail.rpartition(".")
    if not index.isdigit() or stem not in _LAYER_NAMES or kind not in ("weight", "bias"):
        return None
    return f"blk.{int(index)}.{_LAYER_NAMES[stem]}.{kind}"


def _vocab(folder: Path) -> list[str]:
    vocab_txt = folder / "vocab.txt"
    if vocab_txt.is_file():
        # split("\n"), not splitlines(): a token may itself be an exotic line separator.
        lines = vocab_txt.read_text(encoding="utf-8").split("\n")
        return lines[:-1] if lines and lines[-1] == "" else lines
    data = json.loads((folder / "tokenizer.json").read_text(encoding="utf-8"))
    vocab = data["model"]["vocab"]
    out = [""] * len(vocab)
    for token, index in vocab.items():
        out[index] = token
    return out


def _phantom(token: str) -> str:
    # llama.cpp's WordPiece tokenizer marks word starts with U+2581 (as SentencePiece does)
    # instead of marking continuations with "##": convert as convert_hf_to_gguf.py does.
    if token.startswith("[") and token.endswith("]"):
        return token
    if token.startswith("##"):
        return token[2:]
    return "\u2581" + token


def _pooling(folder: Path) -> int:
    import gguf

    config = folder / "1_Pooling" / "config.json"
    if not config.is_file():
        return int(gguf.PoolingType.MEAN)  # sentence-transformers' default
    data = json.loads(config.read_text(encoding="utf-8"))
    if data.get("pooling_mode_mean_tokens"):
        return int(gguf.PoolingType.MEAN)
    if data.get("pooling_mode_cls_token"):
        return int(gguf.PoolingType.CLS)
    raise ConversionError("only mean or CLS pooling can be converted")


def convert(folder: str | os.PathLike, target: str | os.PathLike, weight_type: str = "f16") -> Path:
    """Write ``folder`` (a Hugging Face BERT model) as a GGUF file at ``target``, atomically.

    ``weight_type`` "f16" stores the matrices in half precision (half the file, faster on
    CPU; embeddings stay at cosine > 0.999 of float32), "f32" keeps them exact. Norms and
    biases stay float32 as llama.cpp requires.
    """
    import gguf
    from safetensors.numpy import load_file

    folder, target = Path(folder), Path(target)
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConversionError(f"{folder} has no readable config.json ({exc})") from exc
    if config.get("model_type") != "bert":
        raise ConversionError(f"{folder} holds a {config.get('model_type')!r} model, not BERT")
    if config.get("hidden_act", "gelu") != "gelu" or config.get("position_embedding_type", "absolute") != "absolute":
        raise ConversionError("only BERT with GELU and absolute positions can be converted")
    tensors = load_file(str(folder / "model.safetensors"))
    tokens = _vocab(folder)
    if len(tokens) != int(config["vocab_size"]):
        raise ConversionError(f"the vocabulary has {len(tokens)} entries but the model expects {config['vocab_size']}")

    # The one atomic write of the project (engine.atomic): the temp file is fsynced, made readable
    # (a model file is not a secret) and renamed only when the whole file is written.
    with atomic_path(target, permissions=0o644, make_parents=True) as tmp:
        writer = gguf.GGUFWriter(str(tmp), "bert")
        writer.add_name(config.get("_name_or_path") or folder.name)
        writer.add_context_length(int(config["max_position_embeddings"]))
        writer.add_embedding_length(int(config["hidden_size"]))
        writer.add_feed_forward_length(int(config["intermediate_size"]))
        writer.add_block_count(int(config["num_hidden_layers"]))
        writer.add_head_count(int(config["num_attention_heads"]))
        writer.add_layer_norm_eps(float(config.get("layer_norm_eps", 1e-12)))
        writer.add_causal_attention(False)
        writer.add_pooling_type(gguf.PoolingType(_pooling(folder)))
        writer.add_file_type(int(gguf.LlamaFileType.MOSTLY_F16 if weight_type == "f16" else gguf.LlamaFileType.ALL_F32))

        writer.add_token_type_count(int(config.get("type_vocab_size", 2)))
        writer.add_tokenizer_model("bert")
        writer.add_tokenizer_pre("default")
        writer.add_token_list([_phantom(t) for t in tokens])
        types = [int(gguf.TokenType.CONTROL) if (t.startswith("[") and t.endswith("]")) else int(gguf.TokenType.NORMAL)
                 for t in tokens]
        writer.add_token_types(types)
        special = gguf.SpecialVocab(folder, load_merges=False, n_vocab=len(tokens))
        special.add_to_gguf(writer, quiet=True)

        seen = 0
        for hf_name, array in tensors.items():
            name = tensor_name(hf_name)
            if name is None:
                continue
            data = np.ascontiguousarray(array, dtype=np.float32)
            if weight_type == "f16" and data.ndim == 2 and name != "token_types.weight":
                data = data.astype(np.float16)
            writer.add_tensor(name, data)
            seen += 1
        expected = 5 + 16 * int(config["num_hidden_layers"])
        if seen != expected:
            raise ConversionError(f"found {seen} of the {expected} BERT tensors")
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
    return target


def ensure_gguf(folder: str | os.PathLike, models_dir: str | os.PathLike) -> Path:
    """The cached GGUF of ``folder`` in ``models_dir``, converting once if it is missing.

    Cheap after the first call apart from hashing the source (~90 MB, well under a second).
    """
    target = Path(models_dir) / gguf_name(folder)
    if not target.is_file():
        convert(folder, target)
    return target
