"""The data every recognizer returns and every reader of gold data builds: entities and records.

One span type serves grounded predictions and gold annotations alike: ``Entity(start, end, text, label)``, with
character offsets (``end`` exclusive). Recognizers that can tell how sure they are add ``score`` (the probability of
the label, 0..1), ``uncertainty`` (0..1) and ``source`` (which recognizer produced it, in a cascade).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any


@dataclass(frozen=True)
class Entity:
    """A labelled span of the text; ``start``/``end`` are character offsets, ``end`` exclusive."""

    start: int
    end: int
    text: str
    label: str
    score: float | None = None
    uncertainty: float | None = None
    source: str | None = None

    def to_dict(self) -> dict[str, object]:
        """The JSONL shape; ``score``/``uncertainty`` (to 6 decimals) and ``source`` appear only when set."""
        data: dict[str, object] = {"start": self.start, "end": self.end, "text": self.text, "label": self.label}
        if self.score is not None:
            data["score"] = round(self.score, 6)
        if self.uncertainty is not None:
            data["uncertainty"] = round(self.uncertainty, 6)
        if self.source is not None:
            data["source"] = self.source
        return data


@dataclass(frozen=True)
class Unmatched:
    """A mention the model gave that does not occur in the text."""

    text: str
    label: str

    def to_dict(self) -> dict[str, object]:
        return {"text": self.text, "label": self.label}


@dataclass
class Record:
    """The result for one document."""

    id: str
    text: str
    entities: list[Entity]
    unmatched: list[Unmatched]
    #: the model's answer as generated (chunk answers joined with "; " for long documents); None when the
    #: recognizer does not generate text (a tagger).
    raw: str | None = None

    def relabeled(self, mapping: Mapping[str, str]) -> Record:
        """The same record with labels renamed (e.g. canonical names back to the user's own tags)."""
        if not mapping:
            return self
        return Record(
            self.id,
            self.text,
            [replace(e, label=mapping.get(e.label, e.label)) for e in self.entities],
            [Unmatched(u.text, mapping.get(u.label, u.label)) for u in self.unmatched],
            self.raw,
        )

    def to_dict(self, keep_raw: bool = False) -> dict[str, object]:
        record: dict[str, object] = {
            "id": self.id,
            "text": self.text,
            "entities": [e.to_dict() for e in self.entities],
            "unmatched": [u.to_dict() for u in self.unmatched],
        }
        if keep_raw and self.raw is not None:
            record["raw"] = self.raw
        return record

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Record:
        """The record that :meth:`to_dict` (with ``keep_raw``) wrote: ``Record.from_dict(r.to_dict(True))`` writes
        the same JSON as ``r`` (scores are rounded once, to 6 decimals, either way)."""
        return cls(
            str(data["id"]),
            str(data["text"]),
            [Entity(**entity) for entity in data["entities"]],
            [Unmatched(**unmatched) for unmatched in data["unmatched"]],
            data.get("raw"),
        )
