"""The same job under ``torchrun --nproc_per_node 2`` (PyTorch's DistributedDataParallel over
gloo on the CPU): both ranks train, rank 0 alone reports and writes, the adapter is whole."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.training import jobs


def test_lora_job_runs_under_torchrun_with_gloo(tmp_path, smollm2_gguf, base_cache_root):
    job = jobs.lora_job(tmp_path, smollm2_gguf, base_cache_root, max_steps=2, batch_size=1, device="cpu")
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         "-m", "training.run", str(job)],
        cwd=jobs.ROOT, env=jobs.env(), capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stderr[-4000:]
    events = jobs.parse(proc.stdout)  # only rank 0 writes: every line is one event, no duplicates
    steps = [e["step"] for e in events if e["event"] == "step"]
    assert steps == [1, 2]
    start = next(e for e in events if e["event"] == "start")
    assert start["world_size"] == 2
    result = events[-1]["result"]
    assert events[-1]["event"] == "done" and result["world_size"] == 2
    # Each step saw 2 processes x 1 block x 32 tokens.
    assert result["tokens"] == 2 * 2 * 32
    out = tmp_path / "run"
    assert (out / "adapter" / "adapter_model.safetensors").is_file()
    assert json.loads((out / "result.json").read_text())["world_size"] == 2
