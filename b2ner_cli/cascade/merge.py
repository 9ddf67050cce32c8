"""Routing and merging, pure: which tagger entities are uncertain, and the final record of a document from the
tagger's record and (when routed) the LLM's. Shared by :class:`CascadeRecognizer` and the threshold sweep."""

from __future__ import annotations

from ..grounding import flatten
from ..records import Entity, Record

TAGGER = "tagger"
LLM = "llm"


def uncertainty_of(entity: Entity) -> float:
    """The entity's uncertainty; a head that gives none (crf) counts as ``1 - score``, or 0 (never routed)."""
    if entity.uncertainty is not None:
        return entity.uncertainty
    return 1.0 - entity.score if entity.score is not None else 0.0


def uncertain(record: Record, threshold: float) -> list[Entity]:
    """The tagger's entities of ``record`` whose uncertainty exceeds ``threshold`` (candidates: predictions only)."""
    return [e for e in record.entities if uncertainty_of(e) > threshold]


def routed(record: Record, threshold: float) -> bool:
    return bool(uncertain(record, threshold))


def _overlap(a: Entity, b: Entity) -> int:
    return min(a.end, b.end) - max(a.start, b.start)


def merge(tagged: Record, llm: Record | None, threshold: float, mode: str = "span", flat: bool = False) -> Record:
    """The cascade's record of one document.

    Confident tagger entities (uncertainty <= ``threshold``) stay as they are. ``span``: an uncertain entity that
    ``llm`` also returns (overlapping; LLM entities are grounded in the text) becomes the LLM's entity, label and
    boundaries (the one that overlaps most, then the first); one it does not return is dropped. ``sentence``: a
    routed document's entities are the LLM's. ``llm`` None (not routed) keeps the tagger's record.
    """
    keep = [_tagged(e) for e in tagged.entities]
    if llm is None or not routed(tagged, threshold):
        return Record(tagged.id, tagged.text, _final(keep, flat), list(tagged.unmatched), tagged.raw)
    verdicts = [_llm(e) for e in llm.entities]
    if mode == "sentence":
        return Record(tagged.id, tagged.text, _final(verdicts, flat), list(llm.unmatched), None)
    entities = [e for e in keep if uncertainty_of(e) <= threshold]
    for entity in tagged.entities:
        if uncertainty_of(entity) <= threshold:
            continue
        overlapping = [v for v in verdicts if _overlap(v, entity) > 0]
        if overlapping:
            entities.append(max(overlapping, key=lambda v: _overlap(v, entity)))  # max keeps the first of ties
    return Record(tagged.id, tagged.text, _final(entities, flat), [], None)


def _tagged(entity: Entity) -> Entity:
    return entity if entity.source == TAGGER else _with_source(entity, TAGGER)


def _llm(entity: Entity) -> Entity:
    return _with_source(entity, LLM)


def _with_source(entity: Entity, source: str) -> Entity:
    from dataclasses import replace

    return replace(entity, source=source)


def _final(entities: list[Entity], flat: bool) -> list[Entity]:
    unique: dict[tuple[int, int, str], Entity] = {}
    for entity in entities:
        unique.setdefault((entity.start, entity.end, entity.label), entity)
    ordered = sorted(unique.values(), key=lambda e: (e.start, e.end, e.label))
    return flatten(ordered) if flat else ordered
