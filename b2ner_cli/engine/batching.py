"""Length-sorted, token-budgeted batches."""

from __future__ import annotations

from collections.abc import Sequence


def plan_batches(lengths: Sequence[int], *, max_batch_size: int, max_batch_tokens: int) -> list[list[int]]:
    """Group item indices into batches, longest first.

    A batch is padded to its longest prompt, so its cost is ``size * longest``; items are sorted
    by length so that neighbours pad little, and a batch closes when adding the next item would
    pass ``max_batch_tokens`` or ``max_batch_size``. An item longer than the budget runs alone.
    """
    if max_batch_size < 1 or max_batch_tokens < 1:
        raise ValueError("batch limits must be positive")
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches: list[list[int]] = []
    current: list[int] = []
    longest = 0
    for index in order:
        longest_if_added = max(longest, lengths[index])
        if current and (len(current) + 1 > max_batch_size or (len(current) + 1) * longest_if_added > max_batch_tokens):
            batches.append(current)
            current, longest_if_added = [], lengths[index]
        current.append(index)
        longest = longest_if_added
    if current:
        batches.append(current)
    return batches
