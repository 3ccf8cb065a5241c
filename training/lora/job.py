"""The "lora" job kind: ``run_job(job, reporter) -> result`` for ``python -m training.run``,
and ``preflight(job)`` for ``python -m training.run --check``.

Runs in the training process, main thread (every rank under torchrun), or in the short
``--check`` process the app starts before it keeps a job folder. Importing this module does not
import torch (the trainer is imported by :func:`run_job`), so that check takes a moment.

Job file keys:
  kind: "lora"
  base_gguf: path of the installed GGUF the adapter is for
  cache_root: folder of the dequantized base cache (<data>/training/base-cache)
  output_dir: where job.json, checkpoints/, adapter/, adapter.gguf, result.json go
  dataset: see training.datasets
  preset: quick | balanced | thorough; settings: {LoraTrainConfig field: value} on top
  resume: set by ``training.run --resume``
  export_gguf: true (default) -> adapter.gguf through training.export.lora_gguf when present
  held_out_path: optional file to keep the held-out texts in (JSON lines ``{"text"}``) for a
              caller that measures them itself (a benchmark on a public corpus); the app never
              sets it, so the user's held-out text is written nowhere
  text_copies: the files the app copied the user's text into for this job (see engine.job_files)

Output folder, when the job is done: ``job.json`` (the config that made everything in it),
``adapter/`` (peft), ``adapter.gguf`` (llama.cpp LoRA), ``result.json``. Finished artefacts are
written under temporary names and renamed, so a kill never leaves half of one. ``result.json``
holds figures only: the before/after samples (the start of a held-out document and the model's
continuations of it) travel in the ``done`` line to the window, never to the disk.
"""

from __future__ import annotations

import importlib
import json
import math
from pathlib import Path

from engine.atomic import atomic_dir, write_json_atomic
from engine.job_files import without_texts, write_job_file
from training import datasets as ds
from training.base_model import check_architecture, load_base
from training.lora.config import LoraTrainConfig, config_from_job
from training.progress import ProgressReporter
from training.resources import check_resources


def _export_gguf(adapter_dir: Path, base_gguf: Path, out_dir: Path, reporter: ProgressReporter) -> str | None:
    try:
        exporter = importlib.import_module("training.export.lora_gguf")
    except ModuleNotFoundError:
        reporter.message("The GGUF adapter exporter is not installed; only the peft adapter was written.")
        return None
    # The exporter writes atomically (training.export.common.atomic_output).
    return str(exporter.export_lora_adapter(adapter_dir, base_gguf, out_dir / "adapter.gguf"))


def _check_exportable(arch: str, base_gguf: Path) -> None:
    """Refuse before training what the GGUF adapter exporter could not write afterwards."""
    try:
        exporter = importlib.import_module("training.export.lora_gguf")
    except ModuleNotFoundError:
        return
    spec = getattr(exporter, "arch_spec", None)
    if spec is not None:
        spec(arch, f"The base model {base_gguf.name}")


def preflight(job: dict, config: LoraTrainConfig | None = None) -> dict:
    """Every check that needs no model loaded, in the order a user would fix them: the settings,
    the data (:func:`training.datasets.preflight`), the base model's architecture (and that its
    adapter can be written as GGUF), memory and disk. ``training.run --check`` runs it for the app
    before a job folder is kept, and :func:`run_job` again before the work starts (the machine may
    have changed in between). Returns what it learnt (architecture, the translation memory's
    direction, the estimate); raises an error whose message is for the user."""
    config = config or config_from_job(job)
    base_gguf = Path(job["base_gguf"])
    out_dir = Path(job["output_dir"])
    cache_root = Path(job.get("cache_root") or out_dir.parent / "base-cache")
    info = ds.preflight(job.get("dataset"), config.seq_len)
    info["architecture"] = arch = check_architecture(base_gguf)
    if job.get("export_gguf", True):
        _check_exportable(arch, base_gguf)
    info["resources"] = check_resources(base_gguf, cache_root, out_dir, config)
    return info


