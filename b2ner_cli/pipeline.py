"""The B2NER LLM path: documents -> chunks -> prompts -> batched answers -> grounded records.

:class:`LLMRecognizer` puts it behind the recognizer seam (:mod:`b2ner_cli.runs.recognizer`). Torch-free: the
generator it is given does the model work.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .answers import is_none_answer, parse_answer
from .chunking import split_text
from .engine.base import BatchTooLarge, Generation, Generator
from .engine.batching import plan_batches
from .errors import ModelError, UsageError
from .grounding import flatten, ground, shift
from .io.readers import Document
from .prompts import Example, LabelSet, Lang, build_instruction, check_prompt_kind, detect_lang
from .records import Entity, Record, Unmatched
from .runs.recognizer import ProgressHook, stream
from .runs.settings import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_BATCH_TOKENS,
    DEFAULT_CHUNK_TOKENS,
    DEFAULT_WINDOW,
    ExtractSettings,
    LangChoice,
    RunStats,
    Task,
)

if TYPE_CHECKING:
    from .models.spec import ModelSpec
    from .runs.recognizer import Note

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_BATCH_TOKENS",
    "DEFAULT_CHUNK_TOKENS",
    "DEFAULT_WINDOW",
    "ExtractSettings",
    "LLMRecognizer",
    "Record",
    "RunStats",
    "dry_run",
    "extract",
]


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
    if document.examples is not None:
        examples = document.examples
    check_prompt_kind(label_set, examples, document.source or document.id)
    return resolved, build_instruction(text, label_set, resolved, examples)


def dry_run(
    documents: Iterable[Document],
    labels: LabelSet | None,
    examples: Sequence[Example] = (),
    lang: LangChoice = "auto",
) -> Iterator[dict[str, str]]:
    """``{"id", "language", "prompt"}`` per document: the instruction after the BOS, for the whole text."""
    for document in documents:
        resolved, prompt = instruction_for(document.text, document, labels, examples, lang)
        yield {"id": document.id, "language": resolved, "prompt": prompt}


def extract(
    documents: Iterable[Document],
    generator: Generator,
    labels: LabelSet | None = None,
    examples: Sequence[Example] = (),
    settings: ExtractSettings | None = None,
    stats: RunStats | None = None,
) -> Iterator[Record]:
    """Records for ``documents`` in input order, streamed window by window (see :class:`LLMRecognizer`)."""
    task = Task.of(labels, examples, settings)
    yield from stream(LLMRecognizer(generator), documents, task, stats if stats is not None else RunStats())


class LLMRecognizer:
    """The B2NER LLM behind the recognizer seam. Within a window, chunks are sorted by prompt length and batched by
    a token budget; a record is yielded as soon as it and every record before it are complete."""

    kind = "llm"

    def __init__(self, generator: Generator, labels: LabelSet | None = None) -> None:
        self.generator = generator
        self._labels = labels

    @classmethod
    def load(cls, spec: ModelSpec, *, quiet: bool = False, note: Note | None = None) -> LLMRecognizer:
        """Load the model a spec names and wrap it in the engine it asks for; imports torch."""
        from .engine.registry import create_generator, engines
        from .models.loading import load

        if spec.engine not in ("auto", "vllm") and spec.engine not in engines():  # before loading: fail fast
            known = ", ".join(["auto", *engines()])
            raise UsageError(f"Unknown engine `{spec.engine}`.", f"Choose one of: {known}.")
        generator: Generator
        if spec.engine == "vllm":  # vLLM reads the (converted) checkpoint itself
            from .engine.vllm import VllmGenerator

            generator = VllmGenerator.load(spec, quiet=quiet, note=note)
        else:
            loaded = load(spec, quiet=quiet, note=note)
            generator = create_generator(
                spec.engine, loaded.model, loaded.tokenizer, max_new_tokens=spec.max_new_tokens, info=loaded.info()
            )
        from .runs.labels import model_labels

        return cls(generator, model_labels(spec))  # a finetuned adapter brings its labels

    def recognize(
        self, window: Sequence[Document], task: Task, stats: RunStats, progress: ProgressHook | None = None
    ) -> Iterator[Record]:
        yield from _run_window(list(window), self.generator, task, stats, progress)

    def labels(self) -> LabelSet | None:
        """The labels of the finetuned adapter it runs with (``b2ner_adapter.json``), if any."""
        return self._labels

    def suggest_batch_tokens(self) -> int | None:
        return self.generator.suggest_batch_tokens()

    def describe(self) -> dict[str, object]:
        return {"recognizer": self.kind, **self.generator.describe()}


def _run_window(
    window: list[Document], generator: Generator, task: Task, stats: RunStats, progress: ProgressHook | None
) -> Iterator[Record]:
    labels, examples, settings = task.labels, task.examples, task.settings
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
    stats.answered += remaining.count(0)
    emitted = 0
    for batch in plan_batches(
        [len(c.ids) for c in chunks], max_batch_size=settings.batch_size, max_batch_tokens=settings.batch_tokens
    ):
        for position, generation in zip(
            batch, generate_with_backoff(generator, [chunks[i].ids for i in batch]), strict=True
        ):
            chunks[position].generation = generation
            remaining[chunks[position].doc] -= 1
            stats.answered += remaining[chunks[position].doc] == 0
        stats.prompts_done += len(batch)
        if progress is not None:
            progress()
        while emitted < len(window) and remaining[emitted] == 0:
            yield _assemble(window[emitted], per_doc[emitted], generator, settings, stats)
            emitted += 1
    while emitted < len(window):  # documents with no text, hence no chunk
        yield _assemble(window[emitted], per_doc[emitted], generator, settings, stats)
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


def mention_confidences(
    generator: Generator, generation: Generation, labels: Sequence[str]
) -> dict[tuple[str, str], float]:
    """(label, mention) -> the probability the model gave that piece of its answer (geometric mean of its tokens'
    probabilities, label tokens included; see :mod:`b2ner_cli.engine.scores`); empty without log-probabilities."""
    if not generation.token_logprobs:
        return {}
    from .engine.scores import mention_scores

    texts = generator.token_texts(generation.tokens)
    scored: dict[tuple[str, str], float] = {}
    for label, mention, score in mention_scores(generation.answer, texts, generation.token_logprobs, labels=labels):
        key = (label, mention.strip())
        scored[key] = max(score, scored.get(key, 0.0))
    return scored


def _assemble(
    document: Document, chunks: list[_Chunk], generator: Generator, settings: ExtractSettings, stats: RunStats
) -> Record:
    entities: list[Entity] = []
    unmatched: dict[tuple[str, str], Unmatched] = {}
    answers: list[str] = []
    for chunk in chunks:
        generation = chunk.generation
        assert generation is not None
        parsed = parse_answer(generation.answer, chunk.labels.names, truncated=not generation.finished)
        scores = mention_confidences(generator, generation, chunk.labels.names) if parsed.pairs else {}
        found, missing = ground(chunk.text, parsed.pairs, chunk.labels.names, scores)
        if settings.min_score is not None:
            found = [e for e in found if e.score is None or e.score >= settings.min_score]
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
