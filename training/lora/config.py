"""LoRA job settings and presets. Plain data; any process, any thread.

Defaults are chosen for a small model on a laptop CPU: short packed sequences, a modest
rank, no dropout (peft then skips a copy of every adapted layer's input), a learning rate
that is safe for LoRA at this size. Presets trade time for quality:

* quick     - attention projections only, rank 8: minutes; the model picks up vocabulary and style.
* balanced  - every linear layer, rank 16: the default; what the benchmarks measure.
* thorough  - every linear layer, rank 32, two epochs: for an overnight run.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace


@dataclass
class LoraTrainConfig:
    # --- adapter ---
    rank: int = 16  # LoRA rank r; 16 is peft's common choice and fits a 135M-270M model well
    alpha: int = 32  # scale alpha/r = 2, the usual LoRA ratio
    dropout: float = 0.0  # no dropout: one-epoch runs on small data do not overfit, and it costs a copy per layer
    # Which linear layers get an adapter: "all-linear" (peft's shortcut, lm_head excluded) or a list of names.
    target_modules: str | list[str] = "all-linear"
    # --- optimisation ---
    learning_rate: float = 2e-4  # LoRA tolerates 10x a full fine-tune's rate; 2e-4 is stable on these models
    weight_decay: float = 0.0  # LoRA matrices start at zero; decay only slows them down
    warmup_steps: int = 10  # short linear warm-up so the first noisy batches do not throw the adapter off
    schedule: str = "cosine"  # after warm-up: "cosine" (decay to 10%) or "constant"
    epochs: float = 1.0  # passes over the training blocks
    max_steps: int = 0  # 0 = as many as the epochs give; otherwise a hard cap (tests, quick tries)
    batch_size: int = 4  # blocks per optimizer step (per process under torchrun)
    grad_accum: int = 1  # micro-batches per optimizer step; raise to emulate larger batches on little memory
    max_grad_norm: float = 1.0  # clip: a packed block of code or tables can give a large gradient
    # --- data ---
    seq_len: int = 256  # tokens per packed block; attention cost grows with it, 256 is the CPU sweet spot
    eval_fraction: float = 0.1  # share of documents (or pairs) held out for perplexity
    eval_blocks: int = 16  # held-out blocks scored at the end (and at each eval) -- enough for a stable figure
    seed: int = 0  # data order, adapter initialisation, dropout
    # --- machine ---
    device: str = "auto"  # "auto" = CUDA when present, else CPU; or "cpu", "cuda", "cuda:1"
    threads: int = 0  # CPU threads; 0 = one per physical core (hyper-threads slow matrix products down)
    compile: bool = False  # torch.compile the model: slower to start, measured no faster on small CPUs
    # --- progress and checkpoints ---
    log_every: int = 1  # steps between progress lines
    checkpoint_every: int = 50  # steps between checkpoints (also on SIGTERM and at the end)
    checkpoint_seconds: float = 300.0  # ...or at most this long between checkpoints, whichever comes first

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict | None) -> "LoraTrainConfig":
        names = {f.name for f in fields(cls)}
        unknown = set(data or {}) - names
        if unknown:
            raise ValueError(f"Unknown LoRA settings: {', '.join(sorted(unknown))}.")
        return cls(**(data or {}))


PRESETS: dict[str, LoraTrainConfig] = {
    "quick": LoraTrainConfig(rank=8, alpha=16, target_modules=["q_proj", "v_proj"], learning_rate=3e-4,
                             epochs=1.0, checkpoint_every=25),
    "balanced": LoraTrainConfig(),
    "thorough": LoraTrainConfig(rank=32, alpha=64, learning_rate=1e-4, epochs=2.0, warmup_steps=20),
}


def preset(name: str, **overrides) -> LoraTrainConfig:
    if name not in PRESETS:
        raise ValueError(f"Unknown preset {name!r}; choose {', '.join(PRESETS)}.")
    base = PRESETS[name]
    return replace(base, **overrides)


def config_from_job(job: dict) -> LoraTrainConfig:
    """The job's preset (``job["preset"]``, default balanced) with ``job["settings"]`` on top."""
    name = job.get("preset", "balanced")
    settings = dict(job.get("settings") or {})
    LoraTrainConfig.from_dict(settings)  # unknown names -> a clear error
    return preset(name, **settings)
