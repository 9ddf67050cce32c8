"""Scoring gold against predictions: per dataset, both metrics, per-label strict scores, averages, errors."""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import InputError
from ..records import Entity
from .b2ner_metric import (
    EXCLUDED_FROM_AVERAGE,
    Counts,
    language_averages,
    normalize,
    overall_average,
    score_sentence,
)
from .records import GoldRecord, PredRecord, UpstreamRecord, label_sets


@dataclass
class DatasetReport:
    name: str
    language: str
    sentences: int = 0
    b2ner: Counts = field(default_factory=Counts)
    #: None when the inputs carry no character offsets (upstream predictions files).
    strict: Counts | None = field(default_factory=Counts)
    labels: dict[str, Counts] = field(default_factory=dict)
    unmatched: int = 0
    #: predicted b2ner pieces whose label is not in the sentence's label set (false positives under b2ner).
    unknown_labels: int = 0
    b2ner_ci: tuple[float, float] | None = None
    strict_ci: tuple[float, float] | None = None
    _b2ner_sentences: list[Counts] = field(default_factory=list, repr=False)
    _strict_sentences: list[Counts] = field(default_factory=list, repr=False)

    @property
    def strict_macro_f1(self) -> float | None:
        if self.strict is None:
            return None
        return sum(c.f1 for c in self.labels.values()) / len(self.labels) if self.labels else 0.0

    def to_dict(self) -> dict[str, object]:
        b2ner: dict[str, object] = dict(self.b2ner.to_dict())
        if self.b2ner_ci:
            b2ner["f1_ci95"] = list(self.b2ner_ci)
        strict: dict[str, object] | None = None
        if self.strict is not None:
            strict = {**self.strict.to_dict(), "macro_f1": self.strict_macro_f1}
            if self.strict_ci:
                strict["f1_ci95"] = list(self.strict_ci)
        return {
            "name": self.name,
            "language": self.language,
            "sentences": self.sentences,
            "b2ner": b2ner,
            "strict": strict,
            "labels": {k: {**c.to_dict(), "support": c.tp + c.fn} for k, c in sorted(self.labels.items())},
            "unmatched": self.unmatched,
            "unknown_labels": self.unknown_labels,
        }


@dataclass
class Report:
    datasets: list[DatasetReport]
    errors: list[dict[str, object]]
    meta: dict[str, object] = field(default_factory=dict)
    #: ``--sweep-score``: micro F1 per score threshold (see :mod:`b2ner_cli.evaluation.sweep`).
    sweep: list[Any] = field(default_factory=list)

    def averages(self) -> dict[str, object]:
        """Per language and overall, as upstream: unweighted means over (dataset, language) rows, exclusions out."""
        b2ner = [(d.name, d.language, d.b2ner.f1) for d in self.datasets]
        strict = [(d.name, d.language, d.strict.f1) for d in self.datasets if d.strict is not None]
        return {
            "b2ner_f1": language_averages(b2ner),
            "strict_f1": language_averages(strict),
            "overall": {"b2ner_f1": overall_average(b2ner), "strict_f1": overall_average(strict) if strict else None},
            "excluded_from_averages": sorted(n for n in EXCLUDED_FROM_AVERAGE if n in {d.name for d in self.datasets}),
        }

    def to_dict(self) -> dict[str, object]:
        data: dict[str, object] = {
            "datasets": [d.to_dict() for d in self.datasets],
            "averages": self.averages(),
            "meta": self.meta,
        }
        if self.sweep:
            data["score_sweep"] = [point.to_dict() for point in self.sweep]
        return data


def _label_of(piece: str) -> str:
    return piece.partition(":")[0]


def _strict(gold: Sequence[Entity], predicted: Sequence[Entity]) -> tuple[set[tuple[int, int, str]], ...]:
    g = {(s.start, s.end, s.label) for s in gold}
    p = {(s.start, s.end, s.label) for s in predicted}
    return g & p, p - g, g - p


def check_ids(gold: Sequence[GoldRecord], predictions: Mapping[str, PredRecord]) -> None:
    seen: set[str] = set()
    for record in gold:
        if record.id in seen:
            raise InputError(
                f'{record.source}: id "{record.id}" appears twice in the gold data.', "Ids must be unique."
            )
        seen.add(record.id)
    missing = [r.id for r in gold if r.id not in predictions]
    extra = [key for key in predictions if key not in seen]
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"{len(missing)} gold ids have no prediction ({_first(missing)})")
        if extra:
            parts.append(f"{len(extra)} predictions have no gold record ({_first(extra)})")
        raise InputError(
            "Gold and predictions do not match: " + "; ".join(parts) + ".",
            "Predictions are matched to gold records by id; run extract on the gold file itself.",
        )


def check_texts(gold: Sequence[GoldRecord], predictions: Mapping[str, PredRecord]) -> None:
    """Every prediction was made on its gold text, exactly (character for character: strict offsets index it)."""
    differ = [r.id for r in gold if predictions[r.id].text is not None and predictions[r.id].text != r.text]
    if differ:
        shown = ", ".join(differ[:5]) + (" ..." if len(differ) > 5 else "")
        raise InputError(
            f"{len(differ)} predictions were made on a text that is not the gold text ({shown}).",
            "Predictions must come from the gold file itself, e.g. b2ner extract GOLD ... -o PREDICTIONS; texts "
            "are compared exactly.",
        )


