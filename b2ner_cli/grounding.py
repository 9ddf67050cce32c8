"""Ground an answer's mentions in the text: character offsets, never invented ones."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace

from .prompts import is_han
from .records import Entity, Unmatched

__all__ = ["Entity", "Unmatched", "flatten", "ground", "locate", "shift"]


def _is_word_char(char: str) -> bool:
    # Letters and digits of space-separated scripts; CJK characters never form "words" here.
    return char.isalnum() and not is_han(char) and not ("\u3040" <= char <= "\u30ff")


def _whole_word(text: str, start: int, end: int) -> bool:
    if _is_word_char(text[start]) and start > 0 and _is_word_char(text[start - 1]):
        return False
    return not (_is_word_char(text[end - 1]) and end < len(text) and _is_word_char(text[end]))


def _exact(text: str, mention: str) -> list[tuple[int, int]]:
    spans = []
    at = text.find(mention)
    while at != -1:
        spans.append((at, at + len(mention)))
        at = text.find(mention, at + len(mention))
    return spans


def _tolerant(text: str, mention: str) -> list[tuple[int, int]]:
    # Case-insensitive, and any whitespace (including none) between the mention's characters:
    # "1990 s" finds "1990s", "new  york" finds "New York", "Obama 's" finds "Obama's".
    chars = [c for c in mention if not c.isspace()]
    if not chars:
        return []
    pattern = re.compile(r"\s*".join(re.escape(c) for c in chars), re.IGNORECASE)
    return [m.span() for m in pattern.finditer(text)]


def locate(text: str, mention: str) -> list[tuple[int, int]]:
    """Every occurrence of ``mention`` in ``text``, as (start, end) spans.

    Tiers, first non-empty wins: exact whole-word, tolerant whole-word, exact inside a word,
    tolerant inside a word. For CJK text every match counts as whole-word.
    """
    # Surrounding whitespace is not part of a mention; an empty one matches nothing
    # (``str.find("")`` would otherwise never advance, and blanks are not entities).
    mention = mention.strip()
    if not mention:
        return []
    exact = _exact(text, mention)
    whole = [s for s in exact if _whole_word(text, *s)]
    if whole:
        return whole
    tolerant = _tolerant(text, mention)
    whole = [s for s in tolerant if _whole_word(text, *s)]
    return whole or exact or tolerant


def ground(
    text: str,
    pairs: Iterable[tuple[str, str]],
    labels: Sequence[str] = (),
    scores: Mapping[tuple[str, str], float] | None = None,
) -> tuple[list[Entity], list[Unmatched]]:
    """Entities for every occurrence of every (label, mention), plus the mentions not found.

    Entities come sorted by (start, end, label order); the same span with two labels is kept twice. ``scores``
    gives each (label, mention) its confidence; a span found through several mentions keeps the highest.
    """
    order = {name: i for i, name in enumerate(labels)}
    found: dict[tuple[int, int, str], Entity] = {}
    unmatched: dict[tuple[str, str], Unmatched] = {}
    for label, mention in pairs:
        spans = locate(text, mention)
        if not spans:
            unmatched.setdefault((mention, label), Unmatched(mention, label))
        score = scores.get((label, mention)) if scores else None
        for start, end in spans:
            kept = found.get((start, end, label))
            if kept is None or (score is not None and (kept.score is None or score > kept.score)):
                found[(start, end, label)] = Entity(start, end, text[start:end], label, score=score)
    entities = sorted(found.values(), key=lambda e: (e.start, e.end, order.get(e.label, len(order)), e.label))
    return entities, list(unmatched.values())


def flatten(entities: Sequence[Entity]) -> list[Entity]:
    """Resolve overlaps: the longer span wins; on a tie the earlier span, then the earlier entity."""
    ranked = sorted(enumerate(entities), key=lambda ie: (-(ie[1].end - ie[1].start), ie[1].start, ie[0]))
    kept: list[Entity] = []
    for _, entity in ranked:
        if all(entity.end <= k.start or entity.start >= k.end for k in kept):
            kept.append(entity)
    return sorted(kept, key=lambda e: (e.start, e.end))


def shift(entities: Iterable[Entity], offset: int, document: str) -> list[Entity]:
    """Move chunk-relative entities to document offsets (and check they still read the same)."""
    moved = []
    for e in entities:
        start, end = e.start + offset, e.end + offset
        if document[start:end] != e.text:
            raise AssertionError(f"offset mapping broke for {e!r} at {offset}")
        moved.append(replace(e, start=start, end=end))
    return moved