def run_job(job: dict, reporter: ProgressReporter) -> dict:
    import torch

    # The trainer imports torch: here, not at the top, so that --check stays light.
    from training.lora.trainer import dist_info

    dist = dist_info()
    if dist.active and not torch.distributed.is_initialized():
        backend = "nccl" if torch.cuda.is_available() and job.get("settings", {}).get("device", "auto") != "cpu" else "gloo"
        torch.distributed.init_process_group(backend)
    try:
        return _run(job, reporter, dist)
    finally:
        if dist.active and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


def _run(job: dict, reporter: ProgressReporter, dist) -> dict:
    from training.lora.trainer import LoraTrainer

    config = config_from_job(job)
    base_gguf = Path(job["base_gguf"])
    out_dir = Path(job["output_dir"])
    cache_root = Path(job.get("cache_root") or out_dir.parent / "base-cache")
    arch = preflight(job, config)["architecture"]
    out_dir.mkdir(parents=True, exist_ok=True)
    if dist.rank == 0:
        write_job_file(out_dir, {**job, "resolved_settings": config.to_dict(), "architecture": arch})

    reporter.message("Preparing the base model (dequantized once, then cached)...")
    model, tokenizer = load_base(base_gguf, cache_root)
    reporter.message("Preparing the training data...")
    data = ds.build(job["dataset"], tokenizer, config.seq_len, config.eval_fraction, config.seed)
    if dist.rank == 0:
        write_json_atomic(out_dir / "data.json", data.stats)
        if job.get("held_out_path"):
            ds.write_held_out(Path(job["held_out_path"]), data.eval_texts)

    trainer = LoraTrainer(model, tokenizer, data, config, out_dir, reporter, dist)
    checkpoint = trainer.latest_checkpoint() if job.get("resume") else None
    eval_before = None
    if checkpoint is not None:
        trainer.load_checkpoint(checkpoint)
        state_file = out_dir / "eval_before.json"
        if state_file.is_file():
            eval_before = json.loads(state_file.read_text()).get("eval_loss")
        reporter.emit("resumed", step=trainer.step, path=str(checkpoint))
    else:
        eval_before = trainer.evaluate()
        if dist.rank == 0:
            write_json_atomic(out_dir / "eval_before.json", {"eval_loss": eval_before})
    reporter.emit("start", total_steps=trainer.total_steps, step=trainer.step, device=str(trainer.device),
                  world_size=dist.world_size, train_blocks=int(len(data.train_ids)), seq_len=config.seq_len,
                  eval_loss=eval_before, **{k: v for k, v in data.stats.items() if k in ("documents", "pairs")})
    stats = trainer.train()
    eval_after = trainer.evaluate()
    reporter.emit("eval", step=trainer.step, eval_loss=eval_after,
                  perplexity=math.exp(eval_after) if eval_after is not None else None)

    result = {"output_dir": str(out_dir), **stats, "device": str(trainer.device), "world_size": dist.world_size,
              "eval_loss_before": eval_before, "eval_loss_after": eval_after,
              "perplexity_before": math.exp(eval_before) if eval_before is not None else None,
              "perplexity_after": math.exp(eval_after) if eval_after is not None else None,
              "held_out": job.get("held_out_path"), "adapter_dir": None, "adapter_gguf": None}
    if dist.rank == 0:
        adapter_dir = out_dir / "adapter"
        with atomic_dir(adapter_dir) as tmp:
            trainer.peft_model.save_pretrained(tmp)
            write_job_file(tmp, job, name="training_config.json")
        result["adapter_dir"] = str(adapter_dir)
        if job.get("export_gguf", True):
            reporter.message("Writing the llama.cpp adapter (GGUF)...")
            result["adapter_gguf"] = _export_gguf(adapter_dir, base_gguf, out_dir, reporter)
        if result["adapter_gguf"] and data.eval_texts:
            reporter.message("Measuring the adapter through llama.cpp...")
            result.update(_measure_gguf(base_gguf, Path(result["adapter_gguf"]), data.eval_texts, config.seq_len,
                                        translation=data.stats.get("held_out") == "pairs"))
        write_json_atomic(out_dir / "result.json", without_texts(result))
    trainer._barrier()
    return result


