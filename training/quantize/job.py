"""The "quantize_lab" job kind: ``run_job(job, reporter) -> result`` for ``python -m training.run``.

Runs in the training process, main thread. Torch-free unless ``hf_model_dir`` asks for an
F16 reference written from a training framework's model (training.export.full_gguf).

Job file keys:
  kind: "quantize_lab"
  model_gguf: the GGUF to quantize (any model in the library: F16/BF16 imports, the
              default pack's Q4 files, models the project trained)
  hf_model_dir: optional HF folder holding the same model's full-precision weights (e.g. a
              merged fine-tune); then the F16 reference is written from it with model_gguf
              as the metadata/tokenizer template
  output_dir: where job.json, <name>.<TYPE>.gguf, results.json and results.csv go
  dataset: held-out text, as in training.datasets: {"type": "text_files", "paths": [...]}
           or {"type": "documents", "path": "documents.jsonl"}; or eval_texts: [str, ...]
  settings: {LabConfig field: value} (types, ctx, max_eval_tokens, speed_tokens, ...)
  resume: set by ``training.run --resume``: files already written are re-used

The text must be held out from the model: if the model was fine-tuned on some documents,
measure it on others. Cancelling (SIGTERM) stops at the end of the step in progress (one
file quantized or measured); nothing half-written is ever left, so a resumed job picks up the
finished files.
"""

from __future__ import annotations

import time
from pathlib import Path

from engine.job_files import write_job_file
from training import datasets as ds
from training.progress import JobCancelled, ProgressReporter
from training.quantize.config import LabConfig
from training.quantize.lab import LabCancelled, check_inputs, run_lab


def _texts(job: dict) -> list[str]:
    if job.get("eval_texts"):
        return [str(t) for t in job["eval_texts"]]
    spec = job.get("dataset")
    if not spec:
        raise ds.DatasetError("The quantization lab needs held-out text: choose documents to measure perplexity on.")
    kind = spec.get("type")
    if kind == "text_files":
        docs = ds.read_text_files(spec.get("paths") or [])
    elif kind == "documents":
        docs = ds.read_documents_jsonl(Path(spec.get("path") or ""))
    else:
        raise ds.DatasetError(f"Unknown dataset type {kind!r} for the quantization lab (text_files, documents).")
    texts = [d.text for d in docs if d.text.strip()]
    if not texts:
        raise ds.DatasetError("The chosen documents are empty; there is no text to measure perplexity on.")
    return texts


def run_job(job: dict, reporter: ProgressReporter) -> dict:
    model = job.get("model_gguf")
    if not model:
        raise ValueError("The job names no model to quantize (model_gguf).")
    if not job.get("output_dir"):
        raise ValueError("The job names no output folder (output_dir).")
    model, output_dir = Path(model), Path(job["output_dir"])
    config = LabConfig.from_dict(job.get("settings"))
    texts = _texts(job)
    check_inputs(model, texts, config, output_dir)  # every refusal before any file is written
    # The record of the run keeps the settings, not the text it was measured on (the user's).
    write_job_file(output_dir, {key: value for key, value in job.items() if key != "eval_texts"})

    f16_maker = None
    if job.get("hf_model_dir"):
        from training.export.full_gguf import write_full_gguf  # needs torch/safetensors: only here

        hf_dir = Path(job["hf_model_dir"])
        if not hf_dir.is_dir():
            raise ValueError(f"The model folder {hf_dir} does not exist.")
        f16_maker = lambda dst: write_full_gguf(hf_dir, model, dst, dtype="f16")  # noqa: E731

    reporter.emit("start", model=str(model), types=list(config.types), output_dir=str(output_dir))

    started = time.monotonic()

    def progress(stage: str, done: int, total: int) -> None:
        reporter.message(stage)
        # The same fields as a training step, so every job's progress reads alike (no loss here).
        elapsed = time.monotonic() - started
        eta = elapsed / done * (total - done) if done else 0.0
        reporter.emit("step", step=done, total_steps=total, stage=stage, loss=None, tokens_per_s=0.0,
                      eta_s=round(eta, 1))

    # The lab polls stop_requested between its steps; SIGTERM must only set it. Raised from the
    # signal handler instead, JobCancelled would land wherever the lab is (inside the model
    # file check, which words any exception as a damaged file) and read as a failure.
    reporter.defer_stop = True
    try:
        results = run_lab(model, texts, output_dir, config, progress=progress,
                          should_stop=lambda: reporter.stop_requested, f16_maker=f16_maker)
    except LabCancelled:
        raise JobCancelled(None) from None
    finally:
        reporter.defer_stop = False
    for line in results["table"].splitlines():
        reporter.message(line)
    return {
        "output_dir": str(output_dir),
        "results_json": str(output_dir / "results.json"),
        "results_csv": str(output_dir / "results.csv"),
        "reference_kind": results["reference_kind"],
        "notes": results["notes"],
        "rows": results["rows"],
    }
