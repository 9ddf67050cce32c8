"""Strict micro F1 over (start, end, label) spans: the dev score that selects a tagger's best epoch."""

from __future__ import annotations

from collections.abc import Iterable, Sequence


def strict_f1(
    gold: Sequence[Iterable[tuple[int, int, str]]], predicted: Sequence[Iterable[tuple[int, int, str]]]
) -> dict[str, float]:
    """Micro precision, recall and F1 of exact matches, document by document (duplicates count once)."""
    if len(gold) != len(predicted):
        raise ValueError("gold and predicted must have one entry per document")
    tp = n_gold = n_pred = 0
    for g, p in zip(gold, predicted, strict=True):
        gs, ps = set(g), set(p)
        tp += len(gs & ps)
        n_gold += len(gs)
        n_pred += len(ps)
    precision = tp / n_pred if n_pred else 0.0
    recall = tp / n_gold if n_gold else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "tp": tp, "gold": n_gold, "predicted": n_pred}
