"""``python -m training.run`` as a process: progress lines, outputs, kill -9 then --resume,
SIGTERM saves and exits, and clear errors before a job starts."""

from __future__ import annotations

import json
import signal

from tests.training import jobs


def _read_until(proc, predicate) -> list[dict]:
    seen = []
    for line in proc.stdout:
        event = json.loads(line)
        seen.append(event)
        if predicate(event):
            return seen
    raise AssertionError(f"the job ended before the awaited event; stderr:\n{proc.stderr.read()[-3000:]}")


def _no_temp_files(folder):
    return [p for p in folder.rglob("*") if p.name.startswith(".")]


def test_job_reports_progress_and_writes_its_outputs(tmp_path, smollm2_gguf, base_cache_root):
    job = jobs.lora_job(tmp_path, smollm2_gguf, base_cache_root, max_steps=3)
    spec = json.loads(job.read_text())
    spec["export_gguf"] = True  # the llama.cpp adapter through training.export.lora_gguf
    job.write_text(json.dumps(spec))
    code, events, err = jobs.run(job)
    assert code == 0, err[-3000:]
    kinds = [e["event"] for e in events]
    assert kinds[-1] == "done" and "start" in kinds and "eval" in kinds
    steps = [e for e in events if e["event"] == "step"]
    assert [s["step"] for s in steps] == [1, 2, 3]
    for s in steps:
        assert s["total_steps"] == 3 and isinstance(s["loss"], float) and s["tokens_per_s"] > 0 and s["eta_s"] >= 0
    result = events[-1]["result"]
    out = tmp_path / "run"
    assert result["steps"] == 3 and result["adapter_dir"] == str(out / "adapter")
    assert (out / "adapter" / "adapter_model.safetensors").is_file()
    saved = json.loads((out / "job.json").read_text())
    assert saved["settings"]["max_steps"] == 3 and saved["resolved_settings"]["rank"] == 4
    assert json.loads((out / "adapter" / "training_config.json").read_text())["kind"] == "lora"
    assert json.loads((out / "result.json").read_text())["steps"] == 3
    assert result["held_out"] is None and not (out / "held_out.jsonl").exists()  # the held-out text stays unwritten
    assert result["adapter_gguf"] == str(out / "adapter.gguf") and (out / "adapter.gguf").stat().st_size > 0
    assert result["eval_loss_after"] < result["eval_loss_before"]
    assert not _no_temp_files(out)


def test_kill_9_mid_run_then_resume_finishes(tmp_path, smollm2_gguf, base_cache_root):
    job = jobs.lora_job(tmp_path, smollm2_gguf, base_cache_root, max_steps=6, checkpoint_every=2)
    proc = jobs.start(job)
    try:
        _read_until(proc, lambda e: e["event"] == "step" and e["step"] == 3)  # checkpoint 2 is written
    finally:
        proc.kill()
        proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    code, events, err = jobs.run(job, "--resume")
    assert code == 0, err[-3000:]
    resumed = [e for e in events if e["event"] == "resumed"]
    assert resumed and resumed[0]["step"] >= 2
    steps = [e["step"] for e in events if e["event"] == "step"]
    assert steps == list(range(resumed[0]["step"] + 1, 7))
    assert events[-1]["event"] == "done" and events[-1]["result"]["steps"] == 6
    assert events[-1]["result"]["eval_loss_before"] is not None  # kept from the first start
    assert not _no_temp_files(tmp_path / "run")


