"""Pruning: layer choice, the student's surgery, and its GGUF running in llama.cpp.

Real SmolLM2 (from the shared base cache), real llama.cpp; tiny calibration and text sizes.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from training.prune.config import PruneConfig
from training.prune.trainer import (
    PruneError,
    build_student,
    choose_layers,
    cosine_importance,
    count_params,
    decoder_layers,
    prune,
)


@pytest.fixture(scope="module")
def teacher(smollm2_base):
    model, tokenizer = smollm2_base
    return model, tokenizer


@pytest.fixture(scope="module")
def calibration(teacher, peps_dir):
    _, tokenizer = teacher
    text = (peps_dir / "pep-0604.rst").read_text(encoding="utf-8")[:2000]
    ids = tokenizer(text, add_special_tokens=False)["input_ids"][:64]
    return np.asarray(ids, dtype=np.int64).reshape(2, 32)


def test_every_other_keeps_evenly_spaced_layers_first_and_last_included(teacher):
    model, _ = teacher
    layers, measured = choose_layers(model, PruneConfig(strategy="every_other", keep_ratio=0.5), None)
    assert len(layers) == 15 and layers[0] == 0 and layers[-1] == 29
    assert all(b - a in (2, 3) for a, b in zip(layers, layers[1:])) and measured == {}


def test_layer_choices_that_make_no_student_are_refused(teacher):
    model, _ = teacher
    with pytest.raises(PruneError, match="drops nothing"):
        choose_layers(model, PruneConfig(strategy="every_other", keep_layers=30), None)
    with pytest.raises(PruneError, match="distinct indices"):
        choose_layers(model, PruneConfig(strategy="explicit", layers=[0, 40]), None)
    with pytest.raises(ValueError, match="ffn_keep_ratio"):
        PruneConfig(ffn_keep_ratio=0.0)
    with pytest.raises(PruneError, match="calibration"):
        choose_layers(model, PruneConfig(strategy="importance"), None)


def test_importance_is_measured_per_layer_and_keeps_first_and_last(teacher, calibration):
    model, _ = teacher
    scores = cosine_importance(model, calibration[:1])
    assert sorted(scores) == list(range(30))
    assert all(0.0 <= v <= 2.0 for v in scores.values())
    assert len(set(round(v, 6) for v in scores.values())) > 20  # a real measurement, not a constant
    layers, measured = choose_layers(model, PruneConfig(keep_layers=10, iterative=False), calibration[:1])
    assert len(layers) == 10 and 0 in layers and 29 in layers
    dropped = {d["layer"] for d in measured["dropped"]}
    assert dropped.isdisjoint(layers) and len(dropped) == 20
    # The dropped layers are those with the lowest scores among the droppable ones.
    kept_inner = [scores[i] for i in layers if i not in (0, 29)]
    assert max(scores[i] for i in dropped) <= min(kept_inner)


def test_student_is_a_valid_smaller_model_of_the_same_architecture(teacher, calibration, tmp_path):
    model, _ = teacher
    before = {k: v.clone() for k, v in model.model.layers[3].state_dict().items()}
    student, record = build_student(model, [0, 3, 7, 29], ffn_keep_ratio=0.5, calibration=calibration)
    assert len(decoder_layers(model)) == 30 and model.config.num_hidden_layers == 30  # teacher unchanged
    assert all(torch.equal(before[k], v) for k, v in model.model.layers[3].state_dict().items())
    assert student.config.num_hidden_layers == 4 and record["layer_map"] == [0, 3, 7, 29]
    assert student.config.intermediate_size == 768 == record["ffn"]["intermediate_size"]
    assert [layer.self_attn.layer_idx for layer in decoder_layers(student)] == [0, 1, 2, 3]
    # DistilBERT initialisation: attention weights are the teacher's own.
    assert torch.equal(student.model.layers[1].self_attn.q_proj.weight, model.model.layers[3].self_attn.q_proj.weight)
    assert student.model.layers[0].mlp.down_proj.weight.shape == (576, 768)
    assert count_params(student) < count_params(model) / 2
    student.save_pretrained(tmp_path / "student")
    from transformers import AutoModelForCausalLM

    again = AutoModelForCausalLM.from_pretrained(tmp_path / "student")
    ids = torch.from_numpy(calibration[:1])
    with torch.no_grad():
        assert torch.allclose(again(ids).logits, student.eval()(ids).logits, atol=1e-4)


def test_pruned_student_gguf_runs_in_llama_cpp_with_the_same_perplexity(teacher, calibration, smollm2_gguf,
                                                                         peps_dir, tmp_path):
    from training.evaluate import gguf_perplexity, tokenize_windows
    from training.prune.gguf_export import write_student_gguf

    model, _ = teacher
    student, record = prune(model, PruneConfig(strategy="every_other", keep_layers=8, ffn_keep_ratio=0.75),
                            calibration)
    out = write_student_gguf(student, smollm2_gguf, tmp_path / "student.gguf", record["layer_map"], dtype="f32")
    from engine.gguf_check import check_gguf

    header = check_gguf(out)
    assert header.metadata["llama.block_count"] == 8 and header.metadata["llama.feed_forward_length"] == 1152
    assert not any(t.name.startswith("blk.8.") for t in header.tensors)
    assert {tuple(t.shape) for t in header.tensors if t.name.endswith("ffn_down.weight")} == {(1152, 576)}
    text = (peps_dir / "pep-0613.rst").read_text(encoding="utf-8")[:1500]
    ctx = 128
    llama_ppl = gguf_perplexity(out, [text], ctx=ctx)
    windows = tokenize_windows(out, [text], ctx=ctx)
    total, count = 0.0, 0
    with torch.no_grad():
        for window in windows:
            ids = torch.tensor([window])
            out_loss = student.eval()(input_ids=ids, labels=ids).loss
            total += float(out_loss) * (len(window) - 1)
            count += len(window) - 1
    torch_ppl = math.exp(total / count)
    assert abs(llama_ppl / torch_ppl - 1) < 0.02, (llama_ppl, torch_ppl)


def test_unknown_metadata_overrides_are_refused_before_writing(teacher, smollm2_gguf, tmp_path):
    from training.export.common import ExportError
    from training.export.full_gguf import write_full_gguf

    model, _ = teacher
    with pytest.raises(ExportError, match="no metadata key llama.colour"):
        write_full_gguf(model, smollm2_gguf, tmp_path / "x.gguf", metadata_overrides={"llama.colour": 1})
    assert not (tmp_path / "x.gguf").exists()


def test_prune_job_refuses_an_installed_student(smollm2_gguf, tmp_path):
    from training.distill.job import preflight, run_job
    from training.progress import ProgressReporter
    from training.prune.job import PruneError
    from training.run import KINDS

    job = {"kind": "prune", "teacher_gguf": str(smollm2_gguf), "student_gguf": str(smollm2_gguf),
           "output_dir": str(tmp_path / "out"), "dataset": {"type": "text_files", "paths": []}}
    assert KINDS["prune"] == "training.distill.job"  # the prune kind runs as the distillation that cuts
    with pytest.raises(PruneError, match="makes its student from the teacher"):
        run_job(job, ProgressReporter())
    with pytest.raises(PruneError, match="makes its student from the teacher"):
        preflight(job)
    assert not (tmp_path / "out").exists()


# ----- Gemma 3: llama.cpp fixes local/global attention by block position ------------------------
def test_fit_layer_pattern_keeps_the_positional_pattern_and_says_when_none_exists():
    from training.prune.trainer import fit_layer_pattern, positional_layer_types

    teacher = positional_layer_types("gemma3", 18)  # global at 5, 11, 17
    assert positional_layer_types("llama", 30) is None
    for keep in range(1, 18):
        required = positional_layer_types("gemma3", keep)
        chosen = fit_layer_pattern(teacher, required, lambda s, i: 0.0)
        if keep > 15:  # 16 or 17 blocks need globals at 5 and 11 and 15 sliding blocks: there are 15
            assert chosen is None or [teacher[i] for i in chosen] == required
            continue
        assert chosen is not None and chosen == sorted(set(chosen)) and [teacher[i] for i in chosen] == required
    # The score decides among the valid choices: evenly spaced for half depth.
    targets = np.linspace(0, 17, 9)
    chosen = fit_layer_pattern(teacher, positional_layer_types("gemma3", 9), lambda s, i: -(i - targets[s]) ** 2)
    assert chosen[5] in (5, 11, 17) and len(chosen) == 9 and chosen[0] == 0
    assert fit_layer_pattern(["a", "a"], ["b"], lambda s, i: 0.0) is None


def test_a_gemma_student_whose_layers_break_the_pattern_is_refused_before_anything_runs(gemma3_gguf):
    from training.distill.config import DistillConfig
    from training.distill.job import DistillError, preflight

    job = {"teacher_gguf": str(gemma3_gguf), "output_dir": "/nonexistent",
           "dataset": {"type": "text_files", "paths": [__file__]},
           "prune": {"strategy": "explicit", "layers": [0, 2, 4, 6, 8, 10, 12, 14, 17]}}
    with pytest.raises(DistillError, match="local or global attention by their position"):
        preflight(job, DistillConfig())
    job["prune"] = {"strategy": "every_other", "keep_layers": 9}
    assert preflight(job, DistillConfig())["mode"] == "logits"


@pytest.fixture(scope="module")
def gemma_teacher(gemma3_gguf, base_cache_root):
    from training.base_model import load_base

    return load_base(gemma3_gguf, base_cache_root)


def test_a_pruned_gemma_student_runs_in_llama_cpp_as_in_torch_beyond_the_sliding_window(
        gemma_teacher, gemma3_gguf, peps_dir, tmp_path):
    from training.evaluate import token_stats, tokenize_windows
    from training.prune.gguf_export import write_student_gguf

    model, tokenizer = gemma_teacher
    window = int(model.config.sliding_window)
    text = (peps_dir / "pep-0484.rst").read_text(encoding="utf-8")[:12000]
    ids = tokenizer(text[:3000], add_special_tokens=False)["input_ids"][:64]
    calibration = np.asarray(ids, dtype=np.int64).reshape(2, 32)
    for strategy in ("every_other", "importance"):
        student, record = prune(model, PruneConfig(strategy=strategy, keep_layers=9), calibration)
        kinds = list(student.config.layer_types)
        assert kinds == ["full_attention" if (i + 1) % 6 == 0 else "sliding_attention" for i in range(9)], record
        assert [model.config.layer_types[i] for i in record["layer_map"]] == kinds
    # The importance student is written and scored at a context twice the sliding window, where
    # local and global attention differ: llama.cpp computes what torch does.
    out = write_student_gguf(student, gemma3_gguf, tmp_path / "gemma-student.gguf", record["layer_map"], dtype="f32")
    ctx = 2 * window
    windows = tokenize_windows(out, [text], ctx=ctx)[:1]
    assert len(windows[0]) > window + 64, "the text must reach past the sliding window"
    llama = token_stats(out, windows, ctx=ctx)
    with torch.no_grad():
        logits = student.eval()(input_ids=torch.tensor(windows), use_cache=False).logits[0, :-1].double()
    targets = torch.tensor(windows[0][1:])
    torch_nll = (torch.logsumexp(logits, -1) - logits.gather(1, targets[:, None])[:, 0]).numpy()
    torch_argmax = logits.argmax(-1).numpy()
    assert llama.nll.shape == torch_nll.shape
    # An unhealed half-depth student is a poor model (perplexity in the tens of thousands), so
    # the two are compared position by position, not by perplexity: beyond the window, where a
    # wrong local/global pattern would show, they agree as closely as before it.
    for part in (slice(0, window), slice(window, None)):
        assert np.mean(np.abs(llama.nll[part] - torch_nll[part])) < 0.02, part
        assert np.mean(llama.argmax[part] == torch_argmax[part]) > 0.97, part
