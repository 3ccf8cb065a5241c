"""The "distill" job kind: ``run_job(job, reporter) -> result`` for ``python -m training.run``,
and ``preflight(job)`` for ``python -m training.run --check``.

Runs in the training process, main thread, or in the short ``--check`` process the app starts
before it keeps a job folder (importing this module does not import torch).

Job file keys:
  kind: "distill"
  teacher_gguf: the installed GGUF that teaches (any model in the library, a fine-tuned one too)
  student_gguf: an installed, smaller GGUF to teach -- or leave it out and give
  prune: {PruneConfig fields}: the student is cut out of the teacher (see training.prune)
  cache_root: folder of the dequantized base cache (<data>/training/base-cache)
  output_dir: where job.json, checkpoints/, student/, student.gguf, distill.json go
  dataset: see training.datasets (the user's documents)
  preset: quick | balanced | thorough; settings: {DistillConfig field: value} on top
  export_gguf: true (default) -> student.gguf (f16) next to the HF folder
  quantize: optional llama.cpp type ("Q8_0", "Q4_K_M", ...) -> student.<type>.gguf as well
  resume: set by ``training.run --resume``
  held_out_path, text_copies: as for the "lora" kind (training.lora.job)

Everything the user can get wrong (no data, a teacher too large for this machine's memory, a
student larger than its teacher, logit distillation between different tokenizers) is refused
with one clear message before any model is loaded. ``distill.json`` next to the artefacts
records how they were made: teacher, student, data, losses, steps, tokens, pruning choices.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

from engine.atomic import write_json_atomic
from engine.job_files import write_job_file
from training import datasets as ds
from training.base_model import load_base
from training.distill.config import DistillConfig, config_from_job
from training.progress import JobCancelled, ProgressReporter
from training.resources import PROCESS_OVERHEAD, ResourceError
from training.student import (
    DistillError,
    architecture,
    check_student,
    cut_student,
    export_student,
    gguf_shape,
    load_installed_student,
    save_student,
)

#: Bytes of training state per student parameter: fp32 weight, gradient, AdamW's two moments.
TRAIN_BYTES_PER_PARAM = 16
#: Bytes per teacher parameter: the fp32 copy the teacher runs in.
TEACHER_BYTES_PER_PARAM = 4


# ----- checks made before anything is loaded --------------------------------------------------
def check_dataset_spec(spec: dict | None) -> None:
    """Fail early, with the reason, when the dataset names no text."""
    if not spec:
        raise ds.DatasetError("The job names no training data. Choose documents to distill on.")
    kind = spec.get("type")
    if kind == "text_files":
        paths = [Path(p) for p in spec.get("paths") or []]
        if not paths:
            raise ds.DatasetError("No documents were chosen to distill on. Add documents first.")
        for p in paths:
            if not p.is_file():
                raise ds.DatasetError(f"{p} does not exist or is not a file.")
        if sum(p.stat().st_size for p in paths) == 0:
            raise ds.DatasetError("The chosen documents are empty; there is no text to distill on.")
    elif kind in ("documents", "translation_memory"):
        path = Path(spec.get("path") or "")
        if not path.is_file() or path.stat().st_size == 0:
            raise ds.DatasetError(f"The training data {path} does not exist or is empty.")
    else:
        raise ds.DatasetError(f"Unknown dataset type {kind!r} (documents, text_files, translation_memory).")


def check_memory(teacher_shape: dict, student_params: int, config: DistillConfig, available: int | None = None) -> dict:
    """Raise :class:`ResourceError` when teacher + student training will not fit in memory."""
    import psutil

    available = psutil.virtual_memory().available if available is None else available
    teacher = teacher_shape["params"] * TEACHER_BYTES_PER_PARAM
    student = student_params * TRAIN_BYTES_PER_PARAM
    tokens = config.batch_size * config.seq_len
    # Activations kept for backward (student) and the logits of both models at fp32, with the
    # softmax copies the divergence makes.
    vocab = teacher_shape.get("vocab", 50_000)
    activations = tokens * teacher_shape["layers"] * (12 * teacher_shape["hidden"] + 3 * teacher_shape["ffn"]) * 4
    logits = tokens * vocab * 4 * 6
    need = teacher + student + activations + logits + PROCESS_OVERHEAD
    if need > available:
        raise ResourceError(
            f"The teacher is too large for this machine's memory: distilling it needs about {need / 2**30:.1f} GiB "
            f"(teacher {teacher / 2**30:.1f} GiB at fp32, student training state {student / 2**30:.1f} GiB), "
            f"{available / 2**30:.1f} GiB is free. Choose a smaller teacher, close other programs, or lower "
            f"batch_size/seq_len.")
    return {"memory_bytes": int(need), "available_bytes": int(available)}


def preflight(job: dict, config: DistillConfig | None = None) -> dict:
    """Every check that needs no model loaded: the settings, the data (and an estimate of its
    tokens, :func:`training.datasets.preflight`), the teacher and student, memory. Run by
    ``training.run --check`` for the app before a job folder is kept, and by :func:`run_job`
    before the work starts. Returns what it learnt (mode, sizes)."""
    job = _with_prune_kind(job)
    config = config or config_from_job(job)
    teacher_gguf = Path(job.get("teacher_gguf") or "")
    if not teacher_gguf.is_file():
        raise DistillError(f"The teacher model {teacher_gguf} does not exist. Choose an installed model.")
    check_dataset_spec(job.get("dataset"))
    ds.preflight(job.get("dataset"), config.seq_len)
    arch = architecture(teacher_gguf)
    teacher = gguf_shape(teacher_gguf)
    info = {"teacher_architecture": arch, "teacher_params": teacher["params"]}
    mode, student_params, student_info = check_student(job, config, teacher_gguf, arch, teacher)
    info.update(student_info)
    info.update(mode=mode, memory=check_memory(teacher, student_params, config))
    return info


# ----- sequence-level data ---------------------------------------------------------------------
def teacher_texts(job: dict, config: DistillConfig, prompts: list[str], out_dir: Path,
                  reporter: ProgressReporter) -> list[str]:
    """The teacher's continuation of each prompt (prompt included), cached in
    ``teacher_texts.jsonl`` so that a resumed job does not generate them again. The prompts are
    the user's text, so ``training.run`` shreds the cache when the job can no longer resume."""
    cache = out_dir / "teacher_texts.jsonl"
    done: list[str] = []
    if cache.is_file():
        done = [json.loads(line)["text"] for line in cache.read_text(encoding="utf-8").splitlines() if line.strip()]
    if len(done) >= len(prompts):
        return done[: len(prompts)]
    teacher_gguf = Path(job["teacher_gguf"])
    with open(cache, "a", encoding="utf-8") as handle:
        generate = _llama_cpp_generator(teacher_gguf, config) if config.generator == "llama_cpp" else \
            _torch_generator(job, config)
        try:
            for i in range(len(done), len(prompts)):
                if reporter.stop_requested:
                    raise JobCancelled(0)
                text = prompts[i] + generate(prompts[i], config.seed + i)
                handle.write(json.dumps({"prompt": prompts[i], "text": text}, ensure_ascii=False) + "\n")
                handle.flush()
                os.fsync(handle.fileno())
                done.append(text)
                reporter.emit("generate", done=i + 1, total=len(prompts))
        finally:
            close = getattr(generate, "close", None)
            if close:
                close()
    return done


