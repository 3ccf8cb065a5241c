"""LoRA adapters in the engine: loaded once on the base, switched per request with
llama_set_adapters_lora, never a reload; bad adapter files get one clear message.

The adapters are real GGUF LoRA files written by the project's exporter
(training.export.export_lora_adapter) from peft-format folders whose A and B matrices are
random with a fixed seed (B non-zero, so the adapter changes the model), shaped from the
base model's own header.
"""

from __future__ import annotations

import json
from pathlib import Path

import gguf
import numpy as np
import pytest

from engine.client import EngineRequestError
from engine.gguf_check import check_gguf
from training.export import export_lora_adapter

PROMPT = "The three most important rules for writing clear documentation are"
GREEDY = {"temperature": 0.0, "max_tokens": 16, "seed": 0}
_TARGETS = {"attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj",
            "attn_output": "self_attn.o_proj", "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj",
            "ffn_down": "mlp.down_proj"}


def write_random_peft(folder: Path, base_gguf: str, seed: int, rank: int = 8, alpha: float = 16.0,
                      b_std: float = 0.02) -> Path:
    """A peft LoRA folder for every linear layer of ``base_gguf``: A as peft initialises it
    (uniform, +-1/sqrt(in)), B normal with ``b_std`` instead of peft's zeros."""
    from safetensors.numpy import save_file

    rng = np.random.default_rng(seed)
    tensors = {}
    for tensor in check_gguf(base_gguf).tensors:
        parts = tensor.name.split(".")  # blk.N.attn_q.weight
        if parts[0] != "blk" or parts[2] not in _TARGETS or parts[3] != "weight":
            continue
        n_in, n_out = tensor.shape  # ggml order
        module = f"base_model.model.model.layers.{parts[1]}.{_TARGETS[parts[2]]}"
        bound = 1.0 / np.sqrt(n_in)
        tensors[module + ".lora_A.weight"] = rng.uniform(-bound, bound, (rank, n_in)).astype(np.float32)
        tensors[module + ".lora_B.weight"] = rng.normal(0.0, b_std, (n_out, rank)).astype(np.float32)
    folder.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(folder / "adapter_model.safetensors"))
    (folder / "adapter_config.json").write_text(json.dumps({
        "peft_type": "LORA", "r": rank, "lora_alpha": alpha, "bias": "none", "use_rslora": False,
        "target_modules": sorted({t.split(".")[-1] for t in _TARGETS.values()})}), encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def adapters(tmp_path_factory, smollm2_path, gemma_path) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("adapters")
    return {
        "a": export_lora_adapter(write_random_peft(root / "peft-a", smollm2_path, seed=0), smollm2_path, root / "a.gguf"),
        "b": export_lora_adapter(write_random_peft(root / "peft-b", smollm2_path, seed=1), smollm2_path, root / "b.gguf"),
        "gemma": export_lora_adapter(write_random_peft(root / "peft-g", gemma_path, seed=2), gemma_path,
                                     root / "gemma.gguf"),
    }


def _complete(engine, model: str, adapters=None) -> dict:
    return engine.complete(model, PROMPT, GREEDY, adapters=adapters).result(timeout=300)


def test_adapter_changes_output_and_switching_back_gives_the_base_again(engine, smollm2_path, adapters):
    base = _complete(engine, smollm2_path)
    loads = base["metrics"]["model_loads"]
    with_a = _complete(engine, smollm2_path, [{"path": str(adapters["a"]), "scale": 1.0}])
    again_a = _complete(engine, smollm2_path, [{"path": str(adapters["a"]), "scale": 1.0}])
    base_again = _complete(engine, smollm2_path)
    with_b = _complete(engine, smollm2_path, [{"path": adapters["b"]}])
    both = _complete(engine, smollm2_path, [{"path": adapters["a"], "scale": 0.5}, {"path": adapters["b"], "scale": 0.5}])

    assert with_a["result"]["text"] != base["result"]["text"], "the adapter did not change the output"
    assert with_a["metrics"]["adapters"] == [{"path": str(adapters["a"]), "scale": 1.0}]
    assert again_a["result"]["text"] == with_a["result"]["text"]
    assert base_again["result"]["text"] == base["result"]["text"], "switching the adapter off did not restore the base"
    assert base_again["metrics"]["adapters"] == []
    # Each set changes the output; a blend of a and b may happen to agree with one of them on
    # 16 greedy tokens, so only a against b is required to differ.
    assert with_b["result"]["text"] != base["result"]["text"] and both["result"]["text"] != base["result"]["text"]
    assert with_a["result"]["text"] != with_b["result"]["text"]
    assert both["metrics"]["adapters"] == [{"path": str(adapters["a"]), "scale": 0.5},
                                          {"path": str(adapters["b"]), "scale": 0.5}]
    # One base load for all of it: adapters are switched, not reloaded.
    assert [r["metrics"]["model_loads"] for r in (with_a, again_a, base_again, with_b, both)] == [loads] * 5
    # The KV prefix cache is dropped when the adapter set changes and kept while it does not.
    assert with_a["metrics"]["prompt_tokens_cached"] == 0
    assert base_again["metrics"]["prompt_tokens_cached"] == 0
    assert again_a["metrics"]["prompt_tokens_cached"] == again_a["metrics"]["prompt_tokens"] - 1
    listing = engine.adapters()
    assert listing["model_loads"] == loads
    (entry,) = [m for m in listing["models"] if m["model"] == smollm2_path]
    assert entry["loaded"] == sorted([str(adapters["a"]), str(adapters["b"])])
    assert entry["active"] == [{"path": str(adapters["a"]), "scale": 0.5}, {"path": str(adapters["b"]), "scale": 0.5}]


def test_adapters_apply_to_chat_and_batched_generation(engine, smollm2_path, adapters):
    messages = [{"role": "user", "content": "Name a colour."}]
    lora = [{"path": str(adapters["a"]), "scale": 1.0}]
    chat_base = engine.chat(smollm2_path, messages, GREEDY).result(timeout=300)
    chat_lora = engine.chat(smollm2_path, messages, GREEDY, adapters=lora).result(timeout=300)
    assert chat_lora["result"]["text"] != chat_base["result"]["text"]

    items = ["The capital of France is", "One plus one equals"]
    batch_base = engine.generate_batch(smollm2_path, items, max_tokens=12).result(timeout=300)
    batch_lora = engine.generate_batch(smollm2_path, items, max_tokens=12, adapters=lora).result(timeout=300)
    batch_back = engine.generate_batch(smollm2_path, items, max_tokens=12).result(timeout=300)
    assert batch_lora["result"]["texts"] != batch_base["result"]["texts"]
    assert batch_back["result"]["texts"] == batch_base["result"]["texts"]
    assert engine.adapters()["model_loads"] == chat_base["metrics"]["model_loads"]


def test_load_adapter_reports_its_shape(engine, smollm2_path, adapters):
    info = engine.load_adapter(smollm2_path, adapters["b"])
    assert info["alpha"] == 16.0 and info["rank"] == 8
    assert info["tensors"] == 2 * 7 * 30  # A and B of seven matrices in each of SmolLM2's 30 layers


def test_a_re_exported_adapter_file_is_picked_up(engine, smollm2_path, adapters, tmp_path):
    path = tmp_path / "mine.gguf"
    export_lora_adapter(write_random_peft(tmp_path / "p0", smollm2_path, seed=0), smollm2_path, path)
    first = _complete(engine, smollm2_path, [{"path": str(path)}])
    assert first["result"]["text"] == _complete(engine, smollm2_path, [{"path": str(adapters["a"])}])["result"]["text"]
    export_lora_adapter(write_random_peft(tmp_path / "p1", smollm2_path, seed=1), smollm2_path, path)
    second = _complete(engine, smollm2_path, [{"path": str(path)}])
    assert second["result"]["text"] == _complete(engine, smollm2_path, [{"path": str(adapters["b"])}])["result"]["text"]


def _wrong_shape_adapter(path: Path) -> Path:
    """A well-formed llama LoRA adapter for a model with another width than SmolLM2."""
    writer = gguf.GGUFWriter(path, "llama")
    writer.add_type(gguf.GGUFType.ADAPTER)
    writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
    writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, 16.0)
    writer.add_tensor("blk.0.attn_q.weight.lora_a", np.zeros((8, 64), np.float32))
    writer.add_tensor("blk.0.attn_q.weight.lora_b", np.zeros((64, 8), np.float32))
    writer.write_header_to_file(path)
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_bad_adapters_get_a_clear_message_and_the_engine_carries_on(engine, smollm2_path, adapters, tmp_path):
    text_file = tmp_path / "notes.gguf"
    text_file.write_text("not a model at all, just some words " * 4)
    cases = [
        ([{"path": str(tmp_path / "missing.gguf")}], "does not exist"),
        ([{"path": str(text_file)}], "cannot be used"),
        ([{"path": smollm2_path}], "not a LoRA adapter"),
        ([{"path": str(adapters["gemma"])}], "made for a 'gemma3' model"),
        ([{"path": str(_wrong_shape_adapter(tmp_path / "narrow.gguf"))}], "made for another model"),
        ([{"path": str(adapters["a"]), "scale": "strong"}], "scale must be a number"),
        ("a.gguf", "must be a list"),
    ]
    loads = engine.adapters()["model_loads"]
    for adapters_param, expected in cases:
        handle = engine.request("complete", {"model": smollm2_path, "prompt": PROMPT, "sampling": GREEDY,
                                             "adapters": adapters_param})
        with pytest.raises(EngineRequestError) as caught:
            handle.result(timeout=300)
        assert expected in str(caught.value), (adapters_param, str(caught.value))
        assert caught.value.kind in ("bad_adapter", "bad_request")
    with pytest.raises(EngineRequestError, match="not a LoRA adapter"):
        engine.load_adapter(smollm2_path, smollm2_path)
    # The engine still answers, with the base it had, loaded once.
    done = _complete(engine, smollm2_path)
    assert done["result"]["text"] and done["metrics"]["model_loads"] == loads
