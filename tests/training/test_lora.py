"""The LoRA trainer in-process: loss equals transformers' own, training lowers it, presets,
and a checkpoint restores the exact state (the next step gives the same loss as without a stop)."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import torch

from training import datasets as ds
from training.base_model import load_base
from training.lora import config as lora_config
from training.lora.config import LoraTrainConfig
from training.lora.trainer import LoraTrainer, attach_lora, causal_lm_loss, prepare_model
from training.progress import JobCancelled, ProgressReporter

TEXT = ("LoRA adapters learn a low-rank update of each weight matrix. The base model stays frozen, "
        "so only a few million parameters train, and the adapter file stays small. ") * 30


def small_config(**overrides) -> LoraTrainConfig:
    base = dict(rank=4, alpha=8, seq_len=32, batch_size=2, max_steps=4, learning_rate=1e-3, warmup_steps=0,
                eval_blocks=2, checkpoint_every=1000, eval_fraction=0.1,
                threads=1)  # one thread: on a busy machine two spin-waiting threads are far slower
    base.update(overrides)
    return LoraTrainConfig(**base)


@pytest.fixture(scope="module")
def packed(smollm2_base):
    _model, tokenizer = smollm2_base
    return ds.pack_documents([ds.Document("t", TEXT)], tokenizer, seq_len=32, eval_fraction=0.1)


def fresh(smollm2_gguf, base_cache_root):
    torch.set_num_threads(1)  # the test machine is shared; see small_config
    return load_base(smollm2_gguf, base_cache_root)


def test_fused_head_loss_and_gradient_equal_transformers(smollm2_gguf, base_cache_root, packed):
    model, _tok = fresh(smollm2_gguf, base_cache_root)
    peft_model = attach_lora(model, small_config())
    prepare_model(peft_model)
    ids = torch.from_numpy(packed.train_ids[:2])
    labels = torch.from_numpy(packed.train_ids[:2]).clone()
    # Masked prompt positions count the same way (they skip the head): the first slice of 8
    # is masked whole, the next one in part, and a masked run in the middle of the block.
    labels[:, :12] = -100
    labels[1, 20:23] = -100
    with torch.no_grad():
        ours = causal_lm_loss(peft_model, ids, labels, slice_len=8)
        theirs = peft_model(input_ids=ids, labels=labels).loss
    assert abs(float(ours) - float(theirs)) < 1e-4
    # The fused head gives the adapter the same gradient as transformers' own loss.
    def grads(loss):
        peft_model.zero_grad()
        loss.backward()
        return torch.cat([p.grad.flatten() for n, p in peft_model.named_parameters() if "lora_B" in n])

    ours_grad = grads(causal_lm_loss(peft_model, ids, labels, slice_len=8))
    theirs_grad = grads(peft_model(input_ids=ids, labels=labels).loss)
    assert float(ours_grad.abs().sum()) > 0
    torch.testing.assert_close(ours_grad, theirs_grad, rtol=1e-3, atol=1e-6)

def test_training_lowers_the_loss_and_reports_progress(smollm2_gguf, base_cache_root, packed, tmp_path):
    model, tokenizer = fresh(smollm2_gguf, base_cache_root)
    out = io.StringIO()
    trainer = LoraTrainer(model, tokenizer, packed, small_config(max_steps=6), tmp_path, ProgressReporter(out))
    before = trainer.evaluate()
    stats = trainer.train()
    after = trainer.evaluate()
    assert stats["steps"] == 6 and stats["tokens"] == 6 * 2 * 32
    assert after < before * 0.9, (before, after)
    steps = [json.loads(line) for line in out.getvalue().splitlines() if '"step"' in line]
    steps = [s for s in steps if s["event"] == "step"]
    assert [s["step"] for s in steps] == list(range(1, 7))
    assert all(s["total_steps"] == 6 and s["tokens_per_s"] > 0 and s["eta_s"] >= 0 for s in steps)
    assert steps[-1]["eta_s"] == 0
    # Only the adapter trains: the base weights are frozen.
    trainable = [n for n, p in trainer.peft_model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)


def test_checkpoint_restores_the_exact_training_state(smollm2_gguf, base_cache_root, packed, tmp_path):
    config = small_config(max_steps=4)
    model, tokenizer = fresh(smollm2_gguf, base_cache_root)
    straight = LoraTrainer(model, tokenizer, packed, config, tmp_path / "a", ProgressReporter(io.StringIO()))
    straight.train()

    class StopAfterTwo(ProgressReporter):
        def step(self, step, *args, **kwargs):
            super().step(step, *args, **kwargs)
            self.stop_requested = step == 2  # what the SIGTERM handler does, at a known step

    model, tokenizer = fresh(smollm2_gguf, base_cache_root)
    first = LoraTrainer(model, tokenizer, packed, config, tmp_path / "b", StopAfterTwo(io.StringIO()))
    with pytest.raises(JobCancelled):
        first.train()
    saved = first.latest_checkpoint()
    assert saved.name == "step-0000002" and (saved / "adapter" / "adapter_model.safetensors").is_file()
    assert not [p for p in saved.parent.iterdir() if p.name.startswith(".")], "temporary files left behind"

    model, tokenizer = fresh(smollm2_gguf, base_cache_root)
    resumed = LoraTrainer(model, tokenizer, packed, config, tmp_path / "b", ProgressReporter(io.StringIO()))
    resumed.load_checkpoint(resumed.latest_checkpoint())
    assert resumed.step == 2
    resumed.train()
    # Same data order, optimizer moments and schedule: the same losses as the run never stopped.
    np.testing.assert_allclose(resumed.losses, straight.losses, rtol=1e-4, atol=1e-5)


def test_presets_and_settings():
    assert set(lora_config.PRESETS) == {"quick", "balanced", "thorough"}
    quick, balanced, thorough = (lora_config.PRESETS[n] for n in ("quick", "balanced", "thorough"))
    assert quick.rank < balanced.rank < thorough.rank and thorough.epochs > balanced.epochs
    assert balanced.target_modules == "all-linear" and balanced.device == "auto"
    cfg = lora_config.config_from_job({"preset": "quick", "settings": {"max_steps": 3}})
    assert cfg.rank == quick.rank and cfg.max_steps == 3
    with pytest.raises(ValueError, match="Unknown LoRA settings: rnak"):
        lora_config.config_from_job({"settings": {"rnak": 3}})
    with pytest.raises(ValueError, match="Unknown preset 'fast'"):
        lora_config.config_from_job({"preset": "fast"})