def _llama_cpp_generator(teacher_gguf: Path, config: DistillConfig):
    from engine.llama_runtime import LoadedModel
    from engine.settings import EngineSettings, SamplingParams

    model = LoadedModel(str(teacher_gguf), EngineSettings(n_ctx=max(512, 4 * (config.prompt_tokens + config.generate_tokens))))

    def generate(prompt: str, seed: int) -> str:
        model.clear_cache()
        tokens = model.tokenize(prompt, add_special=True)
        result = model.generate(tokens, SamplingParams(temperature=config.gen_temperature,
                                                       max_tokens=config.generate_tokens, seed=seed))
        return result.text

    generate.close = model.close
    return generate


def _torch_generator(job: dict, config: DistillConfig):
    import torch

    teacher, tokenizer = load_base(Path(job["teacher_gguf"]), _cache_root(job))
    teacher.eval()

    @torch.no_grad()
    def generate(prompt: str, seed: int) -> str:
        torch.manual_seed(seed)
        ids = tokenizer(prompt, return_tensors="pt", add_special_tokens=True)["input_ids"]
        out = teacher.generate(ids, max_new_tokens=config.generate_tokens, do_sample=True,
                               temperature=config.gen_temperature, top_p=0.95,
                               pad_token_id=tokenizer.eos_token_id)
        return tokenizer.decode(out[0, ids.size(1):], skip_special_tokens=True)

    return generate