#: Held-out characters scored through llama.cpp for the result card: enough for a stable
#: figure, little enough to take seconds, not minutes.
GGUF_EVAL_CHARS = 20_000
#: Tokens of held-out text that prompt the before/after samples, and tokens generated.
SAMPLE_PROMPT_TOKENS = 48
SAMPLE_TOKENS = 40


#: Held-out pairs translated for the before/after samples of a translation-memory run.
SAMPLE_PAIRS = 3


def translation_sample_prompts(held_out: list[str], n: int = SAMPLE_PAIRS) -> list[str]:
    """The translator's prompts (``"English: …\\nFrench:"``) of the first ``n`` held-out pairs
    (each held-out text is a prompt and its reference, as ``training.datasets`` writes them)."""
    prompts = []
    for text in held_out[:n]:
        source, _, rest = text.partition("\n")
        target_name = rest.split(":", 1)[0]
        if source and rest and target_name:
            prompts.append(f"{source}\n{target_name}:")
    return prompts


def _measure_gguf(base_gguf: Path, adapter_gguf: Path, held_out: list[str], ctx: int,
                  translation: bool = False) -> dict:
    """Held-out perplexity and a greedy sample, without and with the adapter, on the GGUF the
    user will run (llama.cpp, not torch). For a translation memory the sample is the model's
    translation of a few held-out source sentences, as the translator asks for it; for documents
    it is the continuation of the start of a held-out document. Training process, rank 0."""
    from engine.llama_runtime import LoadedModel
    from engine.settings import EngineSettings, SamplingParams
    from training.evaluate import gguf_perplexity

    texts, total = [], 0
    for text in held_out:
        texts.append(text[: GGUF_EVAL_CHARS - total])
        total += len(texts[-1])
        if total >= GGUF_EVAL_CHARS:
            break
    ctx = max(128, min(512, int(ctx)))
    before = gguf_perplexity(base_gguf, texts, ctx=ctx)
    after = gguf_perplexity(base_gguf, texts, ctx=ctx, lora_path=adapter_gguf)
    model = LoadedModel(str(base_gguf), EngineSettings(n_ctx=1024))
    try:
        prompts = translation_sample_prompts(held_out) if translation else []
        if prompts:
            # Each sentence on its own (without the translator's fixed examples), stopped at the line
            # break as the translator stops.
            greedy = SamplingParams(temperature=0.0, max_tokens=SAMPLE_TOKENS, repeat_penalty=1.0, stop=["\n"])
            tokenized = [model.tokenize(p, add_special=True) for p in prompts]

            def samples() -> str:
                return "\n\n".join(f"{p} {model.generate(list(t), greedy).text.strip()}"
                                     for p, t in zip(prompts, tokenized))

            prompt_text = prompts[0]
        else:
            prompt = model.tokenize(held_out[0], add_special=True)[:SAMPLE_PROMPT_TOKENS]
            greedy = SamplingParams(temperature=0.0, max_tokens=SAMPLE_TOKENS, repeat_penalty=1.0)
            prompt_text = model.detokenize(prompt)

            def samples() -> str:
                return prompt_text + model.generate(list(prompt), greedy).text

        sample_before = samples()
        model.set_adapters([(str(adapter_gguf), 1.0)])
        sample_after = samples()
    finally:
        model.close()
    return {"gguf_perplexity_before": before, "gguf_perplexity_after": after,
            "sample_prompt": prompt_text, "sample_before": sample_before, "sample_after": sample_after}
