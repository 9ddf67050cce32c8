"""Words and windows: where a text's words are, which subword stands for each word, and how long texts are cut.

A word is a run of letters/digits of a non-CJK script, a single CJK character (Han, kana, Hangul), or any other
single non-space character (punctuation, symbols). A word's vector is its first subword's, found through the fast
tokenizer's offset mapping of the raw text. Texts longer than ``max_length - 2`` subwords are split with
``chunking.split_text`` into windows; all offsets stay those of the original text.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..chunking import split_text
from ..errors import ModelError

_CJK = "\u2e80-\u2fdf\u3040-\u30ff\u3100-\u312f\u3190-\u31ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff"
WORD = re.compile(rf"[{_CJK}]|[^\W_{_CJK}]+|\S")


def word_spans(text: str, start: int = 0, end: int | None = None) -> list[tuple[int, int]]:
    """(start, end) of every word of ``text[start:end]``, in offsets of ``text``."""
    return [m.span() for m in WORD.finditer(text, start, len(text) if end is None else end)]


@dataclass
class Window:
    """A piece of one document that fits the encoder: its subwords and its words."""

    doc: int
    start: int  # character span of the window in the document
    end: int
    input_ids: list[int]
    #: character spans (in the document) of the words that have a subword in this window.
    words: list[tuple[int, int]]
    #: position in ``input_ids`` of each word's first subword.
    word_tokens: list[int]
    #: gold entities as (first word, last word, label id), words inclusive; training and dev only.
    entities: list[tuple[int, int, int]] = field(default_factory=list)


def first_subwords(
    words: Sequence[tuple[int, int]], offsets: Sequence[tuple[int, int]], special: Sequence[int]
) -> list[int | None]:
    """For each word, the position of the first non-special subword whose characters overlap it (None if none)."""
    tokens = [(i, s, e) for i, ((s, e), sp) in enumerate(zip(offsets, special, strict=True)) if not sp and e > s]
    found: list[int | None] = []
    at = 0
    for ws, we in words:
        while at < len(tokens) and tokens[at][2] <= ws:
            at += 1
        if at < len(tokens) and tokens[at][1] < we:
            found.append(tokens[at][0])
        else:
            found.append(None)
    return found


def _window(doc: int, text: str, start: int, end: int, encoding: Any, shift: int) -> Window | None:
    offsets = [(s + shift, e + shift) for s, e in encoding["offset_mapping"]]
    words = word_spans(text, start, end)
    firsts = first_subwords(words, offsets, encoding["special_tokens_mask"])
    kept = [(w, t) for w, t in zip(words, firsts, strict=True) if t is not None]
    if not kept:
        return None
    return Window(doc, start, end, list(encoding["input_ids"]), [w for w, _ in kept], [t for _, t in kept])


def make_windows(tokenizer: Any, texts: Sequence[str], max_length: int) -> list[Window]:
    """Windows of every text, in document order; blank texts give none."""
    if not getattr(tokenizer, "is_fast", False):
        raise ModelError(
            "The tagger's tokenizer is not a fast tokenizer, so subwords cannot be mapped back to characters.",
            "Use an encoder that ships a tokenizer.json (any Hugging Face fast tokenizer).",
        )
    budget = max_length - tokenizer.num_special_tokens_to_add()
    options = {"return_offsets_mapping": True, "return_special_tokens_mask": True}
    whole = tokenizer(list(texts), add_special_tokens=True, **options)
    windows: list[Window] = []
    for doc, text in enumerate(texts):
        if not text.strip():
            continue
        mask = whole["special_tokens_mask"][doc]
        if len(mask) - sum(mask) <= budget:
            encoding = {key: whole[key][doc] for key in ("input_ids", "offset_mapping", "special_tokens_mask")}
            window = _window(doc, text, 0, len(text), encoding, 0)
            if window is not None:
                windows.append(window)
            continue

        def count(piece: str) -> int:
            return len(tokenizer(piece, add_special_tokens=False)["input_ids"])

        for a, b in split_text(text, count, budget):
            encoding = tokenizer(text[a:b], add_special_tokens=True, truncation=True, max_length=max_length, **options)
            window = _window(doc, text, a, b, encoding, a)
            if window is not None:
                windows.append(window)
    return windows


def attach_entities(
    windows: Sequence[Window],
    examples_entities: Sequence[Sequence[tuple[int, int, str]]],
    label_ids: dict[str, int],
) -> dict[str, int]:
    """Put each document's gold entities on the window whose words they align to; count the ones left out.

    An entity whose start or end is not a word boundary (or that falls across two windows) is ``unaligned``;
    one whose label is not a tagger label is ``outside_labels``.
    """
    by_doc: dict[int, list[Window]] = {}
    for window in windows:
        by_doc.setdefault(window.doc, []).append(window)
    skipped = {"unaligned": 0, "outside_labels": 0}
    for doc, entities in enumerate(examples_entities):
        for start, end, label in entities:
            if label not in label_ids:
                skipped["outside_labels"] += 1
                continue
            placed = False
            for window in by_doc.get(doc, ()):
                starts = {w[0]: i for i, w in enumerate(window.words)}
                ends = {w[1]: i for i, w in enumerate(window.words)}
                if start in starts and end in ends and starts[start] <= ends[end]:
                    window.entities.append((starts[start], ends[end], label_ids[label]))
                    placed = True
                    break
            if not placed:
                skipped["unaligned"] += 1
    return skipped
