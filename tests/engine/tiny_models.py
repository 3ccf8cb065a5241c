"""Small random-weight GGUF chat models of architectures llama.cpp supports (qwen2, qwen3, phi3).

Written with the gguf package: :data:`LAYERS` layers :data:`WIDTH` wide, a byte-level BPE
vocabulary (every byte, a few merges, each family's turn markers as control tokens) and a
real chat template of the family from the template corpus. The weights are random,
so the replies are noise; what the tests learn is that llama.cpp loads the architecture,
the template renders and generation finishes.

Test helper; any thread.
"""

from __future__ import annotations

from pathlib import Path

import gguf
import numpy as np

TEMPLATES = Path(__file__).resolve().parent / "data" / "chat_templates"

#: arch -> (chat template in the corpus, turn markers, end-of-turn token)
FAMILIES: dict[str, tuple[str, tuple[str, ...], str]] = {
    "qwen2": ("qwq-32b", ("<|im_start|>", "<|im_end|>"), "<|im_end|>"),
    "qwen3": ("qwen3-0.6b", ("<|im_start|>", "<|im_end|>"), "<|im_end|>"),
    # llama.cpp looks up <s>, </s> and <unk> by name in a Phi-3 model's vocabulary.
    "phi3": ("phi-3.5-mini-instruct", ("<unk>", "<s>", "</s>", "<|system|>", "<|user|>", "<|assistant|>", "<|end|>"),
             "<|end|>"),
}
ARCHITECTURES = tuple(FAMILIES)

WIDTH = 64
LAYERS = 2
HEADS = 4
KV_HEADS = 2
FEED_FORWARD = 128
CONTEXT = 512
_MERGES = ("Ġ t", "h e", "Ġ a", "i n")


def _byte_tokens() -> list[str]:
    """GPT-2's printable stand-in for each byte, the base alphabet of a byte-level BPE."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) \
        + list(range(ord("®"), ord("ÿ") + 1))
    stand_in = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in stand_in:
            stand_in[b] = chr(256 + extra)
            extra += 1
    return [stand_in[b] for b in range(256)]


def _vocabulary(markers: tuple[str, ...]) -> tuple[list[str], list[int]]:
    tokens = _byte_tokens() + [m.replace(" ", "") for m in _MERGES]
    types = [gguf.TokenType.NORMAL] * len(tokens)
    for special in ("<|endoftext|>", *markers):
        tokens.append(special)
        types.append(gguf.TokenType.CONTROL)
    for added in ("<think>", "</think>"):
        tokens.append(added)
        types.append(gguf.TokenType.USER_DEFINED)
    return tokens, [int(t) for t in types]


def _weights(rng: np.random.Generator, *shape: int) -> np.ndarray:
    return (rng.standard_normal(shape) * 0.02).astype(np.float32)


def _layer_tensors(arch: str, rng: np.random.Generator, layer: int) -> dict[str, np.ndarray]:
    head = WIDTH // HEADS
    kv_width = head * KV_HEADS
    prefix = f"blk.{layer}."
    tensors = {
        "attn_norm.weight": np.ones(WIDTH, dtype=np.float32),
        "attn_output.weight": _weights(rng, WIDTH, WIDTH),
        "ffn_norm.weight": np.ones(WIDTH, dtype=np.float32),
        "ffn_down.weight": _weights(rng, WIDTH, FEED_FORWARD),
    }
    if arch == "phi3":
        tensors["attn_qkv.weight"] = _weights(rng, WIDTH + 2 * kv_width, WIDTH)
        tensors["ffn_up.weight"] = _weights(rng, 2 * FEED_FORWARD, WIDTH)  # gate and up, fused
    else:
        tensors["attn_q.weight"] = _weights(rng, WIDTH, WIDTH)
        tensors["attn_k.weight"] = _weights(rng, kv_width, WIDTH)
        tensors["attn_v.weight"] = _weights(rng, kv_width, WIDTH)
        tensors["ffn_gate.weight"] = _weights(rng, FEED_FORWARD, WIDTH)
        tensors["ffn_up.weight"] = _weights(rng, FEED_FORWARD, WIDTH)
    if arch == "qwen2":
        tensors["attn_q.bias"] = np.zeros(WIDTH, dtype=np.float32)
        tensors["attn_k.bias"] = np.zeros(kv_width, dtype=np.float32)
        tensors["attn_v.bias"] = np.zeros(kv_width, dtype=np.float32)
    if arch == "qwen3":
        tensors["attn_q_norm.weight"] = np.ones(head, dtype=np.float32)
        tensors["attn_k_norm.weight"] = np.ones(head, dtype=np.float32)
    return {prefix + name: array for name, array in tensors.items()}


def write_tiny_chat_model(path: Path | str, arch: str, seed: int = 0) -> Path:
    """A two-layer random-weight chat model of ``arch`` (one of :data:`ARCHITECTURES`)."""
    template_name, markers, end_of_turn = FAMILIES[arch]
    template = (TEMPLATES / f"{template_name}.jinja").read_text(encoding="utf-8")
    tokens, types = _vocabulary(markers)
    rng = np.random.default_rng(seed)
    path = Path(path)
    writer = gguf.GGUFWriter(path, arch)
    writer.add_name(f"tiny-{arch}")
    writer.add_context_length(CONTEXT)
    writer.add_embedding_length(WIDTH)
    writer.add_block_count(LAYERS)
    writer.add_feed_forward_length(FEED_FORWARD)
    writer.add_head_count(HEADS)
    writer.add_head_count_kv(KV_HEADS)
    writer.add_layer_norm_rms_eps(1e-6)
    writer.add_rope_freq_base(10000.0)
    if arch == "phi3":
        writer.add_rope_dimension_count(WIDTH // HEADS)
    writer.add_file_type(int(gguf.LlamaFileType.ALL_F32))
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("qwen2" if arch.startswith("qwen") else "default")
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(list(_MERGES))
    writer.add_bos_token_id(tokens.index("<|endoftext|>"))
    writer.add_eos_token_id(tokens.index(end_of_turn))
    writer.add_add_bos_token(False)
    writer.add_chat_template(template)
    writer.add_tensor("token_embd.weight", _weights(rng, len(tokens), WIDTH))
    writer.add_tensor("output_norm.weight", np.ones(WIDTH, dtype=np.float32))
    writer.add_tensor("output.weight", _weights(rng, len(tokens), WIDTH))
    for layer in range(LAYERS):
        for name, array in _layer_tensors(arch, rng, layer).items():
            writer.add_tensor(name, array)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
