"""Sentence-aware splitting of long texts into chunks under a token budget.

Chunks are (start, end) character spans of the original text, so entity offsets found in a
chunk map back to the document by adding ``start``. Nothing is ever dropped or truncated.
"""

from __future__ import annotations

import re
from collections.abc import Callable

CountTokens = Callable[[str], int]

# Boundaries, coarse to fine; a piece still over budget at the finest level is cut by tokens.
_LEVELS = (
    # sentence ends: Latin . ! ? … followed by closing quotes/brackets and whitespace;
    # CJK 。！？；… (no space needed); and line breaks.
    re.compile(r"[.!?…]+[\"'”’)\]]*\s+|[。！？；…]+[”’」』）)\"']*\s*|\n\s*"),
    # clause ends
    re.compile(r"[,;:，；：、]\s*"),
    # words
    re.compile(r"\s+"),
)


def _segments(text: str, start: int, end: int, pattern: re.Pattern[str]) -> list[tuple[int, int]]:
    spans, at = [], start
    for match in pattern.finditer(text, start, end):
        if match.end() > at and match.end() < end:
            spans.append((at, match.end()))
            at = match.end()
    spans.append((at, end))
    return spans


def _hard_split(text: str, start: int, end: int, count: CountTokens, budget: int) -> list[tuple[int, int, int]]:
    """Cut ``text[start:end]`` into the longest prefixes within ``budget`` (at least one character each).

    The search for each cut gallops (a window of ``budget`` characters, doubled while it still fits) and then
    bisects inside the last window, so every call to ``count`` sees at most about twice the piece it cuts:
    the characters counted grow linearly with the text, not with its square (a plain bisection over the whole
    remainder counted the remainder again for every piece).
    """
    pieces = []
    while start < end:
        lo = start + 1  # the longest prefix known to fit (one character is always taken)
        width = max(budget, 1)
        hi = min(end, start + width)
        while hi < end and count(text[start:hi]) <= budget:
            lo = hi
            width *= 2
            hi = min(end, start + width)
        while lo < hi:  # the longest prefix in [lo, hi] within budget
            mid = (lo + hi + 1) // 2
            if count(text[start:mid]) <= budget:
                lo = mid
            else:
                hi = mid - 1
        pieces.append((start, lo, count(text[start:lo])))
        start = lo
    return pieces


def _fit(text: str, start: int, end: int, count: CountTokens, budget: int, level: int) -> list[tuple[int, int, int]]:
    n = count(text[start:end])
    if n <= budget:
        return [(start, end, n)]
    if level == len(_LEVELS):
        return _hard_split(text, start, end, count, budget)
    pieces = []
    for a, b in _segments(text, start, end, _LEVELS[level]):
        pieces.extend(_fit(text, a, b, count, budget, level + 1))
    return pieces


def _strip(text: str, start: int, end: int) -> tuple[int, int]:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


def split_text(text: str, count_tokens: CountTokens, max_tokens: int) -> list[tuple[int, int]]:
    """Spans covering ``text``: the whole text when it fits, else sentence-packed chunks.

    Each chunk holds about ``max_tokens`` tokens at most (token counts of neighbouring pieces
    are added, so a chunk may pass the budget by the odd token where pieces join).
    Whitespace between chunks is left out of them; a text of only whitespace gives no chunk.
    """
    if max_tokens < 1:
        raise ValueError("max_tokens must be positive")
    if not text.strip():
        return []
    if count_tokens(text) <= max_tokens:
        return [(0, len(text))]
    chunks: list[tuple[int, int]] = []
    chunk_start, chunk_end, used = 0, 0, 0
    for start, end, n in _fit(text, 0, len(text), count_tokens, max_tokens, 0):
        if used and used + n > max_tokens:
            chunks.append((chunk_start, chunk_end))
            chunk_start, used = start, 0
        chunk_end, used = end, used + n
    chunks.append((chunk_start, chunk_end))
    stripped = [_strip(text, a, b) for a, b in chunks]
    return [(a, b) for a, b in stripped if a < b]
