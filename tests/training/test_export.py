"""The project's GGUF writers: LoRA adapters and merged full models, checked against the
transformers model they came from (next-token parity through llama.cpp), plus their file
format, quantization, import into the library and refusal of what they cannot write.

Real components throughout: SmolLM2 (llama) from the default pack read by transformers'
GGUF loader, peft, the project's writers, llama.cpp (training.evaluate) and the quantizer.
The LoRA has peft's own A initialisation and a non-zero random B (seed fixed), so that it
really changes the model.
"""

from __future__ import annotations

import copy
from pathlib import Path

import gguf
import numpy as np
import pytest

from engine import model_pack
from training.evaluate import gguf_next_token_agreement, token_stats, tokenize_windows
from training.export import (
    ExportError,
    UnsupportedArchitectureError,
    export_lora_adapter,
    merge_and_export,
    write_full_gguf,
)
from training.export.common import permute_qk_rows
from training.export.full_gguf import load_hf_model

DOCS = Path(__file__).resolve().parents[3] / "shared" / "data" / "documents" / "typing-peps"
CTX = 256
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
# Standard deviation of the random lora_B: large enough that the adapter changes the
# model's next token at a good share of positions, so parity with it means something.
B_STD = 0.05


def _texts() -> list[str]:
    assert DOCS.is_dir(), f"the shared document corpus is missing: {DOCS}"
    return [(DOCS / "pep-0484.rst").read_text(encoding="utf-8")[:1600],
            (DOCS / "pep-0544.rst").read_text(encoding="utf-8")[:1600]]


def _smollm2() -> Path:
    path = model_pack.locate(model_pack.SMOLLM2, Path("/nonexistent"))
    assert path is not None, "the default model pack is not installed: run `make test`, which installs it"
    return Path(path)


def _hf_argmax(model, windows) -> np.ndarray:
    import torch

    rows = []
    with torch.no_grad():
        for window in windows:
            logits = model(torch.tensor([window])).logits[0, :-1]
            rows.append(logits.argmax(-1).numpy())
    return np.concatenate(rows)


def _agreement(a: np.ndarray, b: np.ndarray) -> float:
    assert a.shape == b.shape and a.size > 0
    return float((a == b).mean())


@pytest.fixture(scope="module")
def smol(tmp_path_factory):
    """Everything the SmolLM2 tests compare, built once: the HF base, a random peft LoRA,
    the exported f16 base, the GGUF adapter, the merged f16 model and the HF argmaxes."""
    import torch
    from peft import LoraConfig, get_peft_model

    root = tmp_path_factory.mktemp("smol-export")
    source = _smollm2()
    base = load_hf_model(source).eval()
    windows = tokenize_windows(source, _texts(), ctx=CTX)[:2]
    out = {"root": root, "source": source, "windows": windows}
    out["hf_base"] = _hf_argmax(base, windows)
    out["base_f16"] = write_full_gguf(base, source, root / "base-f16.gguf")

    torch.manual_seed(0)
    peft_model = get_peft_model(base, LoraConfig(r=8, lora_alpha=16, target_modules=TARGETS, lora_dropout=0.0))
    for name, parameter in peft_model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(parameter, std=B_STD)
    peft_model.save_pretrained(root / "peft")
    out["hf_lora"] = _hf_argmax(peft_model, windows)
    out["lora_state"] = {k: v.detach().numpy().copy() for k, v in peft_model.state_dict().items() if "lora_" in k}
    out["adapter"] = export_lora_adapter(root / "peft", out["base_f16"], root / "adapter.gguf")

    plain = peft_model.unload()  # the base again, without LoRA layers
    out["hf_model"] = plain
    out["merged_f16"] = merge_and_export(source, root / "peft", root / "merged-f16.gguf", model=copy.deepcopy(plain))
    return out


def test_llama_parity_base_adapter_and_merged(smol):
    windows = smol["windows"]
    positions = sum(len(w) - 1 for w in windows)
    changed = 1.0 - _agreement(smol["hf_base"], smol["hf_lora"])
    base = _agreement(smol["hf_base"], token_stats(smol["base_f16"], windows, ctx=CTX).argmax)
    lora = _agreement(smol["hf_lora"], token_stats(smol["base_f16"], windows, ctx=CTX, lora_path=smol["adapter"]).argmax)
    merged = _agreement(smol["hf_lora"], token_stats(smol["merged_f16"], windows, ctx=CTX).argmax)
    print(f"\nSmolLM2 parity over {positions} positions: base f16 {base:.4f}, f16 + adapter {lora:.4f}, "
          f"merged f16 {merged:.4f}; the adapter changes the HF argmax at {changed:.4f}")
    assert changed >= 0.05, "the random adapter barely changes the model, so the parity below proves little"
    assert base >= 0.99
    assert lora >= 0.99
    assert merged >= 0.99