def test_sigterm_saves_and_exits_cleanly_then_resumes(tmp_path, smollm2_gguf, base_cache_root):
    job = jobs.lora_job(tmp_path, smollm2_gguf, base_cache_root, max_steps=5, checkpoint_every=1000)
    proc = jobs.start(job)
    _read_until(proc, lambda e: e["event"] == "step" and e["step"] == 1)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate()
    assert proc.returncode == 3, err[-3000:]
    tail = jobs.parse(out)
    assert tail[-1]["event"] == "cancelled" and tail[-1]["step"] >= 1
    checkpoint = [e for e in tail if e["event"] == "checkpoint"]
    assert checkpoint and checkpoint[-1]["step"] == tail[-1]["step"]
    assert not (tmp_path / "run" / "adapter").exists(), "a cancelled job must not leave a finished adapter"
    code, events, err = jobs.run(job, "--resume")
    assert code == 0, err[-3000:]
    assert events[-1]["result"]["steps"] == 5


def test_sigterm_while_preparing_stops_at_once(tmp_path, smollm2_gguf, base_cache_root):
    """Stopped before its first checkpoint, a job cannot resume: the copies of the user's text made
    for it (``text_copies``) are shredded, the user's own files are not."""
    job = jobs.lora_job(tmp_path, smollm2_gguf, base_cache_root)
    copy = tmp_path / "copy-for-the-job.jsonl"
    copy.write_text('{"title": "notes", "text": "private"}\n', encoding="utf-8")
    job.write_text(json.dumps({**json.loads(job.read_text()), "text_copies": [str(copy)]}))
    proc = jobs.start(job)
    _read_until(proc, lambda e: e["event"] == "message")
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate()
    assert proc.returncode == 3, err[-3000:]
    assert jobs.parse(out)[-1]["event"] == "cancelled"
    assert not copy.exists() and (tmp_path / "notes.txt").is_file()


def test_bad_input_is_one_clear_error(tmp_path, smollm2_gguf, base_cache_root):
    job = jobs.lora_job(tmp_path, smollm2_gguf, base_cache_root)
    (tmp_path / "notes.txt").write_text("Only a line.", encoding="utf-8")
    code, events, _ = jobs.run(job)
    assert code == 2 and events[-1]["event"] == "error"
    assert "Too little text" in events[-1]["message"]

    (tmp_path / "bad.json").write_text("{not json", encoding="utf-8")
    code, events, _ = jobs.run(tmp_path / "bad.json")
    assert code == 2 and "cannot be read" in events[-1]["message"]

    spec = json.loads(job.read_text())
    spec["base_gguf"] = str(tmp_path / "missing.gguf")
    job.write_text(json.dumps(spec))
    code, events, _ = jobs.run(job)
    assert code == 2 and "does not exist" in events[-1]["message"]


def test_a_translation_memory_run_shows_translations_before_and_after(tmp_path, smollm2_gguf, base_cache_root):
    """The result card of a translation-memory run: held-out source sentences translated by the
    base and by base + adapter (one line each, stopped at the line break), not a continuation
    of the raw training text."""
    from training.lora.job import SAMPLE_PAIRS, translation_sample_prompts

    memory = tmp_path / "memory.tsv"
    pairs = [(f"The train to the sea leaves at {i} o'clock.", f"Le train pour la mer part à {i} heures.")
             for i in range(1, 200)]
    memory.write_text("eng\tfra\n" + "".join(f"{s}\t{t}\n" for s, t in pairs), encoding="utf-8")
    job = json.loads(jobs.lora_job(tmp_path, smollm2_gguf, base_cache_root, max_steps=1).read_text())
    job.update(export_gguf=True, dataset={"type": "translation_memory", "path": str(memory)},
               held_out_path=str(tmp_path / "held-out.jsonl"))
    job["settings"].update(seq_len=64, eval_fraction=0.05)
    (tmp_path / "job.json").write_text(json.dumps(job), encoding="utf-8")
    code, events, err = jobs.run(tmp_path / "job.json")
    assert code == 0, err[-3000:]
    result = events[-1]["result"]
    held_out = [json.loads(line)["text"] for line in (tmp_path / "held-out.jsonl").read_text().splitlines()]
    prompts = translation_sample_prompts(held_out)
    assert len(prompts) == SAMPLE_PAIRS and all(p.startswith("English: The train") and p.endswith("\nFrench:")
                                                for p in prompts)
    assert result["sample_prompt"] == prompts[0]
    for sample in (result["sample_before"], result["sample_after"]):
        shown = sample.split("\n\n")
        assert len(shown) == SAMPLE_PAIRS
        for prompt, text in zip(prompts, shown):
            assert text.startswith(prompt + " ") and text.count("\n") == 1  # the source line, one translation line
    # The samples reach the window in the done line; the result file on the disk keeps figures only.
    on_disk = json.loads((tmp_path / "run" / "result.json").read_text())
    assert "sample_before" not in on_disk and on_disk["gguf_perplexity_after"] == result["gguf_perplexity_after"]


