"""Distillation: the divergences, the trainer, the job (cancel, resume, artefacts and their
record), sequence-level data from a teacher with another tokenizer, and the refusals.

Real SmolLM2 and Gemma 3 from the default pack, real llama.cpp; tiny step counts and blocks.
"""

from __future__ import annotations

import io
import json
import math

import numpy as np
import pytest
import torch

from tests.training.conftest import PEPS
from training.datasets import DatasetError, PackedData
from training.distill.config import DistillConfig
from training.distill.job import DistillError, check_memory, preflight, run_job
from training.distill.trainer import DistillTrainer, divergence
from training.progress import JobCancelled, ProgressReporter
from training.resources import ResourceError


# ----- the divergences --------------------------------------------------------------------------
def test_divergences_are_zero_for_equal_distributions_and_positive_otherwise():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(3, 5, 50, generator=g)
    b = torch.randn(3, 5, 50, generator=g) * 3
    for kind in ("forward", "reverse", "skew_forward", "skew_reverse"):
        assert divergence(a, a, kind, 2.0).abs().max() < 1e-5
        assert (divergence(a, b, kind, 2.0) > 0).all()
    forward, reverse = divergence(a, b, "forward", 1.0), divergence(a, b, "reverse", 1.0)
    assert not torch.allclose(forward, reverse)  # KL is not symmetric: the options differ
    # Skew KL with no mixing is plain KL; with mixing it is bounded by it.
    assert torch.allclose(divergence(a, b, "skew_forward", 1.0, skew_lambda=0.0), divergence(a, b, "forward", 1.0),
                          atol=1e-5)
    assert (divergence(a, b, "skew_forward", 1.0, 0.1) < forward).all()


def test_forward_kl_matches_torch_kl_div_scaled_by_temperature_squared():
    g = torch.Generator().manual_seed(1)
    s, t = torch.randn(4, 30, generator=g), torch.randn(4, 30, generator=g)
    T = 3.0
    expected = torch.nn.functional.kl_div(torch.log_softmax(s / T, -1), torch.log_softmax(t / T, -1),
                                          log_target=True, reduction="none").sum(-1) * T * T
    assert torch.allclose(divergence(s, t, "forward", T), expected, atol=1e-5)


def test_bad_settings_are_refused_with_their_name():
    with pytest.raises(ValueError, match="divergence"):
        DistillConfig(divergence="js")
    with pytest.raises(ValueError, match="temperature"):
        DistillConfig(temperature=0)
    with pytest.raises(ValueError, match="Unknown distillation settings: colour"):
        DistillConfig.from_dict({"colour": 1})


# ----- the trainer ------------------------------------------------------------------------------
def _blocks(tokenizer, text: str, n: int, seq_len: int) -> np.ndarray:
    ids = tokenizer(text, add_special_tokens=False)["input_ids"][: n * seq_len]
    return np.asarray(ids, dtype=np.int64).reshape(n, seq_len)


def test_distillation_steps_pull_the_pruned_student_towards_the_teacher(smollm2_base, peps_dir, tmp_path):
    from training.prune.trainer import build_student

    teacher, tokenizer = smollm2_base
    blocks = _blocks(tokenizer, (peps_dir / "pep-0604.rst").read_text(encoding="utf-8"), 2, 24)
    data = PackedData(24, blocks, blocks.copy(), blocks[:1], blocks[:1].copy())
    student, record = build_student(teacher, [0, 10, 20, 29])
    config = DistillConfig(max_steps=4, batch_size=2, seq_len=24, learning_rate=5e-4, warmup_steps=0,
                           schedule="constant", eval_blocks=1)
    trainer = DistillTrainer(student, teacher, data, config, tmp_path, ProgressReporter(io.StringIO()),
                             record["layer_map"])
    ids = torch.from_numpy(blocks)
    with torch.no_grad():
        before = {k: float(v) for k, v in trainer.losses_for(ids, ids).items()}
    assert set(before) == {"lm", "kl", "cos", "total"} and trainer.align == "mapped"
    assert math.isclose(before["total"], 2 * before["lm"] + 5 * before["kl"] + before["cos"], rel_tol=1e-4)
    stats = trainer.train()
    with torch.no_grad():
        after = {k: float(v) for k, v in trainer.losses_for(ids, ids).items()}
    trainer.close()
    assert stats["steps"] == 4 and stats["tokens"] == 4 * 2 * 24
    assert after["kl"] < before["kl"] and after["total"] < before["total"]
    assert all(p.grad is None for p in teacher.parameters())
    # The tied embedding/head stays the teacher's (frozen by default).
    assert torch.equal(trainer.student.get_input_embeddings().weight, teacher.get_input_embeddings().weight)


# ----- the job ----------------------------------------------------------------------------------
class _StopAfter(ProgressReporter):
    """Asks the job to stop after ``n`` steps, as the SIGTERM handler would."""

    def __init__(self, n: int):
        super().__init__(io.StringIO())
        self.n = n

    def step(self, step, *args, **kwargs):
        super().step(step, *args, **kwargs)
        if step >= self.n:
            self.stop_requested = True


def _events(reporter) -> list[dict]:
    return [json.loads(line) for line in reporter.stream.getvalue().splitlines()]


