"""The extraction pipeline: documents -> chunks -> prompts -> batched answers -> grounded records.

Torch-free: the generator it is given does the model work.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import islice
from typing import Literal

from .answers import is_none_answer, parse_answer
from .chunking import split_text
from .engine.base import BatchTooLarge, Generation, Generator
from .engine.batching import plan_batches
from .errors import ModelError, UsageError
from .grounding import Entity, Unmatched, flatten, ground, shift
from .io.readers import Document
from .prompts import Example, LabelSet, Lang, build_instruction, detect_lang

LangChoice = Literal["auto", "en", "zh"]

DEFAULT_BATCH_SIZE = 32
DEFAULT_BATCH_TOKENS = 16384
DEFAULT_CHUNK_TOKENS = 384
DEFAULT_WINDOW = 1024


@dataclass(frozen=True)
class ExtractSettings:
    """How ``extract`` runs; every field has a CLI flag of the same meaning."""

    lang: LangChoice = "auto"
    flat: bool = False
    max_chunk_tokens: int = DEFAULT_CHUNK_TOKENS
    batch_size: int = DEFAULT_BATCH_SIZE
    batch_tokens: int = DEFAULT_BATCH_TOKENS
    #: documents read ahead, sorted by length and batched together (bounds memory).
    window: int = DEFAULT_WINDOW


@dataclass
class Record:
    """The result for one document."""

    id: str
    text: str
    entities: list[Entity]
    unmatched: list[Unmatched]
    #: the model's answer as generated (chunk answers joined with "; " for long documents).
    raw: str

    def relabeled(self, mapping: dict[str, str]) -> Record:
        """The same record with labels renamed (e.g. canonical names back to the user's own tags)."""
        if not mapping:
            return self
        return Record(
            self.id,
            self.text,
            [Entity(e.start, e.end, e.text, mapping.get(e.label, e.label)) for e in self.entities],
            [Unmatched(u.text, mapping.get(u.label, u.label)) for u in self.unmatched],
            self.raw,
        )

    def to_dict(self, keep_raw: bool = False) -> dict[str, object]:
        record: dict[str, object] = {
            "id": self.id,
            "text": self.text,
            "entities": [e.to_dict() for e in self.entities],
            "unmatched": [u.to_dict() for u in self.unmatched],
        }
        if keep_raw:
            record["raw"] = self.raw
        return record


@dataclass
class RunStats:
    """Counts over a run, for the summary line and the run metadata."""

    documents: int = 0
    chunks: int = 0
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

    def to_dict(self) -> dict[str, object]:
        return dict(self.__dict__)


@dataclass
class _Chunk:
    doc: int
    start: int
    text: str
    labels: LabelSet
    ids: list[int]
    generation: Generation | None = None


def resolve_lang(choice: LangChoice, labels: LabelSet) -> Lang:
    return detect_lang(labels.names) if choice == "auto" else choice


def label_set_for(document: Document, labels: LabelSet | None) -> LabelSet:
    label_set = document.labels or labels
    if label_set is None:
        raise UsageError(
            f"{document.source or document.id}: no labels for this record.",
            'Give --labels "person,organization,location", --labels-file, or a "labels" field per record.',
        )
    return label_set


def instruction_for(
    text: str, document: Document, labels: LabelSet | None, examples: Sequence[Example], lang: LangChoice
) -> tuple[Lang, str]:
    label_set = label_set_for(document, labels)
    resolved = resolve_lang(lang, label_set)
    if examples and label_set.descriptions is not None:
        raise UsageError(
            f"{document.source or document.id}: few-shot examples cannot be combined with label descriptions.",
            "Use either --examples or labels with descriptions.",
        )
    return resolved, build_instruction(text, label_set, resolved, examples)


def dry_run(
    documents: Iterable[Document],
    labels: LabelSet | None,
    examples: Sequence[Example] = (),
    lang: LangChoice = "auto",
) -> Iterator[dict[str, str]]:
    """``{"id", "lang", "prompt"}`` per document: the instruction after the BOS, for the whole text."""
    for document in documents:
        resolved, prompt = instruction_for(document.text, document, labels, examples, lang)
        yield {"id": document.id, "lang": resolved, "prompt": prompt}


def extract(
    documents: Iterable[Document],
    generator: Generator,
    labels: LabelSet | None = None,
    examples: Sequence[Example] = (),
    settings: ExtractSettings | None = None,
    stats: RunStats | None = None,
) -> Iterator[Record]:
    """Records for ``documents`` in input order, streamed window by window.

    Within a window of documents, chunks are sorted by prompt length and batched by a token
    budget; a record is yielded as soon as it and every record before it are complete.
    """
    settings = settings or ExtractSettings()
    stats = stats if stats is not None else RunStats()
    iterator = iter(documents)
    while window := list(islice(iterator, settings.window)):
        yield from _run_window(window, generator, labels, examples, settings, stats)


def _run_window(
    window: list[Document],
    generator: Generator,
    labels: LabelSet | None,
    examples: Sequence[Example],
    settings: ExtractSettings,
    stats: RunStats,
) -> Iterator[Record]:
    chunks: list[_Chunk] = []
    per_doc: list[list[_Chunk]] = []
    for index, document in enumerate(window):
        label_set = label_set_for(document, labels)
        mine = []
        for start, end in split_text(document.text, generator.count_tokens, settings.max_chunk_tokens):
            piece = document.text[start:end]
            _, instruction = instruction_for(piece, document, labels, examples, settings.lang)
            mine.append(_Chunk(index, start, piece, label_set, generator.encode(instruction)))
        per_doc.append(mine)
        chunks.extend(mine)
    remaining = [len(mine) for mine in per_doc]
    emitted = 0
    for batch in plan_batches(
        [len(c.ids) for c in chunks], max_batch_size=settings.batch_size, max_batch_tokens=settings.batch_tokens
    ):
        for position, generation in zip(
            batch, generate_with_backoff(generator, [chunks[i].ids for i in batch]), strict=True
        ):
            chunks[position].generation = generation
            remaining[chunks[position].doc] -= 1
        while emitted < len(window) and remaining[emitted] == 0:
            yield _assemble(window[emitted], per_doc[emitted], settings, stats)
            emitted += 1
    while emitted < len(window):  # documents with no text, hence no chunk
        yield _assemble(window[emitted], per_doc[emitted], settings, stats)
        emitted += 1


def generate_with_backoff(generator: Generator, batch: list[list[int]]) -> list[Generation]:
    """Generate; when the device runs out of memory, halve the batch and retry (no record lost or repeated)."""
    try:
        return generator.generate(batch)
    except BatchTooLarge:
        if len(batch) == 1:
            raise ModelError(
                f"Out of memory generating for a single prompt of {len(batch[0])} tokens.",
                "Lower --max-chunk-tokens, use --quantize 4bit, or free GPU memory.",
            ) from None
        half = len(batch) // 2
        return generate_with_backoff(generator, batch[:half]) + generate_with_backoff(generator, batch[half:])


def _assemble(document: Document, chunks: list[_Chunk], settings: ExtractSettings, stats: RunStats) -> Record:
    entities: list[Entity] = []
    unmatched: dict[tuple[str, str], Unmatched] = {}
    answers: list[str] = []
    for chunk in chunks:
        generation = chunk.generation
        assert generation is not None
        parsed = parse_answer(generation.answer, chunk.labels.names, truncated=not generation.finished)
        found, missing = ground(chunk.text, parsed.pairs, chunk.labels.names)
        entities.extend(shift(found, chunk.start, document.text))
        for item in missing:
            unmatched.setdefault((item.text, item.label), item)
        for label, _ in parsed.unknown_labels:
            stats.unknown_label_names[label] = stats.unknown_label_names.get(label, 0) + 1
        stats.unknown_labels += len(parsed.unknown_labels)
        stats.malformed += len(parsed.malformed)
        stats.truncated += not generation.finished
        stats.runaways += generation.runaway
        stats.new_tokens += generation.new_tokens
        answers.append(generation.answer)
    if len(chunks) == 1:
        raw = answers[0]
    else:
        said = [a.strip() for a in answers if not is_none_answer(a)]
        raw = " " + ("; ".join(said) or "None")
    if settings.flat:
        entities = flatten(entities)
    stats.documents += 1
    stats.chunks += len(chunks)
    stats.entities += len(entities)
    stats.unmatched += len(unmatched)
    return Record(document.id, document.text, entities, list(unmatched.values()), raw)
