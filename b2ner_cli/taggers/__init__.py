"""Local NER taggers: a pretrained encoder plus a task head (spanner, crf, pointer, biaffine), trained with
``train_tagger`` and used through ``Tagger.load(path).predict(texts)``.

Importing this package does not import torch; ``train_tagger`` and ``Tagger`` load it when used.

A tagger directory holds ``b2ner_tagger.json`` (the card), the encoder as ``save_pretrained`` wrote it
(config.json, model.safetensors, tokenizer files), ``head.safetensors`` and ``metrics.jsonl``. Nothing is pickled.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .card import CARD, is_tagger_dir, read_card
from .types import HEADS, UNCERTAINTY, TaggedSpan, TaggerExample, TaggerTrainResult, TaggerTrainSettings

if TYPE_CHECKING:
    from .tagger import Tagger
    from .train import train_tagger

__all__ = [
    "CARD",
    "HEADS",
    "UNCERTAINTY",
    "TaggedSpan",
    "Tagger",
    "TaggerExample",
    "TaggerTrainResult",
    "TaggerTrainSettings",
    "is_tagger_dir",
    "read_card",
    "train_tagger",
]


def __getattr__(name: str) -> Any:
    if name == "Tagger":
        from .tagger import Tagger

        return Tagger
    if name == "train_tagger":
        from .train import train_tagger

        return train_tagger
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