def test_prune_and_distill_job_cancels_resumes_and_records_how_the_student_was_made(
        smollm2_gguf, base_cache_root, peps_dir, tmp_path):
    from training.evaluate import gguf_perplexity

    out = tmp_path / "run"
    job = {"kind": "distill", "teacher_gguf": str(smollm2_gguf), "cache_root": str(base_cache_root),
           "output_dir": str(out), "dataset": {"type": "text_files", "paths": [str(peps_dir / "pep-0604.rst")]},
           "prune": {"strategy": "every_other", "keep_layers": 5},
           "settings": {"max_steps": 3, "seq_len": 16, "batch_size": 2, "eval_blocks": 1, "checkpoint_every": 100}}
    stopper = _StopAfter(1)
    with pytest.raises(JobCancelled):
        run_job(dict(job), stopper)
    assert (out / "checkpoints" / "latest").read_text() == "step-0000001"
    assert json.loads((out / "prune.json").read_text())["layer_map"] == [0, 7, 14, 22, 29]
    resumed = ProgressReporter(io.StringIO())
    result = run_job({**job, "resume": True}, resumed)
    events = _events(resumed)
    assert any(e["event"] == "resumed" and e["step"] == 1 for e in events)
    assert [e["step"] for e in events if e["event"] == "step"] == [2, 3]
    assert result["steps"] == 3 and result["mode"] == "logits"
    record = json.loads((out / "distill.json").read_text())
    assert record["teacher"]["gguf"] == str(smollm2_gguf)
    assert record["prune"]["layer_map"] == [0, 7, 14, 22, 29]
    assert record["data"]["documents"] == 1 and record["tokens"] == 3 * 2 * 16
    assert len(record["loss_curve"]) == 3 and {"lm", "kl", "cos"} <= set(record["loss_curve"][0])
    assert (out / "student" / "config.json").is_file() and (out / "student" / "distill.json").is_file()
    assert json.loads((out / "student" / "config.json").read_text())["num_hidden_layers"] == 5
    assert (out / "student.gguf.json").is_file()
    ppl = gguf_perplexity(out / "student.gguf", ["def f(x: int | str) -> None: ..."], ctx=64)
    assert math.isfinite(ppl) and ppl > 1


# ----- sequence-level distillation ----------------------------------------------------------------
def test_sequence_level_data_is_teacher_written_text_in_the_students_tokens(
        gemma3_gguf, smollm2_gguf, smollm2_base, peps_dir, tmp_path):
    from training.distill.job import sequence_data

    _, tokenizer = smollm2_base
    job = {"teacher_gguf": str(gemma3_gguf), "output_dir": str(tmp_path),
           "dataset": {"type": "text_files", "paths": [str(peps_dir / "pep-0604.rst")]}}
    config = DistillConfig(mode="sequence", seq_len=16, max_prompts=2, prompt_tokens=12, generate_tokens=12)
    reporter = ProgressReporter(io.StringIO())
    data = sequence_data(job, config, tokenizer, tmp_path, reporter)
    written = [json.loads(line) for line in (tmp_path / "teacher_texts.jsonl").read_text().splitlines()]
    assert len(written) == 2
    assert all(w["text"].startswith(w["prompt"]) and len(w["text"]) > len(w["prompt"]) for w in written)
    assert len(data.train_ids) >= 1 and data.train_ids.shape[1] == 16
    # Held-out blocks are still the user's own text, not the teacher's.
    source = (peps_dir / "pep-0604.rst").read_text(encoding="utf-8")
    assert data.eval_texts and all(t.strip()[:200] in source for t in data.eval_texts)
    assert [e["done"] for e in _events(reporter) if e["event"] == "generate"] == [1, 2]
    # A second run reuses the texts instead of generating again.
    again = ProgressReporter(io.StringIO())
    sequence_data(job, config, tokenizer, tmp_path, again)
    assert not [e for e in _events(again) if e["event"] == "generate"]


# ----- refusals before anything runs --------------------------------------------------------------
def _job(teacher, student=None, **extra):
    job = {"kind": "distill", "teacher_gguf": str(teacher), "output_dir": "/nonexistent/out",
           "dataset": {"type": "text_files", "paths": [str(PEPS / "pep-0604.rst")]}}
    if student:
        job["student_gguf"] = str(student)
    return {**job, **extra}


def test_no_data_is_refused(smollm2_gguf):
    with pytest.raises(DatasetError, match="No documents"):
        preflight(_job(smollm2_gguf, dataset={"type": "text_files", "paths": []}, prune={}), DistillConfig())
    with pytest.raises(DatasetError, match="no training data"):
        preflight(_job(smollm2_gguf, dataset=None, prune={}), DistillConfig())


def test_a_student_larger_than_its_teacher_is_refused(smollm2_gguf, gemma3_gguf):
    with pytest.raises(DistillError, match="not smaller than its teacher"):
        preflight(_job(smollm2_gguf, gemma3_gguf), DistillConfig())
    with pytest.raises(DistillError, match="more layers than its teacher"):
        preflight(_job(smollm2_gguf, prune={"keep_layers": 40, "strategy": "every_other"}), DistillConfig())


def test_logit_distillation_across_tokenizers_is_refused_and_sequence_level_suggested(smollm2_gguf, gemma3_gguf):
    with pytest.raises(DistillError, match="sequence-level distillation"):
        preflight(_job(gemma3_gguf, smollm2_gguf), DistillConfig(mode="logits"))
    assert preflight(_job(gemma3_gguf, smollm2_gguf), DistillConfig())["mode"] == "sequence"


def test_a_teacher_too_large_for_memory_is_refused(smollm2_gguf):
    from training.distill.job import gguf_shape

    shape = gguf_shape(smollm2_gguf)
    assert shape["vocab"] == 49152 and shape["layers"] == 30
    with pytest.raises(ResourceError, match="too large for this machine's memory"):
        check_memory(shape, shape["params"] // 2, DistillConfig(), available=512 << 20)
    assert check_memory(shape, shape["params"] // 2, DistillConfig(), available=64 << 30)["memory_bytes"] > 0


def test_a_missing_teacher_is_refused(tmp_path):
    with pytest.raises(DistillError, match="does not exist"):
        preflight(_job(tmp_path / "none.gguf", prune={}), DistillConfig())
