"""Per-run settings and counts, shared by every recognizer (torch-free)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from typing import Literal

from ..prompts import Example, LabelSet

LangChoice = Literal["auto", "en", "zh"]

DEFAULT_BATCH_SIZE = 32
DEFAULT_BATCH_TOKENS = 16384
DEFAULT_CHUNK_TOKENS = 384
#: documents read ahead and batched together: small enough that Ctrl-C (which keeps only the records before the
#: first unfinished one) loses little, large enough for length-sorted batches to pad little.
DEFAULT_WINDOW = 256


@dataclass(frozen=True)
class ExtractSettings:
    """How a run extracts; every field has a CLI flag of the same meaning."""

    lang: LangChoice = "auto"
    flat: bool = False
    max_chunk_tokens: int = DEFAULT_CHUNK_TOKENS
    batch_size: int = DEFAULT_BATCH_SIZE
    batch_tokens: int = DEFAULT_BATCH_TOKENS
    #: documents read ahead, sorted by length and batched together (bounds memory).
    window: int = DEFAULT_WINDOW
    #: entities whose score is below this are dropped (entities without a score are kept).
    min_score: float | None = None
    #: taggers: how each entity's uncertainty is computed (confidence | entropy | evidential | mc-dropout); the
    #: LLM path ignores it.
    uncertainty: str = "confidence"
    #: taggers: stochastic passes for ``uncertainty="mc-dropout"``.
    mc_samples: int = 8


@dataclass(frozen=True)
class Task:
    """What a run asks of a recognizer: the default label set (records may bring their own), few-shot examples for
    prompting recognizers, and the settings. Recognizers keep no per-run state: everything per-run is here."""

    labels: LabelSet | None = None
    examples: tuple[Example, ...] = ()
    settings: ExtractSettings = field(default_factory=ExtractSettings)

    @classmethod
    def of(
        cls, labels: LabelSet | None, examples: Sequence[Example] = (), settings: ExtractSettings | None = None
    ) -> Task:
        return cls(labels, tuple(examples), settings or ExtractSettings())


@dataclass
class RunStats:
    """Counts over a run, for progress, the summary line and the run metadata."""

    documents: int = 0
    chunks: int = 0
    #: prompts (chunks) answered so far, counted as batches finish (before their records are complete).
    prompts_done: int = 0
    #: documents whose every prompt is answered (their records may still wait for earlier ones).
    answered: int = 0
    entities: int = 0
    unmatched: int = 0
    #: mentions dropped because the model gave a label that was not asked for.
    unknown_labels: int = 0
    #: answer pieces that were not ``label: mention``.
    malformed: int = 0
    #: chunks whose answer hit the new-token cap or ran away before EOS (their last piece is dropped).
    truncated: int = 0
    #: of those, answers stopped for repeating themselves.
    runaways: int = 0
    new_tokens: int = 0
    unknown_label_names: dict[str, int] = field(default_factory=dict)
    #: a cascade's counts (documents, routed_documents, spans, routed_spans) and seconds (tagger_seconds,
    #: llm_seconds); empty, and left out of :meth:`to_dict`, for other recognizers.
    cascade: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, object]:
        data = dict(self.__dict__)
        if not self.cascade:
            del data["cascade"]
        return data

    def add(self, part: RunStats) -> None:
        """Add another run's counts (a worker's, a rank's) to these."""
        for f in fields(RunStats):
            value = getattr(part, f.name)
            if isinstance(value, dict):
                merged = getattr(self, f.name)
                for key, count in value.items():
                    merged[key] = merged.get(key, 0) + count
            else:
                setattr(self, f.name, getattr(self, f.name) + value)
