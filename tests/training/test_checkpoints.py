"""training/checkpoints.py: the schedule and the checkpoint folders the LoRA and distillation
trainers share (their resume tests run the whole loop; these pin the edge cases)."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch

from training.checkpoints import (
    KEEP_CHECKPOINTS,
    latest_checkpoint,
    publish_checkpoint,
    restore_rng,
    rng_state,
    warmup_cosine,
)


@pytest.fixture
def root(tmp_path):
    """A folder of its own (the suite's fixtures put a data folder in tmp_path)."""
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    return folder


def _write_state(folder):
    torch.save({"step": 1}, folder / "state.pt")


def _rates(total_steps, warmup_steps, kind="cosine"):
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    scheduler = warmup_cosine(optimizer, total_steps, warmup_steps, kind)
    rates = []
    for _ in range(total_steps):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return rates


def test_the_schedule_warms_up_then_decays_to_a_tenth():
    rates = _rates(total_steps=20, warmup_steps=4)
    assert rates[:5] == pytest.approx([0.2, 0.4, 0.6, 0.8, 1.0])
    assert all(a >= b for a, b in zip(rates[4:], rates[5:]))
    assert rates[-1] == pytest.approx(0.1 + 0.9 * 0.5 * (1 + np.cos(np.pi * 15 / 16)))
    assert _rates(total_steps=6, warmup_steps=2, kind="constant")[2:] == [1.0] * 4


def test_a_run_shorter_than_its_warm_up_still_reaches_the_full_rate():
    assert _rates(total_steps=3, warmup_steps=50)[-1] == pytest.approx(1.0)


def test_the_newest_checkpoints_are_kept_and_the_pointer_names_the_last(root):
    for step in (1, 2, 3, 4):
        final = publish_checkpoint(root, step, _write_state)
    assert final.name == "step-0000004"
    assert latest_checkpoint(root) == final
    assert sorted(p.name for p in root.iterdir() if p.is_dir()) == [
        f"step-{s:07d}" for s in range(5 - KEEP_CHECKPOINTS, 5)]


def test_a_failed_write_leaves_the_previous_checkpoint_latest_and_no_temp_folder(root):
    first = publish_checkpoint(root, 1, _write_state)

    def fail(folder):
        _write_state(folder)
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError):
        publish_checkpoint(root, 2, fail)
    assert latest_checkpoint(root) == first
    assert sorted(p.name for p in root.iterdir()) == ["latest", "step-0000001"]


def test_a_checkpoint_without_its_state_is_not_offered(root):
    assert latest_checkpoint(root) is None
    (root / "step-0000003").mkdir()
    (root / "latest").write_text("step-0000003")
    assert latest_checkpoint(root) is None


def test_a_distillation_checkpoint_from_before_the_shared_module_still_resumes(root):
    old = root / "step-0000002"
    old.mkdir()
    _write_state(old)
    (root / "latest.json").write_text(json.dumps({"checkpoint": "step-0000002", "step": 2}))
    assert latest_checkpoint(root) == old
    # The next checkpoint writes the new pointer and drops the old one.
    publish_checkpoint(root, 3, _write_state)
    assert not (root / "latest.json").exists()
    assert latest_checkpoint(root).name == "step-0000003"


def test_restoring_the_random_state_repeats_every_generator():
    saved = rng_state()
    first = (random.random(), np.random.rand(), torch.rand(1).item())
    restore_rng(saved)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == first
