"""What evaluation reads: gold and predicted records with character spans, and upstream predictions files."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..io.readers import Document
from ..prompts import LabelSet
from ..records import Entity
from .b2ner_metric import answer_from_pairs


@dataclass(frozen=True)
class GoldRecord:
    id: str
    text: str
    entities: tuple[Entity, ...]
    #: the label set the sentence was (or is to be) prompted with; None when the source gives none.
    labels: tuple[str, ...] | None
    dataset: str
    language: str
    source: str

    def answer(self) -> str:
        """The gold answer in B2NER grammar, as upstream's targets are written."""
        return answer_from_pairs((e.label, e.text) for e in self.entities)


@dataclass(frozen=True)
class PredRecord:
    id: str
    entities: tuple[Entity, ...]
    #: the model's answer: ``raw`` when extract kept it, else rebuilt from entities and unmatched mentions.
    answer: str
    unmatched: int
    source: str
    #: the text the prediction was made on; eval refuses a prediction whose text is not the gold text.
    text: str | None = None
    #: whether ``answer`` is the model's raw answer (else it was rebuilt from the grounded entities).
    raw: bool = False


@dataclass(frozen=True)
class UpstreamRecord:
    """One line of an upstream ``predict_eval_predictions.jsonl``: gold and prediction answers together."""

    id: str
    dataset: str
    language: str
    sentence: str
    gold_answer: str
    predicted_answer: str


def label_sets(records: Sequence[GoldRecord]) -> dict[str, tuple[str, ...]]:
    """Each record's label set: its own ``labels``, else its dataset's labels in order of first appearance."""
    per_dataset: dict[str, list[str]] = {}
    for record in records:
        names = per_dataset.setdefault(record.dataset, [])
        names.extend(n for n in (record.labels or [e.label for e in record.entities]) if n not in names)
    return {r.id: tuple(r.labels or per_dataset[r.dataset]) for r in records}


def gold_documents(records: Sequence[GoldRecord]) -> list[Document]:
    """The gold texts as extract documents, each with its label set (to run a model on gold data)."""
    sets = label_sets(records)
    return [Document(r.id, r.text, LabelSet(sets[r.id]), r.source) for r in records]
