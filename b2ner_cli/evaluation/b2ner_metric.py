"""The upstream B2NER metric, exactly: normalised ``label:mention`` strings compared as sets.

Each answer string is normalised, split into pieces on ``;``, each piece normalised again, pieces without ``:``
dropped, and the rest compared as a set. Counts are per sentence, summed per (dataset, language) row (micro); a
language's average is the unweighted mean of its rows' F1 and the overall average the mean of all rows, leaving
out ``math-junior`` and ``CAIL2022`` as upstream did.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

#: datasets upstream leaves out of the per-language averages.
EXCLUDED_FROM_AVERAGE = frozenset({"math-junior", "CAIL2022"})

_AROUND_PUNCT = re.compile(r"\s*([,:().\_;'\-])\s*")
_REPEATED = re.compile(r"([,.;])\1+")
_FULL_WIDTH = str.maketrans({"；": ";", "：": ":", "，": ",", "“": '"', "”": '"', "‘": "'", "’": "'"})
_FIRST_BOOK_TITLE = re.compile(r"《(.+?)》")
# As upstream: any run of these brackets at both ends goes, matched or not ("((a))", "<(a)>", "(a>" -> "a").
_WRAPPED = re.compile(r"^[《》<>（）()]+(.+?)[《》<>（）()]+$")


def normalize(text: str) -> str:
    """The eight normalisation steps of the upstream scorer, in order."""
    text = " ".join(text.split())  # 1. collapse whitespace runs (the split/join idiom also trims both ends)
    text = _AROUND_PUNCT.sub(r"\1", text)  # 2. no whitespace around , : ( ) . _ ; ' -
    text = text.lower()  # 3.
    text = text.replace("{", "").replace("}", "")  # 4.
    text = _REPEATED.sub(r"\1", text)  # 5. ",,", "..", ";;" -> one
    text = text.translate(_FULL_WIDTH)  # 6. full-width separators and curly quotes
    text = text.replace("located", "location").replace("organisation", "organization")  # 7.
    if ":" in text:  # 8. the mention, after the last colon
        head, _, mention = text.rpartition(":")
        mention = mention.strip("@#")
        book = _FIRST_BOOK_TITLE.search(mention)
        if book:
            mention = book.group(1)
        wrapped = _WRAPPED.match(mention)
        if wrapped:
            mention = wrapped.group(1)
        text = f"{head}:{mention}"
    return text


def answer_set(answer: str) -> set[str]:
    """The set of normalised ``label:mention`` strings an answer says (``None`` gives the empty set)."""
    pieces = (normalize(piece) for piece in normalize(answer).split(";"))
    return {piece for piece in pieces if ":" in piece}


@dataclass
class Counts:
    tp: int = 0
    fp: int = 0
    fn: int = 0

    def add(self, other: Counts) -> None:
        self.tp, self.fp, self.fn = self.tp + other.tp, self.fp + other.fp, self.fn + other.fn

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 0.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 0.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0

    def to_dict(self) -> dict[str, float | int]:
        return {"precision": self.precision, "recall": self.recall, "f1": self.f1, "tp": self.tp, "fp": self.fp,
                "fn": self.fn}  # fmt: skip


@dataclass(frozen=True)
class SentenceScore:
    """One sentence under the b2ner metric: what matched, what was extra, what was missed."""

    true_positives: frozenset[str]
    false_positives: frozenset[str]
    false_negatives: frozenset[str]

    @property
    def counts(self) -> Counts:
        return Counts(len(self.true_positives), len(self.false_positives), len(self.false_negatives))


def score_sentence(gold_answer: str, predicted_answer: str) -> SentenceScore:
    gold, predicted = answer_set(gold_answer), answer_set(predicted_answer)
    return SentenceScore(frozenset(gold & predicted), frozenset(predicted - gold), frozenset(gold - predicted))


def language_averages(rows: Iterable[tuple[str, str, float]]) -> dict[str, float]:
    """Unweighted mean F1 per language over its datasets (rows of (dataset, language, f1)), as upstream's scorer.

    Upstream groups its rows by (task, language), so a dataset scored in two languages counts in both; the datasets
    in ``EXCLUDED_FROM_AVERAGE`` are left out, and a language left with no dataset averages to 0, as upstream
    reports it.
    """
    by_language: dict[str, list[float]] = {}
    for name, language, f1 in rows:
        scores = by_language.setdefault(language, [])
        if name not in EXCLUDED_FROM_AVERAGE:
            scores.append(f1)
    return {language: sum(values) / len(values) if values else 0.0 for language, values in sorted(by_language.items())}


def overall_average(rows: Iterable[tuple[str, str, float]]) -> float:
    """Upstream's overall ``Average``: the unweighted mean F1 over every included (dataset, language) row, all
    languages together (not the mean of the language averages); 0 when there is none."""
    scores = [f1 for name, _, f1 in rows if name not in EXCLUDED_FROM_AVERAGE]
    return sum(scores) / len(scores) if scores else 0.0


def answer_from_pairs(pairs: Iterable[tuple[str, str]]) -> str:
    """An answer string in B2NER grammar: ``label: mention; ...`` or ``None``."""
    return "; ".join(f"{label}: {mention}" for label, mention in pairs) or "None"
