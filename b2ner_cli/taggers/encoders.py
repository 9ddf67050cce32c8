"""Encoder aliases for ``b2ner finetune --head``: short names for common Hugging Face encoders.

An alias maps to a Hub repo id; anything else (a repo id or a directory) is used as given. Either way the encoder is
found through :func:`b2ner_cli.models.resolve.locate`, so ``--offline``, revisions and the Hub errors and hints
apply as they do to models.

The default, ``xlm-roberta-base``, covers English and Chinese (and ~100 other languages) in one model, the two
languages B2NER itself serves, and ships a fast tokenizer (needed for character offsets).
"""

from __future__ import annotations

ENCODERS: dict[str, str] = {
    "xlm-roberta-base": "FacebookAI/xlm-roberta-base",
    "bert-base-cased": "google-bert/bert-base-cased",
    "roberta-base": "FacebookAI/roberta-base",
    "chinese-roberta-wwm-ext": "hfl/chinese-roberta-wwm-ext",
    "deberta-v3-base": "microsoft/deberta-v3-base",
}
DEFAULT_ENCODER = "xlm-roberta-base"


def resolve_encoder(name: str | None) -> str:
    """The Hub repo id of an alias; a repo id or a directory unchanged; None -> the default encoder."""
    ref = name or DEFAULT_ENCODER
    return ENCODERS.get(ref, ref)