@pytest.fixture(scope="module")
def gemma_hf(joined_pack_dir, base_cache_root):
    """Gemma 3 from the pack and its transformers model (loaded once: transformers' loader
    leaves a progress-bar monitor thread, which must predate the test), read from the
    session's base cache (dequantized once for all the training tests)."""
    assert model_pack.is_installed(model_pack.GEMMA3), "the Gemma 3 pack is not installed: run `make test`"
    source = model_pack.join_parts(model_pack.GEMMA3, joined_pack_dir)
    return source, load_hf_model(source, base_cache_root).eval()


def test_gemma3_parity_base_and_adapter(gemma_hf, tmp_path):
    """Gemma 3 (no Q/K permutation; llama.cpp keeps its norms as 1 + w): the f16 export and
    the GGUF adapter on it against transformers. The merged path is the same writer as the
    base export and is covered for llama above (a 540 MB second copy would double the time)."""
    import torch
    from peft import LoraConfig, get_peft_model

    source, base = gemma_hf
    windows = tokenize_windows(source, _texts(), ctx=CTX)[:2]
    base_f16 = write_full_gguf(base, source, tmp_path / "gemma-f16.gguf")
    hf_base = _hf_argmax(base, windows)
    torch.manual_seed(0)
    peft_model = get_peft_model(base, LoraConfig(r=8, lora_alpha=16, target_modules=TARGETS, lora_dropout=0.0))
    for name, parameter in peft_model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(parameter, std=B_STD)
    peft_model.save_pretrained(tmp_path / "peft")
    hf_lora = _hf_argmax(peft_model, windows)
    adapter = export_lora_adapter(tmp_path / "peft", base_f16, tmp_path / "gemma-lora.gguf")

    changed = 1.0 - _agreement(hf_base, hf_lora)
    base_agreement = _agreement(hf_base, token_stats(base_f16, windows, ctx=CTX).argmax)
    lora_agreement = _agreement(hf_lora, token_stats(base_f16, windows, ctx=CTX, lora_path=adapter).argmax)
    print(f"\nGemma 3 parity over {hf_base.size} positions: base f16 {base_agreement:.4f}, "
          f"f16 + adapter {lora_agreement:.4f}; the adapter changes the HF argmax at {changed:.4f}")
    assert changed >= 0.05
    assert base_agreement >= 0.99
    assert lora_agreement >= 0.99