def _first(ids: list[str]) -> str:
    return ", ".join(ids[:10]) + (" ..." if len(ids) > 10 else "")


def evaluate(
    gold: Sequence[GoldRecord], predictions: Mapping[str, PredRecord], *, bootstrap: int = 0, seed: int = 0
) -> Report:
    """Both metrics for every dataset in ``gold`` (predictions matched by id)."""
    check_ids(gold, predictions)
    check_texts(gold, predictions)
    datasets: dict[tuple[str, str], DatasetReport] = {}
    allowed_by_id = label_sets(gold)
    errors: list[dict[str, object]] = []
    for record in gold:
        predicted = predictions[record.id]
        key = (record.dataset, record.language)  # upstream's rows: a dataset in two languages is two rows
        report = datasets.setdefault(key, DatasetReport(record.dataset, record.language))
        report.sentences += 1
        sentence = score_sentence(record.answer(), predicted.answer)
        report.b2ner.add(sentence.counts)
        report._b2ner_sentences.append(sentence.counts)
        allowed = {normalize(label) for label in allowed_by_id[record.id]}
        report.unknown_labels += sum(1 for piece in sentence.false_positives if _label_of(piece) not in allowed)
        tp, fp, fn = _strict(record.entities, predicted.entities)
        counts = Counts(len(tp), len(fp), len(fn))
        assert report.strict is not None
        report.strict.add(counts)
        report._strict_sentences.append(counts)
        for kind, items in (("tp", tp), ("fp", fp), ("fn", fn)):
            for _, _, label in items:
                label_counts = report.labels.setdefault(label, Counts())
                setattr(label_counts, kind, getattr(label_counts, kind) + 1)
        report.unmatched += predicted.unmatched
        if sentence.false_positives or sentence.false_negatives or fp or fn:
            errors.append({
                "id": record.id, "dataset": record.dataset, "text": record.text,
                "b2ner": {"false_positives": sorted(sentence.false_positives),
                          "false_negatives": sorted(sentence.false_negatives)},
                "strict": {"false_positives": _spans(record.text, fp), "false_negatives": _spans(record.text, fn)},
            })  # fmt: skip
    reports = list(datasets.values())
    if bootstrap:
        for report in reports:
            report.b2ner_ci = confidence_interval(report._b2ner_sentences, bootstrap, seed)
            report.strict_ci = confidence_interval(report._strict_sentences, bootstrap, seed)
    raw = sum(1 for record in gold if predictions[record.id].raw)
    return Report(reports, errors, b2ner_sources(raw, len(gold) - raw))


RAW, GROUNDED = "raw answers", "grounded entities"


def b2ner_sources(raw: int, grounded: int) -> dict[str, object]:
    """What the b2ner metric scored: the model's raw answers (as upstream), or answers rebuilt from the grounded
    entities (extract without --keep-raw), or a mix; with both counts."""
    source = "mixed" if raw and grounded else GROUNDED if grounded else RAW
    return {"b2ner_from": source, "b2ner_from_counts": {RAW: raw, GROUNDED: grounded}}


def _spans(text: str, items: set[tuple[int, int, str]]) -> list[dict[str, object]]:
    return [{"start": s, "end": e, "text": text[s:e], "label": label} for s, e, label in sorted(items)]


def evaluate_upstream(records: Sequence[UpstreamRecord], *, bootstrap: int = 0, seed: int = 0) -> Report:
    """The b2ner metric on an upstream predictions file (it has no offsets, so no strict scores)."""
    datasets: dict[tuple[str, str], DatasetReport] = {}
    errors: list[dict[str, object]] = []
    for record in records:
        key = (record.dataset, record.language)
        report = datasets.setdefault(key, DatasetReport(record.dataset, record.language, strict=None))
        report.sentences += 1
        sentence = score_sentence(record.gold_answer, record.predicted_answer)
        report.b2ner.add(sentence.counts)
        report._b2ner_sentences.append(sentence.counts)
        if sentence.false_positives or sentence.false_negatives:
            errors.append({
                "id": record.id, "dataset": record.dataset, "text": record.sentence,
                "b2ner": {"false_positives": sorted(sentence.false_positives),
                          "false_negatives": sorted(sentence.false_negatives)},
            })  # fmt: skip
    reports = list(datasets.values())
    if bootstrap:
        for report in reports:
            report.b2ner_ci = confidence_interval(report._b2ner_sentences, bootstrap, seed)
    return Report(reports, errors, b2ner_sources(len(records), 0))  # upstream's Prediction is the raw answer


def confidence_interval(sentences: Sequence[Counts], rounds: int, seed: int) -> tuple[float, float]:
    """95% percentile interval of micro F1 over ``rounds`` resamples of the sentences (with replacement)."""
    if not sentences:
        return (0.0, 0.0)
    rng = random.Random(seed)
    n = len(sentences)
    scores = []
    for _ in range(rounds):
        total = Counts()
        for _ in range(n):
            total.add(sentences[rng.randrange(n)])
        scores.append(total.f1)
    scores.sort()

    def quantile(q: float) -> float:
        position = q * (len(scores) - 1)
        low = int(position)
        high = min(low + 1, len(scores) - 1)
        return scores[low] + (scores[high] - scores[low]) * (position - low)

    return (quantile(0.025), quantile(0.975))
