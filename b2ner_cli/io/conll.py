"""CoNLL columns (one token per line, token first, tag last; a blank line between sentences), joined into text as the
sentence was written.

Extract reads these files as documents and eval reads them as gold or predictions: both join tokens here, so the
texts (and the ``FILE:N`` ids) of the two sides agree.

Joining: tokens are separated by one space, except next to a "wide" character (a CJK ideograph, kana, CJK or
full-width punctuation and forms): Chinese text has no spaces, ``北京`` + ``，`` + ``2008`` + ``年`` is
``北京，2008年``. A sentence tokenised character by character (every token one character) that holds a wide
character is joined with nothing at all, so the digits and Latin letters of character-level Chinese files (Weibo,
MSRA, Resume: ``1``, ``9``, ``6``, ``6``, ``年``) come back as written (``1966年``).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from ..prompts import is_han

#: suffixes read as CoNLL columns (any case).
CONLL_SUFFIXES = (".conll", ".bio", ".bmes", ".iob", ".iob2", ".iobes", ".bioes")


@dataclass(frozen=True)
class ConllSentence:
    tokens: tuple[str, ...]
    #: the last column of each line; None for a line with a token alone (unlabelled input for extract).
    tags: tuple[str | None, ...]
    #: the line number of each token.
    lines: tuple[int, ...]


def is_wide(char: str) -> bool:
    """A character written without spaces around it: CJK ideographs, kana, CJK and full-width punctuation/forms."""
    code = ord(char)
    return (
        0x2E80 <= code <= 0x9FFF  # radicals, CJK symbols and punctuation (、。《》「」), kana, ideographs
        or 0xF900 <= code <= 0xFAFF  # compatibility ideographs
        or 0xFE30 <= code <= 0xFE4F  # CJK compatibility forms
        or 0xFF00 <= code <= 0xFFEF  # full-width forms (，：；！？（）０-９)
        or 0x20000 <= code <= 0x3FFFF  # ideograph extensions B and later
    )


def join_tokens(tokens: Sequence[str]) -> tuple[str, list[tuple[int, int]]]:
    """The sentence text and each token's (start, end) in it (see the module docstring for the rule)."""
    char_level = all(len(t) == 1 for t in tokens) and any(is_wide(t) for t in tokens)
    parts: list[str] = []
    offsets: list[tuple[int, int]] = []
    length = 0
    previous = ""
    for token in tokens:
        if previous and not char_level and not (is_wide(previous[-1]) or is_wide(token[0])):
            parts.append(" ")
            length += 1
        offsets.append((length, length + len(token)))
        parts.append(token)
        length += len(token)
        previous = token
    return "".join(parts), offsets


def script_language(text: str) -> str:
    """``zh`` when Han characters make at least half of the letters (``str.isalpha``) of the text, else ``en``."""
    letters = [c for c in text if c.isalpha()]
    han = sum(1 for c in letters if is_han(c))
    return "zh" if letters and 2 * han >= len(letters) else "en"


def conll_sentences(lines: Iterable[tuple[int, str]]) -> Iterator[ConllSentence]:
    """Sentences from numbered lines; ``-DOCSTART-`` lines and blank lines end a sentence."""
    tokens: list[str] = []
    tags: list[str | None] = []
    numbers: list[int] = []
    for number, line in lines:
        columns = line.split()
        if not columns or columns[0] == "-DOCSTART-":
            if tokens:
                yield ConllSentence(tuple(tokens), tuple(tags), tuple(numbers))
                tokens, tags, numbers = [], [], []
            continue
        tokens.append(columns[0])
        tags.append(columns[-1] if len(columns) > 1 else None)
        numbers.append(number)
    if tokens:
        yield ConllSentence(tuple(tokens), tuple(tags), tuple(numbers))
