"""Parse a B2NER answer (``label: mention; label: mention`` or ``None``) into pairs."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

_SEPARATOR = re.compile(r"[;；]")
_COLON = re.compile(r"[:：]")
_SPACES = re.compile(r"\s+")


@dataclass
class ParsedAnswer:
    """What an answer says: (label, mention) pairs for asked labels, and what was set aside."""

    pairs: list[tuple[str, str]] = field(default_factory=list)
    #: (label, mention) pairs whose label was not asked for; dropped, but counted.
    unknown_labels: list[tuple[str, str]] = field(default_factory=list)
    #: pieces that are not ``label: mention`` at all.
    malformed: list[str] = field(default_factory=list)


def label_key(label: str) -> str:
    """How answers match labels: ignoring case and runs of spaces."""
    return _SPACES.sub(" ", label.strip()).casefold()


def is_none_answer(answer: str) -> bool:
    return answer.strip() in ("", "None", "none", "无")


def parse_answer(answer: str, labels: Sequence[str], *, truncated: bool = False) -> ParsedAnswer:
    """Split an answer into (label, mention) pairs, keeping the asked label's own spelling.

    Labels are matched case- and space-insensitively (``Person`` answers ``person``); the
    longest asked label that starts a piece wins, so labels or mentions may contain colons.
    With ``truncated`` (generation hit its token cap), the last, possibly cut, piece is dropped.
    """
    result = ParsedAnswer()
    if is_none_answer(answer):
        return result
    by_key = {label_key(name): name for name in labels}
    longest_first = sorted(labels, key=len, reverse=True)
    pieces = [p.strip() for p in _SEPARATOR.split(answer)]
    if truncated and pieces:
        pieces = pieces[:-1]
    for piece in pieces:
        if not piece or piece in ("None", "none"):
            continue
        label, mention = _split_piece(piece, longest_first)
        if label is None:
            result.malformed.append(piece)
            continue
        mention = mention.strip()
        if not mention or mention in ("None", "none"):
            continue
        canonical = by_key.get(label_key(label))
        if canonical is None:
            result.unknown_labels.append((label.strip(), mention))
        else:
            result.pairs.append((canonical, mention))
    return result


def _split_piece(piece: str, longest_first: Sequence[str]) -> tuple[str | None, str]:
    lowered = piece.casefold()
    for name in longest_first:
        if lowered.startswith(name.casefold()):
            rest = piece[len(name) :].lstrip()
            if rest[:1] in (":", "："):
                return name, rest[1:]
    colon = _COLON.search(piece)
    if colon is None or colon.start() == 0:
        return None, piece
    return piece[: colon.start()], piece[colon.end() :]


def answer_pieces(answer: str) -> list[tuple[int, int]]:
    """Character spans ``(start, end)`` of the pieces :func:`parse_answer` reads, in order: the answer split at
    ``;``/``；``, each piece's surrounding whitespace left out, empty pieces skipped."""
    if is_none_answer(answer):
        return []
    spans = []
    start = 0
    for end in [m.start() for m in _SEPARATOR.finditer(answer)] + [len(answer)]:
        piece = answer[start:end]
        stripped = piece.strip()
        if stripped:
            left = start + len(piece) - len(piece.lstrip())
            spans.append((left, left + len(stripped)))
        start = end + 1
    return spans


def split_piece(piece: str, labels: Sequence[str] = ()) -> tuple[str, str] | None:
    """``(label, mention)`` of one answer piece as :func:`parse_answer` splits it (the longest asked label that
    starts the piece, else the first colon), both stripped; None for a piece that is not ``label: mention`` or whose
    mention is empty or ``None``."""
    label, mention = _split_piece(piece.strip(), sorted(labels, key=len, reverse=True))
    mention = mention.strip()
    if label is None or not mention or mention in ("None", "none"):
        return None
    return label.strip(), mention
