"""``b2ner index --tune DEV``: grid search of the kNN settings (k, lambda, T) by strict span F1 on a dev set.

The tagger runs over the dev set once; each window's neighbours are looked up once, for the largest k of the grid
(the first k of those are the k nearest); then every setting only re-mixes and re-decodes. Ties go to the smaller
lambda (the plain tagger at lambda 0 wins a tie), then the smaller k, then the smaller T.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .knn import KnnIndex, KnnMixer, KnnParams, default_grid, iter_grid

if TYPE_CHECKING:
    from ..taggers.tagger import Tagger
    from ..taggers.types import TaggerExample


@dataclass
class TuneResult:
    best: KnnParams
    #: strict micro F1 on dev with ``best``, and with lambda 0 (the plain tagger).
    f1: float
    plain_f1: float
    settings_tried: int
    grid: dict[str, list[int] | list[float]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, object]:
        return {"best": self.best.to_dict(), "f1": round(self.f1, 6), "plain_f1": round(self.plain_f1, 6),
                "settings_tried": self.settings_tried, "grid": self.grid}  # fmt: skip


def tune_knn(
    tagger: Tagger,
    index: KnnIndex,
    dev: Sequence[TaggerExample],
    *,
    ks: Sequence[int] | None = None,
    lams: Sequence[float] | None = None,
    temperatures: Sequence[float] | None = None,
    batch_tokens: int = 8192,
    progress: Callable[[int], None] | None = None,
) -> TuneResult:
    """The grid setting with the best dev F1 (see the module docstring for ties)."""
    import torch

    from ..taggers.runtime import autocast, collate, to_spans, token_batches
    from ..taggers.scoring import strict_f1
    from ..taggers.tagger import _pad_id
    from ..taggers.words import make_windows

    default_ks, default_lams, default_ts = default_grid(len(index))
    ks = [min(k, len(index)) for k in (ks or default_ks)]
    lams, temperatures = list(lams or default_lams), list(temperatures or default_ts)
    if 0.0 not in lams:
        lams = [0.0, *lams]
    model: Any = tagger.model
    head: Any = model.head
    model.eval()
    windows = make_windows(tagger.tokenizer, [e.text for e in dev], tagger.settings.max_length)
    mixer = KnnMixer(index, KnnParams(max(ks), 0.0, 1.0))
    pad = _pad_id(tagger.tokenizer)
    cached: list[tuple[list[int], dict[str, Any], Any, Any, Any, Any]] = []
    with torch.inference_mode(), autocast(tagger.device):
        for indices in token_batches(windows, batch_tokens):
            batch = collate([windows[i] for i in indices], pad, tagger.device)
            out = model(batch)
            valid, scores, classes_of = mixer.query(head, out, max(ks))
            for key in ("features", "hs", "he", "words"):  # the keys were only needed for the lookup
                out.pop(key, None)
            cached.append((indices, out, batch["word_mask"], valid, scores, classes_of))
            if progress is not None:
                progress(len({windows[i].doc for i in indices}))
    gold = [e.entities for e in dev]
    scored: list[tuple[float, KnnParams]] = []
    with torch.inference_mode():
        for params in iter_grid(sorted(set(ks)), sorted(set(lams)), sorted(set(temperatures))):
            decoded: list[Any] = [[] for _ in windows]
            for indices, out, mask, valid, scores, classes_of in cached:
                mixed = KnnMixer.mix(head, out, valid, scores, classes_of, params, index.classes)
                for i, found in zip(indices, head.decode(mixed, mask, kept=None, method=None), strict=True):
                    decoded[i] = found
            spans = to_spans(windows, decoded, tagger.labels, len(dev))
            f1 = strict_f1(gold, [[(s.start, s.end, s.label) for s in doc] for doc in spans])["f1"]
            scored.append((f1, params))
    best_f1, best = max(scored, key=lambda item: (item[0], -item[1].lam, -item[1].k, -item[1].temperature))
    plain = max(f1 for f1, p in scored if p.lam == 0.0)
    grid: dict[str, list[int] | list[float]] = {
        "k": sorted(set(ks)), "lambda": sorted(set(lams)), "temperature": sorted(set(temperatures))}  # fmt: skip
    return TuneResult(best, best_f1, plain, len(scored), grid)
