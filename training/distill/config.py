"""Distillation settings. Plain data; any process, any thread.

Defaults follow the DistilBERT recipe (Sanh et al., 2019): a soft-target loss on the
teacher's temperature-softened distribution, the ordinary language-model loss, and a cosine
loss pulling the student's hidden states towards the teacher's, weighted 5 : 2 : 1 as in
DistilBERT's training script. Reverse KL (mode-seeking, MiniLLM) and skew KL (DistiLLM,
Ko et al. 2024) are options. When teacher and student do not share a tokenizer the logits
cannot be compared position by position, so the teacher writes text from prompts taken from
the user's documents and the student learns that text (sequence-level distillation, Kim &
Rush 2016).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

DIVERGENCES = ("forward", "reverse", "skew_forward", "skew_reverse")
MODES = ("auto", "logits", "sequence")
HIDDEN_ALIGN = ("auto", "last", "mapped", "none")
GENERATORS = ("llama_cpp", "torch")


@dataclass
class DistillConfig:
    # --- what is distilled ---
    mode: str = "auto"  # "logits" (same tokenizer), "sequence" (teacher writes text) or "auto": logits when possible
    divergence: str = "forward"  # KL(teacher||student) as DistilBERT; "reverse", "skew_forward", "skew_reverse"
    skew_lambda: float = 0.1  # share of the other distribution mixed in by skew KL (DistiLLM's 0.1)
    temperature: float = 2.0  # softens both distributions so the teacher's ranking of wrong words is learned
    alpha_kl: float = 5.0  # weight of the soft-target loss (DistilBERT: 5.0)
    alpha_lm: float = 2.0  # weight of the next-token loss on the real text (DistilBERT: 2.0)
    alpha_cos: float = 1.0  # weight of the hidden-state cosine loss (DistilBERT: 1.0); 0 disables it
    # Which hidden states the cosine loss aligns: "last" (DistilBERT), "mapped" (each student layer
    # with the teacher layer it was copied from: a pruned student keeps the teacher's trajectory),
    # "none", or "auto" (mapped for pruned students, last otherwise).
    hidden_align: str = "auto"
    # --- optimisation ---
    learning_rate: float = 1e-4  # full fine-tune of a student initialised from the teacher: 1e-4 heals without forgetting
    weight_decay: float = 0.0  # short runs on small data; decay only slows healing
    warmup_steps: int = 10  # short linear warm-up: the first batches of a freshly pruned student give large gradients
    schedule: str = "cosine"  # "cosine" (decay to 10%) or "constant"
    epochs: float = 1.0  # passes over the training blocks
    max_steps: int = 0  # 0 = as many as the epochs give; otherwise exactly this many steps, epochs ignored (tests, quick tries)
    time_budget_s: float = 0.0  # stop (and finish normally) after this much training time; 0 = no limit
    batch_size: int = 4  # blocks per optimizer step
    grad_accum: int = 1  # micro-batches per optimizer step
    max_grad_norm: float = 1.0  # clip: a pruned student's first gradients can be large
    freeze_embeddings: bool = True  # the tied embedding/head is the teacher's and is the largest matrix: keep it, save its gradient
    # --- data ---
    seq_len: int = 256  # tokens per packed block
    eval_fraction: float = 0.1  # share of documents held out for perplexity, never trained on
    eval_blocks: int = 16  # held-out blocks scored before and after
    seed: int = 0  # data order
    # --- sequence-level distillation ---
    generator: str = "llama_cpp"  # "llama_cpp" (the teacher's GGUF, fast on CPU) or "torch" (transformers generate)
    prompt_tokens: int = 64  # words of the user's text given to the teacher as a prompt (in teacher tokens)
    generate_tokens: int = 192  # tokens the teacher writes after each prompt
    max_prompts: int = 64  # prompts taken from the documents (evenly spread); bounds generation time
    gen_temperature: float = 0.7  # sampling temperature of the teacher's text (the engine's chat default)
    # --- machine ---
    device: str = "auto"  # "auto" = CUDA when present, else CPU
    threads: int = 0  # CPU threads; 0 = one per physical core
    # --- progress and checkpoints ---
    log_every: int = 1  # steps between progress lines
    checkpoint_every: int = 50  # steps between checkpoints (also on cancel and at the end)
    checkpoint_seconds: float = 300.0  # ...or at most this long between checkpoints

    def __post_init__(self) -> None:
        for name, value, allowed in (("mode", self.mode, MODES), ("divergence", self.divergence, DIVERGENCES),
                                     ("hidden_align", self.hidden_align, HIDDEN_ALIGN),
                                     ("generator", self.generator, GENERATORS),
                                     ("schedule", self.schedule, ("cosine", "constant"))):
            if value not in allowed:
                raise ValueError(f"Distillation setting {name}={value!r} is not one of {', '.join(allowed)}.")
        if self.temperature <= 0:
            raise ValueError("The distillation temperature must be above 0.")
        if not 0.0 <= self.skew_lambda < 1.0:
            raise ValueError("skew_lambda must be in [0, 1).")
        if min(self.alpha_kl, self.alpha_lm, self.alpha_cos) < 0 or self.alpha_kl + self.alpha_lm + self.alpha_cos == 0:
            raise ValueError("The loss weights must be non-negative and not all zero.")
        if self.batch_size < 1 or self.grad_accum < 1 or self.seq_len < 8:
            raise ValueError("batch_size and grad_accum must be at least 1 and seq_len at least 8.")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict | None) -> "DistillConfig":
        names = {f.name for f in fields(cls)}
        unknown = set(data or {}) - names
        if unknown:
            raise ValueError(f"Unknown distillation settings: {', '.join(sorted(unknown))}.")
        return cls(**(data or {}))


PRESETS: dict[str, dict] = {
    # Minutes on a laptop CPU: enough to see the student recover, not to finish healing.
    "quick": {"max_steps": 60, "seq_len": 128, "checkpoint_every": 20},
    # One pass over the documents: what benchmarks/distill_student.py measures, given time.
    "balanced": {},
    # Three passes and a gentler rate: for an overnight run.
    "thorough": {"epochs": 3.0, "learning_rate": 5e-5, "warmup_steps": 30},
}


def config_from_job(job: dict) -> DistillConfig:
    """The job's preset (``job["preset"]``, default balanced) with ``job["settings"]`` on top."""
    name = job.get("preset", "balanced")
    if name not in PRESETS:
        raise ValueError(f"Unknown preset {name!r}; choose one of {', '.join(PRESETS)}.")
    return DistillConfig.from_dict({**PRESETS[name], **dict(job.get("settings") or {})})
