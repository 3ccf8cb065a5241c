"""The same job under ``torchrun --nproc_per_node 2`` (PyTorch's DistributedDataParallel over
gloo on the CPU): both ranks train, rank 0 alone reports and writes, the adapter is whole;
SIGTERM to torchrun saves and the job resumes."""

from __future__ import annotations

import json
import signal
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


def test_sigterm_to_torchrun_saves_one_checkpoint_and_the_job_resumes_under_torchrun(tmp_path, smollm2_gguf,
                                                                                     base_cache_root):
    """SIGTERM to torchrun (what a scheduler or the app's Cancel sends): the agent passes it on
    to both ranks, they agree to stop at the same step (the stop flag is all-reduced), rank 0
    saves one checkpoint and reports "cancelled"; `--resume` under torchrun finishes the job."""
    job = jobs.lora_job(tmp_path, smollm2_gguf, base_cache_root, max_steps=6, batch_size=1, device="cpu",
                        checkpoint_every=1000)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "training.run", str(job)]
    proc = subprocess.Popen(command, cwd=jobs.ROOT, env=jobs.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        seen = []
        for line in proc.stdout:
            seen.append(json.loads(line))
            if seen[-1]["event"] == "step" and seen[-1]["step"] == 1:
                break
        assert seen and seen[-1]["event"] == "step", proc.stderr.read()[-4000:]
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode != 0  # torchrun reports the signal it was stopped by
    tail = jobs.parse(out)
    assert tail and tail[-1]["event"] == "cancelled", err[-4000:]
    stopped_at = tail[-1]["step"]
    checkpoints = [e for e in tail if e["event"] == "checkpoint"]
    assert len(checkpoints) == 1 and checkpoints[0]["step"] == stopped_at >= 1  # one writer: rank 0
    out_dir = tmp_path / "run"
    assert not (out_dir / "adapter").exists(), "a cancelled job must not leave a finished adapter"
    assert not [p for p in out_dir.rglob("*") if p.name.startswith(".")], "no half-written checkpoint"

    resumed = subprocess.run(command + ["--resume"], cwd=jobs.ROOT, env=jobs.env(), capture_output=True, text=True,
                             timeout=1800)
    assert resumed.returncode == 0, resumed.stderr[-4000:]
    events = jobs.parse(resumed.stdout)
    assert [e["step"] for e in events if e["event"] == "resumed"] == [stopped_at]
    assert [e["step"] for e in events if e["event"] == "step"] == list(range(stopped_at + 1, 7))
    assert events[-1]["event"] == "done" and events[-1]["result"]["steps"] == 6
    assert events[-1]["result"]["world_size"] == 2
    assert (out_dir / "adapter" / "adapter_model.safetensors").is_file()
