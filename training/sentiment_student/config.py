"""Settings of the sentiment student's fine-tuning. Plain data; any process, any thread."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields


@dataclass
class StudentTrainConfig:
    """How a student's encoder is fine-tuned. The epochs, learning rate and held-out share were
    compared on the UCI development lines (benchmarks/sentiment_student.py); the default
    sentiment student (assistant/tasks/sentiment_default.py) passes its own epochs."""

    epochs: int = 3  # passes over the texts: the best of the 3-5 compared at this learning rate
    learning_rate: float = 1e-4  # encoder
    head_learning_rate: float = 1e-2  # the head starts from zero and must move fast
    batch_size: int = 32  # texts per step: short sentences, so 32 fit a laptop's memory easily
    max_length: int = 128  # tokens; review sentences are far shorter
    warmup_steps: int = 20  # at most a tenth of the run
    # A few hundred texts make only a handful of steps an epoch; the student then sees them
    # for more epochs, so that it trains at least this many steps.
    min_steps: int = 50
    weight_decay: float = 0.01  # AdamW's usual decay for fine-tuning a BERT encoder
    heldout_fraction: float = 0.05  # of the teacher-labelled texts, to report agreement
    min_texts: int = 40  # fewer different texts teach the encoder nothing it can keep
    seed: int = 0  # held-out split, data order and the head's initialisation
    threads: int = 0  # torch threads (0: torch's default, one per core)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict | None) -> "StudentTrainConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data or {}) - known)
        if unknown:
            raise ValueError(f"Unknown sentiment student setting {unknown[0]!r}.")
        config = cls(**(data or {}))
        if config.epochs < 1 or config.batch_size < 1 or not 0 <= config.heldout_fraction < 0.9:
            raise ValueError("The student needs at least one epoch, a batch of at least one text and a held-out "
                             "share below 0.9.")
        return config
