"""The plain data of local taggers: examples, predicted spans, training settings and results (no torch here)."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from ..errors import UsageError

HEADS = ("spanner", "crf", "pointer", "biaffine")
LOSSES = ("ce", "evidential")
UNCERTAINTY = ("confidence", "entropy", "evidential", "mc-dropout")
SPAN_HEADS = ("spanner", "biaffine")


@dataclass(frozen=True)
class TaggerExample:
    """One training or dev sentence: its text and gold entities as (start, end, label), end exclusive."""

    text: str
    entities: tuple[tuple[int, int, str], ...] = ()


@dataclass(frozen=True)
class TaggedSpan:
    """One predicted entity, in character offsets of the input text (end exclusive)."""

    start: int
    end: int
    label: str
    #: the probability of ``label`` for this span, 0..1.
    score: float
    #: 0..1 (1 = no idea) for spanner, biaffine and pointer heads; None for crf.
    uncertainty: float | None


@dataclass
class TaggerTrainSettings:
    """How a tagger is trained; the defaults follow the published recipes (local-models.md, section 1)."""

    head: str = "spanner"  # spanner | crf | pointer | biaffine
    epochs: int = 5
    batch_size: int = 16
    encoder_lr: float = 3e-5
    head_lr: float = 1e-3
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    grad_clip: float = 1.0
    max_span_words: int = 8  # spanner / biaffine span length cap, in words
    loss: str = "ce"  # ce | evidential (spanner only)
    nested: bool = False  # biaffine: nested decoding (spans may contain each other, never cross)
    negative_weight: float = 0.6  # spanner: loss weight of non-entity spans
    max_length: int = 256  # subwords per window, special tokens included
    patience: int | None = None  # early stopping: epochs without dev improvement
    seed: int = 42

    def check(self) -> None:
        """Raise UsageError for a setting no head can train with."""
        if self.head not in HEADS:
            raise UsageError(f"Unknown tagger head `{self.head}`.", f"Choose one of: {', '.join(HEADS)}.")
        if self.loss not in LOSSES:
            raise UsageError(f"Unknown tagger loss `{self.loss}`.", f"Choose one of: {', '.join(LOSSES)}.")
        if self.loss == "evidential" and self.head != "spanner":
            raise UsageError(
                f"The evidential loss is implemented for the spanner head only, not `{self.head}`.",
                "Use --head spanner with the evidential loss, or the ce loss.",
            )
        if self.nested and self.head != "biaffine":
            raise UsageError("Nested decoding needs the biaffine head.", "Use --head biaffine, or drop --nested.")
        positive = ("epochs", "batch_size", "max_span_words")
        for name in positive:
            if getattr(self, name) < 1:
                raise UsageError(f"Tagger setting `{name}` must be at least 1, not {getattr(self, name)}.")
        if self.max_length < 8:
            raise UsageError(f"Tagger setting `max_length` must be at least 8 subwords, not {self.max_length}.")
        if self.patience is not None and self.patience < 1:
            raise UsageError(f"Tagger setting `patience` must be at least 1, not {self.patience}.")
        if not 0.0 <= self.warmup_ratio <= 1.0:
            raise UsageError(f"Tagger setting `warmup_ratio` must be within 0..1, not {self.warmup_ratio}.")
        if self.negative_weight <= 0:
            raise UsageError(f"Tagger setting `negative_weight` must be positive, not {self.negative_weight}.")

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TaggerTrainSettings:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass
class TaggerTrainResult:
    """What ``train_tagger`` did: where the tagger is, which epoch was kept, and what was skipped."""

    output: Path
    head: str
    labels: tuple[str, ...]
    epochs_run: int
    best_epoch: int
    #: strict micro F1 of the kept epoch on dev; None without dev.
    best_dev_f1: float | None
    #: one dict per epoch (also written to metrics.jsonl).
    metrics: list[dict[str, Any]] = field(default_factory=list)
    #: gold entities left out of training: {"unaligned": n, "outside_labels": n, "too_long": n, "overlapping": n}.
    skipped: dict[str, int] = field(default_factory=dict)
    train_windows: int = 0
    stopped_early: bool = False
    resumed_from_epoch: int = 0
    seconds: float = 0.0