def sequence_data(job: dict, config: DistillConfig, student_tokenizer, out_dir: Path,
                  reporter: ProgressReporter) -> ds.PackedData:
    """Training blocks of teacher-written text; held-out blocks stay the user's real documents."""
    import numpy as np

    real = ds.build(job["dataset"], student_tokenizer, config.seq_len, config.eval_fraction, config.seed)
    picks = np.linspace(0, len(real.train_ids) - 1, min(config.max_prompts, len(real.train_ids))).astype(int)
    # Prompts are cut from training blocks only, never from held-out text.
    prompts = [student_tokenizer.decode(real.train_ids[i][: config.prompt_tokens], skip_special_tokens=True)
               for i in picks]
    reporter.message(f"The teacher is writing {len(prompts)} texts for the student...")
    texts = teacher_texts(job, config, prompts, out_dir, reporter)
    written = ds.pack_documents([ds.Document(f"teacher-{i}", t) for i, t in enumerate(texts)], student_tokenizer,
                                config.seq_len, eval_fraction=0.0, seed=config.seed, min_train_blocks=1)
    stats = {**real.stats, "teacher_texts": len(texts), "train_blocks": int(len(written.train_ids)),
             "train_source": "teacher-written text (sequence-level distillation)"}
    return ds.PackedData(config.seq_len, written.train_ids, written.train_labels, real.eval_ids, real.eval_labels,
                         real.eval_texts, stats)


# ----- the job ---------------------------------------------------------------------------------
def _cache_root(job: dict) -> Path:
    return Path(job.get("cache_root") or Path(job["output_dir"]).parent / "base-cache")


def _with_prune_kind(job: dict) -> dict:
    """A "prune" job runs here as the distillation that cuts its student (see training.prune.job)."""
    if job.get("kind") == "prune":
        from training.prune.job import as_distill_job

        return as_distill_job(job)
    return job


