"""Pruning settings. Plain data; any process, any thread."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

LAYER_STRATEGIES = ("every_other", "importance", "explicit")
IMPORTANCE_METRICS = ("cosine", "perplexity")


@dataclass
class PruneConfig:
    # Layers the student keeps: a count, or 0 to use keep_ratio.
    keep_layers: int = 0
    keep_ratio: float = 0.5  # share of the teacher's layers kept when keep_layers is 0 (half depth)
    # "every_other": evenly spaced layers, first and last included (DistilBERT's one out of two);
    # "importance": drop the layers that change the hidden state least (measured on the user's text);
    # "explicit": exactly the teacher layers listed in ``layers``.
    strategy: str = "importance"
    layers: list[int] = field(default_factory=list)  # teacher layer indices for "explicit"
    # How a layer's importance is measured: "cosine" = 1 - cos(input, output) of the layer on the
    # calibration text (one forward pass; ShortGPT's block influence), "perplexity" = rise of the
    # loss when the layer alone is skipped (one forward per layer: exact but layers x slower).
    metric: str = "cosine"
    # Layers are dropped one at a time, re-measuring after each (greedy): removing a layer changes
    # the importance of its neighbours. False = one measurement, drop the lowest at once.
    iterative: bool = True
    always_keep_first_last: bool = True  # the first and last layers carry the embedding/head interface
    # Feed-forward width kept (share of intermediate_size); 1.0 = no narrowing. The neurons kept
    # are those with the largest mean |activation| x |output weight| on the calibration text.
    ffn_keep_ratio: float = 1.0
    calibration_blocks: int = 8  # training blocks used to measure importance (seq_len tokens each)

    def __post_init__(self) -> None:
        if self.strategy not in LAYER_STRATEGIES:
            raise ValueError(f"Pruning strategy {self.strategy!r} is not one of {', '.join(LAYER_STRATEGIES)}.")
        if self.metric not in IMPORTANCE_METRICS:
            raise ValueError(f"Importance metric {self.metric!r} is not one of {', '.join(IMPORTANCE_METRICS)}.")
        if not 0.0 < self.keep_ratio <= 1.0:
            raise ValueError("keep_ratio must be in (0, 1].")
        if not 0.0 < self.ffn_keep_ratio <= 1.0:
            raise ValueError("ffn_keep_ratio must be in (0, 1].")
        if self.strategy == "explicit" and not self.layers:
            raise ValueError("The explicit strategy needs the list of layers to keep.")
        if self.keep_layers < 0 or self.calibration_blocks < 1:
            raise ValueError("keep_layers must be >= 0 and calibration_blocks >= 1.")

    def n_keep(self, n_layers: int) -> int:
        if self.strategy == "explicit":
            return len(self.layers)
        return self.keep_layers or max(1, int(round(n_layers * self.keep_ratio)))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict | None) -> "PruneConfig":
        names = {f.name for f in fields(cls)}
        unknown = set(data or {}) - names
        if unknown:
            raise ValueError(f"Unknown pruning settings: {', '.join(sorted(unknown))}.")
        return cls(**(data or {}))
