"""Pure decoding rules shared by the span heads (no torch): greedy selection by descending probability."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

#: a candidate is (probability, first word, last word, ...); words inclusive.
C = TypeVar("C", bound=tuple[Any, ...])


def overlaps(a: tuple[int, int], b: tuple[int, int]) -> bool:
    """Word intervals [first, last] share a word."""
    return a[0] <= b[1] and b[0] <= a[1]


def crosses(a: tuple[int, int], b: tuple[int, int]) -> bool:
    """They overlap and neither contains the other (the only overlap nested decoding forbids)."""
    if not overlaps(a, b):
        return False
    a_in_b = b[0] <= a[0] and a[1] <= b[1]
    b_in_a = a[0] <= b[0] and b[1] <= a[1]
    return not (a_in_b or b_in_a)


def greedy_spans(candidates: Sequence[C], *, nested: bool = False) -> list[C]:
    """Keep candidates by descending probability, skipping any that overlaps (flat) or crosses (nested) a kept one.

    Ties in probability go to the earlier, then shorter span, so the result never depends on input order.
    The result is sorted by position.
    """
    order = sorted(candidates, key=lambda c: (-c[0], c[1], c[2]))
    kept: list[C] = []
    clash = crosses if nested else overlaps
    for cand in order:
        span = (cand[1], cand[2])
        if any(clash(span, (k[1], k[2])) for k in kept):
            continue
        kept.append(cand)
    return sorted(kept, key=lambda c: (c[1], c[2]))