def run_job(job: dict, reporter: ProgressReporter) -> dict:
    job = _with_prune_kind(job)
    config = config_from_job(job)
    info = preflight(job, config)
    out_dir = Path(job["output_dir"])
    out_dir.mkdir(parents=True, exist_ok=True)
    resuming = bool(job.get("resume"))
    write_job_file(out_dir, {**job, "resolved_settings": config.to_dict(), **info})
    cache_root = _cache_root(job)
    teacher_gguf = Path(job["teacher_gguf"])

    teacher = None
    if info["mode"] == "logits":
        # Sequence-level distillation never needs the teacher in torch: it writes through llama.cpp
        # (or loads itself for the torch generator).
        reporter.message("Preparing the teacher (dequantized once, then cached)...")
        teacher, tokenizer = load_base(teacher_gguf, cache_root)
    prune_record = None
    layer_map = None
    if job.get("student_gguf"):
        student, student_tokenizer = load_installed_student(job, teacher, cache_root)
        if teacher is None:
            tokenizer = student_tokenizer
    else:
        student_tokenizer = tokenizer
        student = None  # cut below, once the data is ready for calibration

    reporter.message("Preparing the training data...")
    if info["mode"] == "sequence":
        data = sequence_data(job, config, student_tokenizer, out_dir, reporter)
        teacher_for_logits = None
    else:
        data = ds.build(job["dataset"], tokenizer, config.seq_len, config.eval_fraction, config.seed)
        teacher_for_logits = teacher
    write_json_atomic(out_dir / "data.json", data.stats)
    if job.get("held_out_path"):
        ds.write_held_out(Path(job["held_out_path"]), data.eval_texts)

    if student is None:
        student, prune_record = cut_student(job, teacher, data.train_ids, out_dir, resuming, reporter)
        layer_map = prune_record["layer_map"]

    from training.distill.trainer import DistillTrainer

    trainer = DistillTrainer(student, teacher_for_logits, data, config, out_dir, reporter, layer_map)
    try:
        checkpoint = trainer.latest_checkpoint() if resuming else None
        before_file = out_dir / "eval_before.json"
        if checkpoint is not None:
            trainer.load_checkpoint(checkpoint)
            before = json.loads(before_file.read_text(encoding="utf-8")) if before_file.is_file() else {}
            reporter.emit("resumed", step=trainer.step, path=str(checkpoint))
        else:
            before = {"student_eval_loss": trainer.evaluate(),
                      "teacher_eval_loss": trainer.evaluate(teacher_for_logits) if teacher_for_logits is not None else None}
            write_json_atomic(before_file, before)
        reporter.emit("start", total_steps=trainer.total_steps, step=trainer.step, device=str(trainer.device),
                      mode=info["mode"], train_blocks=int(len(data.train_ids)), seq_len=config.seq_len,
                      eval_loss=before.get("student_eval_loss"), teacher_eval_loss=before.get("teacher_eval_loss"))
        stats = trainer.train()
        after = trainer.evaluate()
    finally:
        trainer.close()
    reporter.emit("eval", step=trainer.step, eval_loss=after, perplexity=_exp(after))

    result = {"output_dir": str(out_dir), "mode": info["mode"], **stats,
              "teacher": {"gguf": str(teacher_gguf), "architecture": info["teacher_architecture"],
                          "params": info["teacher_params"]},
              "student_source": str(job.get("student_gguf") or "pruned from the teacher"),
              "prune": prune_record, "data": data.stats, "dataset": job["dataset"],
              "settings": config.to_dict(),
              "eval_loss_before": before.get("student_eval_loss"), "eval_loss_after": after,
              "teacher_eval_loss": before.get("teacher_eval_loss"),
              "perplexity_before": _exp(before.get("student_eval_loss")), "perplexity_after": _exp(after),
              "teacher_perplexity": _exp(before.get("teacher_eval_loss")),
              "held_out": job.get("held_out_path"), "student_dir": None, "student_gguf": None}
    result["student_dir"] = str(save_student(trainer.student, student_tokenizer, out_dir / "student", result))
    if job.get("export_gguf", True):
        reporter.message("Writing the student for llama.cpp (GGUF)...")
        source = Path(job["student_gguf"]) if job.get("student_gguf") else teacher_gguf
        gguf_path = export_student(trainer.student, source, out_dir / "student.gguf", layer_map)
        result["student_gguf"] = str(gguf_path)
        write_json_atomic(out_dir / "student.gguf.json", result)
        if job.get("quantize"):
            from training.quantize import quantize_gguf

            qtype = str(job["quantize"])
            quantized = quantize_gguf(gguf_path, out_dir / f"student.{qtype}.gguf", qtype)
            result["student_gguf_quantized"] = str(quantized)
            write_json_atomic(out_dir / f"student.{qtype}.gguf.json", result)
    write_json_atomic(out_dir / "distill.json", result)
    return result


def _exp(loss: float | None) -> float | None:
    return math.exp(loss) if loss is not None and loss < 50 else None
