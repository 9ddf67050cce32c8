"""Scores against a threshold: how F1 changes as entities below a confidence score are dropped (``--sweep-score``)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from ..errors import UsageError
from .b2ner_metric import answer_from_pairs
from .records import GoldRecord, PredRecord
from .report import evaluate


def parse_thresholds(value: str, option: str = "--sweep-score") -> list[float]:
    """``0,0.25,0.5`` or ``start:stop:step`` (stop included), each in 0..1."""
    try:
        if ":" in value:
            start, stop, step = (float(part) for part in value.split(":"))
            if step <= 0:
                raise ValueError
            count = math.floor((stop - start) / step + 1e-9) + 1
            values = [round(start + i * step, 10) for i in range(max(count, 0))]
        else:
            values = [float(part) for part in value.split(",") if part.strip()]
    except ValueError:
        raise UsageError(
            f"{option} {value}: expected comma-separated numbers or start:stop:step.", f"e.g. {option} 0:1:0.1"
        ) from None
    if not values or any(math.isnan(v) or not 0.0 <= v <= 1.0 for v in values):
        raise UsageError(f"{option} {value}: thresholds must lie between 0 and 1.", f"e.g. {option} 0:1:0.1")
    return sorted(set(values))


@dataclass(frozen=True)
class SweepPoint:
    threshold: float
    #: entities kept (score >= threshold, or no score) out of all predicted.
    kept: int
    total: int
    strict_f1: float
    b2ner_f1: float

    def to_dict(self) -> dict[str, float | int]:
        return {"threshold": self.threshold, "kept": self.kept, "total": self.total, "strict_f1": self.strict_f1,
                "b2ner_f1": self.b2ner_f1}  # fmt: skip


def score_sweep(
    gold: Sequence[GoldRecord], predictions: Mapping[str, PredRecord], thresholds: Sequence[float]
) -> list[SweepPoint]:
    """Micro F1 over all records for each threshold: predicted entities with a score below it are dropped.

    The b2ner metric is computed from the kept entities' ``label: mention`` pairs (a raw answer cannot be cut by
    score), so at threshold 0 it can differ from the main report's b2ner score, which reads raw answers.
    """
    together = [replace(r, dataset="all", language="all") for r in gold]
    total = sum(len(p.entities) for p in predictions.values())
    points = []
    for threshold in thresholds:
        kept = {}
        for key, predicted in predictions.items():
            entities = tuple(e for e in predicted.entities if e.score is None or e.score >= threshold)
            answer = answer_from_pairs(dict.fromkeys((e.label, e.text) for e in entities))
            kept[key] = replace(predicted, entities=entities, answer=answer)
        [report] = evaluate(together, kept).datasets
        strict = report.strict.f1 if report.strict is not None else 0.0
        count = sum(len(p.entities) for p in kept.values())
        points.append(SweepPoint(threshold, count, total, strict, report.b2ner.f1))
    return points