def test_without_the_qk_permutation_the_adapter_disagrees(smol):
    """The control for the permutation: the same adapter with lora_B of q/k left in HF row
    order makes llama.cpp compute another model."""
    reader = gguf.GGUFReader(smol["adapter"])
    n_head, n_kv = 9, 3  # SmolLM2-135M
    unpermuted = smol["root"] / "adapter-unpermuted.gguf"
    writer = gguf.GGUFWriter(unpermuted, "llama")
    writer.add_type(gguf.GGUFType.ADAPTER)
    writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
    writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, 16.0)
    for tensor in reader.tensors:
        data = np.array(tensor.data)
        if tensor.name.endswith(("attn_q.weight.lora_b", "attn_k.weight.lora_b")):
            heads = n_head if ".attn_q." in tensor.name else n_kv
            # the inverse of permute_qk_rows (as transformers' GGUF loader does it)
            data = data.reshape(heads, data.shape[0] // heads // 2, 2, -1).swapaxes(1, 2).reshape(data.shape)
        writer.add_tensor(tensor.name, np.ascontiguousarray(data))
    writer.write_header_to_file(unpermuted)
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    windows = smol["windows"]
    wrong = _agreement(smol["hf_lora"], token_stats(smol["base_f16"], windows, ctx=CTX, lora_path=unpermuted).argmax)
    right = _agreement(smol["hf_lora"], token_stats(smol["base_f16"], windows, ctx=CTX, lora_path=smol["adapter"]).argmax)
    print(f"\nadapter agreement with the permutation {right:.4f}, without {wrong:.4f}")
    assert wrong < right - 0.02


def test_adapter_file_format(smol):
    reader = gguf.GGUFReader(smol["adapter"])
    fields = {name: field.contents() for name, field in reader.fields.items() if not name.startswith("GGUF.")}
    assert fields["general.architecture"] == "llama"
    assert fields["general.type"] == "adapter"
    assert fields["adapter.type"] == "lora"
    assert fields["adapter.lora.alpha"] == 16.0
    tensors = {t.name: np.array(t.data) for t in reader.tensors}
    assert len(tensors) == 2 * len(TARGETS) * 30
    state = smol["lora_state"]
    prefix = "base_model.model.model.layers.3."
    a_q = state[prefix + "self_attn.q_proj.lora_A.default.weight"]
    b_q = state[prefix + "self_attn.q_proj.lora_B.default.weight"]
    b_k = state[prefix + "self_attn.k_proj.lora_B.default.weight"]
    b_v = state[prefix + "self_attn.v_proj.lora_B.default.weight"]
    assert a_q.shape == (8, 576) and b_q.shape == (576, 8)  # rank 8 carried in the shapes
    np.testing.assert_array_equal(tensors["blk.3.attn_q.weight.lora_a"], a_q)
    np.testing.assert_array_equal(tensors["blk.3.attn_q.weight.lora_b"], permute_qk_rows(b_q, 9))
    np.testing.assert_array_equal(tensors["blk.3.attn_k.weight.lora_b"], permute_qk_rows(b_k, 9, 3))
    np.testing.assert_array_equal(tensors["blk.3.attn_v.weight.lora_b"], b_v)  # V is not rotated: unchanged
    assert not np.array_equal(tensors["blk.3.attn_q.weight.lora_b"], b_q)


def test_full_model_keeps_every_key_and_tensor_of_the_source(smol):
    source = gguf.GGUFReader(smol["source"])
    written = gguf.GGUFReader(smol["merged_f16"])

    def raw(field):
        return [bytes(p) for p in (field.parts[i] for i in field.data)]

    changed = {"general.file_type", "general.name", "general.quantization_version"}
    for name, field in source.fields.items():
        if name.startswith("GGUF.") or name in changed:
            continue
        assert name in written.fields, f"{name} was not carried over"
        assert raw(written.fields[name]) == raw(field), f"{name} differs"
    assert written.fields["general.file_type"].contents() == gguf.LlamaFileType.MOSTLY_F16
    assert "peft" in written.fields["general.name"].contents()
    assert [(t.name, list(t.shape)) for t in written.tensors] == [(t.name, list(t.shape)) for t in source.tensors]
    for tensor in written.tensors:
        expected = gguf.GGMLQuantizationType.F16 if len(tensor.shape) == 2 else gguf.GGMLQuantizationType.F32
        assert tensor.tensor_type == expected, tensor.name


def test_an_hf_folder_gives_the_same_file_as_the_model_object(smol, tmp_path):
    """The base cache of training.base_model is an HF folder: writing from it must give
    byte for byte the file the in-memory model gave."""
    smol["hf_model"].save_pretrained(tmp_path / "hf", safe_serialization=True)
    again = write_full_gguf(tmp_path / "hf", smol["source"], tmp_path / "again.gguf")
    assert again.read_bytes() == Path(smol["base_f16"]).read_bytes()


def test_quantized_merges_import_into_the_library_and_run(smol, data_dir):
    from assistant.app import build_services
    from assistant.config import default_paths
    from engine.client import EngineClient
    from training.quantize import quantize_gguf

    root = smol["root"]
    q8 = merge_and_export(smol["source"], root / "peft", root / "merged-q8_0.gguf", quantize="Q8_0",
                          model=copy.deepcopy(smol["hf_model"]))
    files = {"Q8_0": q8}
    for qtype in ("Q4_K_M", "Q4_1"):
        files[qtype] = quantize_gguf(smol["merged_f16"], root / f"merged-{qtype.lower()}.gguf", qtype)
    agreement = {q: gguf_next_token_agreement(smol["merged_f16"], path, _texts(), ctx=CTX) for q, path in files.items()}
    print("\nnext-token agreement of the quantized merges with the merged f16:", agreement)
    assert agreement["Q8_0"] >= 0.95
    assert not [p for p in root.iterdir() if p.name.startswith(".")], "a temporary file was left behind"

    services = build_services(default_paths())
    try:
        records = {}
        for qtype, path in files.items():
            record = records[qtype] = services.library.add(path)
            assert record.metadata["architecture"] == "llama"
            assert record.metadata["quantization"] == qtype
            assert "chat" in record.tasks  # the chat template came along
            assert services.library.get(record.id).path == str(path.resolve())
        with EngineClient() as engine:
            done = engine.chat(records["Q4_K_M"].path, [{"role": "user", "content": "Say hello."}],
                               {"temperature": 0.0, "max_tokens": 8}).result(timeout=300)
        assert done["result"]["text"].strip()
    finally:
        services.close()


def _fake_gguf(path: Path, arch: str) -> Path:
    writer = gguf.GGUFWriter(path, arch)
    writer.add_uint32(f"{arch}.block_count", 1)
    writer.add_tensor("token_embd.weight", np.zeros((4, 8), np.float32))
    writer.write_header_to_file(path)
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_unsupported_architecture_is_refused_before_anything_is_written(smol, tmp_path):
    gpt2 = _fake_gguf(tmp_path / "gpt2.gguf", "gpt2")
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(UnsupportedArchitectureError, match="'gpt2' model; the GGUF exporter supports gemma3, llama"):
        export_lora_adapter(smol["root"] / "peft", gpt2, out / "adapter.gguf")
    with pytest.raises(UnsupportedArchitectureError, match="gpt2"):
        write_full_gguf(smol["hf_model"], gpt2, out / "model.gguf")
    with pytest.raises(UnsupportedArchitectureError, match="gpt2"):
        merge_and_export(gpt2, smol["root"] / "peft", out / "merged.gguf")
    assert list(out.iterdir()) == []


def test_bad_adapters_fail_clearly_and_leave_old_files_intact(tmp_path):
    import json
    import shutil

    from tests.engine.test_adapters import write_random_peft

    source = _smollm2()
    work = tmp_path / "work"
    work.mkdir()
    peft_dir = write_random_peft(tmp_path / "peft", str(source), seed=0)
    target = work / "adapter.gguf"
    target.write_bytes(b"previous adapter")
    # An adapter exported against a model it was not trained on (a smaller llama).
    narrow = _fake_gguf(tmp_path / "narrow.gguf", "llama")
    with pytest.raises(ExportError, match="no counterpart|another model"):
        export_lora_adapter(peft_dir, narrow, target)
    dora = tmp_path / "dora"
    shutil.copytree(peft_dir, dora)
    config = json.loads((dora / "adapter_config.json").read_text())
    (dora / "adapter_config.json").write_text(json.dumps({**config, "use_dora": True}))
    with pytest.raises(ExportError, match="DoRA"):
        export_lora_adapter(dora, source, target)
    with pytest.raises(ExportError, match="not a peft adapter folder"):
        export_lora_adapter(work, source, target)
    with pytest.raises(ExportError, match="f16, bf16, f32"):
        write_full_gguf(peft_dir, source, work / "x.gguf", dtype="q4")
    assert target.read_bytes() == b"previous adapter"
    assert sorted(p.name for p in work.iterdir()) == ["adapter.gguf"]  # no temporary file left
    # The same folder exports fine against the model it was made for.
    assert export_lora_adapter(peft_dir, source, target).stat().st_size > 1_000_000


def test_adapter_scale_follows_peft_alpha_patterns_and_rslora():
    from training.export.lora_gguf import AdapterTensors

    pair = (np.zeros((8, 4), np.float32), np.zeros((4, 8), np.float32))
    pairs = {"model.layers.0.self_attn.q_proj": pair, "model.layers.0.mlp.up_proj": pair}
    plain = AdapterTensors({"lora_alpha": 16}, pairs)
    assert plain.scale("model.layers.0.mlp.up_proj") == 2.0
    patterned = AdapterTensors({"lora_alpha": 16, "alpha_pattern": {"q_proj": 32}}, pairs)
    assert patterned.scale("model.layers.0.self_attn.q_proj") == 4.0
    assert patterned.scale("model.layers.0.mlp.up_proj") == 2.0
    assert AdapterTensors({"lora_alpha": 16, "use_rslora": True}, pairs).scale("model.layers.0.mlp.up_proj") == 16 / 8 ** 0.5