def _check(job: dict) -> tuple[int, list[str], str]:
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "training.run", "--check"], input=json.dumps(job), cwd=jobs.ROOT,
                          env=jobs.env(), capture_output=True, text=True)
    return proc.returncode, proc.stdout.splitlines(), proc.stderr


def test_the_check_before_a_job_refuses_a_bad_one_and_accepts_a_good_one(tmp_path, smollm2_gguf):
    """``--check`` (what the app runs before it keeps a job folder): the job on stdin, one JSON
    line back, with the message the job itself would give; no model loaded, no folder made."""
    memory = tmp_path / "memory.tsv"
    memory.write_text("eng\tfra\n" + "".join(f"I see {i} birds.\tJe vois {i} oiseaux.\n" for i in range(200)),
                      encoding="utf-8")
    job = {"kind": "lora", "base_gguf": str(smollm2_gguf), "output_dir": str(tmp_path / "run"),
           "cache_root": str(tmp_path / "cache"), "preset": "quick",
           "dataset": {"type": "translation_memory", "path": str(memory), "source": None, "target": None}}
    code, lines, err = _check(job)
    assert code == 0 and len(lines) == 1, err[-3000:]
    reply = json.loads(lines[0])
    assert reply["ok"] and reply["info"]["architecture"] == "llama", reply
    assert (reply["info"]["source"], reply["info"]["target"]) == ("en", "fr")  # the file's direction
    assert not (tmp_path / "run").exists() and not (tmp_path / "cache").exists()

    for change, message in (({"preset": "fastest"}, "Unknown preset 'fastest'; choose quick, balanced, thorough."),
                            ({"settings": {"colour": 1}}, "Unknown LoRA settings: colour."),
                            ({"dataset": {**job["dataset"], "target": "de"}},
                             "memory.tsv holds en/fr pairs, not en->de."),
                            ({"base_gguf": str(tmp_path / "missing.gguf")}, "does not exist")):
        code, lines, err = _check({**job, **change})
        assert code == 2 and len(lines) == 1, err[-3000:]
        reply = json.loads(lines[0])
        assert not reply["ok"] and message in reply["message"], (change, reply)

    few = tmp_path / "few.tsv"
    few.write_text("eng\tfra\nhello\tbonjour\n", encoding="utf-8")
    code, lines, _ = _check({**job, "dataset": {"type": "translation_memory", "path": str(few)}})
    assert code == 2 and json.loads(lines[0]) == {"ok": False,
                                                  "message": "few.tsv has 1 usable pairs; at least 20 are needed."}
    code, lines, _ = _check({"kind": "nonsense"})
    assert code == 2 and "kind one of" in json.loads(lines[0])["message"]


def test_the_check_imports_no_torch():
    """The check answers in seconds because nothing it imports pulls in torch."""
    import subprocess
    import sys

    code = ("import sys, training.run, training.lora.job, training.distill.job; "
            "bad = [m for m in ('torch', 'transformers', 'peft') if m in sys.modules]; "
            "print(bad); raise SystemExit(1 if bad else 0)")
    result = subprocess.run([sys.executable, "-c", code], cwd=jobs.ROOT, env=jobs.env(), capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
