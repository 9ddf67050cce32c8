"""``eval --sweep-threshold``: F1 against the share routed to the LLM, per threshold, like spaCy's find-threshold.

The tagger runs once over the gold texts; the LLM runs once over every document that the lowest threshold routes
(a document routed by any threshold is routed by the lowest); each threshold then only merges and scores.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from ..evaluation.b2ner_metric import Counts, answer_from_pairs
from ..evaluation.records import GoldRecord, PredRecord, gold_documents
from ..evaluation.report import evaluate
from ..models.spec import ModelSpec
from ..records import Record
from ..runs.recognizer import LoadOptions, Recognizer, load_recognizer, stream
from ..runs.settings import ExtractSettings, RunStats, Task
from .merge import merge, uncertain
from .spec import CascadeSpec, check_cascade

#: F1 points (x100) within which a cheaper threshold counts as as good as the best.
WITHIN = 0.5


@dataclass(frozen=True)
class ThresholdScore:
    threshold: float
    b2ner_f1: float
    strict_f1: float
    documents: int
    routed_documents: int
    spans: int
    routed_spans: int

    @property
    def routed_document_fraction(self) -> float:
        return self.routed_documents / self.documents if self.documents else 0.0

    @property
    def routed_span_fraction(self) -> float:
        return self.routed_spans / self.spans if self.spans else 0.0

    def cost(self) -> tuple[float, float, float]:
        """Cheaper first: fewer documents to the LLM (its calls are per document), then fewer spans, then the higher
        threshold."""
        return (self.routed_document_fraction, self.routed_span_fraction, -self.threshold)

    def to_dict(self) -> dict[str, object]:
        return {
            "threshold": self.threshold,
            "b2ner_f1": self.b2ner_f1,
            "strict_f1": self.strict_f1,
            "documents": self.documents,
            "routed_documents": self.routed_documents,
            "routed_document_fraction": self.routed_document_fraction,
            "spans": self.spans,
            "routed_spans": self.routed_spans,
            "routed_span_fraction": self.routed_span_fraction,
        }


@dataclass
class Sweep:
    thresholds: list[ThresholdScore]
    best: float
    cheapest_within: float
    meta: dict[str, object]

    def to_dict(self) -> dict[str, object]:
        return {
            "thresholds": [t.to_dict() for t in self.thresholds],
            "best": self.best,
            f"cheapest_within_{WITHIN:g}": self.cheapest_within,
            "meta": self.meta,
        }


def choose(scores: Sequence[ThresholdScore]) -> tuple[ThresholdScore, ThresholdScore]:
    """The best threshold (b2ner F1; ties: the cheapest) and the cheapest within :data:`WITHIN` F1 points of it."""
    best = min(scores, key=lambda s: (-round(s.b2ner_f1, 12), s.cost()))
    close = [s for s in scores if round(100 * (best.b2ner_f1 - s.b2ner_f1), 9) <= WITHIN]
    return best, min(close, key=lambda s: s.cost())


def _pred(record: Record) -> PredRecord:
    if record.raw is not None:
        answer = record.raw
    else:
        pairs = [(e.label, e.text) for e in record.entities] + [(u.label, u.text) for u in record.unmatched]
        answer = answer_from_pairs(dict.fromkeys(pairs))
    return PredRecord(record.id, tuple(record.entities), answer, len(record.unmatched), "cascade")


def _pooled(report_counts: Sequence[Counts]) -> float:
    total = Counts()
    for counts in report_counts:
        total.add(counts)
    return total.f1


def sweep(
    gold: Sequence[GoldRecord],
    model: ModelSpec,
    thresholds: Sequence[float],
    *,
    settings: ExtractSettings | None = None,
    options: LoadOptions | None = None,
    tagger: Recognizer | None = None,
    llm: Recognizer | None = None,
) -> Sweep:
    """Score the cascade ``model`` (a tagger spec with ``cascade`` set) at every threshold on ``gold``.

    F1 is pooled over all gold sentences (micro over datasets). ``tagger``/``llm`` skip loading.
    """
    cascade: CascadeSpec | None = model.cascade
    if cascade is None:
        raise ValueError("sweep needs a cascade spec")
    check_cascade(model)
    options = options or LoadOptions()
    task = Task.of(None, (), settings or ExtractSettings())
    documents = gold_documents(gold)
    if tagger is None:
        tagger = load_recognizer(replace(model, cascade=None), options)
    tagged = list(stream(tagger, documents, task, RunStats()))
    lowest = min(thresholds)
    sent = [i for i, record in enumerate(tagged) if uncertain(record, lowest)]
    answers: dict[int, Record] = {}
    if sent:
        if llm is None:
            from .recognizer import load_llm

            llm = load_llm(cascade.llm, options)
        llm_records = stream(llm, [documents[i] for i in sent], task, RunStats())
        answers = dict(zip(sent, llm_records, strict=True))
    scores = []
    for threshold in sorted(thresholds):
        predicted = {}
        routed_documents = routed_spans = 0
        for index, record in enumerate(tagged):
            doubtful = uncertain(record, threshold)
            routed_documents += bool(doubtful)
            routed_spans += len(doubtful)
            final = merge(record, answers.get(index) if doubtful else None, threshold, cascade.mode)
            predicted[record.id] = _pred(final)
        report = evaluate(gold, predicted)
        strict = [d.strict for d in report.datasets if d.strict is not None]
        scores.append(ThresholdScore(threshold, _pooled([d.b2ner for d in report.datasets]), _pooled(strict),
                                     len(tagged), routed_documents, sum(len(r.entities) for r in tagged),
                                     routed_spans))  # fmt: skip
    best, cheapest = choose(scores)
    meta: dict[str, object] = {
        "tagger": model.model,
        "llm": cascade.llm.model,
        "adapter": cascade.llm.adapter,
        "mode": cascade.mode,
        "uncertainty": task.settings.uncertainty,
        "llm_documents": len(sent),
    }
    return Sweep(scores, best.threshold, cheapest.threshold, meta)
