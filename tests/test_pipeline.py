"""The pipeline's scheduling with a fake generator (these tests are about order, streaming and batching,
not about the model; the real model paths are in test_engine and test_extract_cli)."""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence

from b2ner_cli.engine.base import Generation
from b2ner_cli.io.readers import Document
from b2ner_cli.pipeline import ExtractSettings, RunStats, extract
from b2ner_cli.prompts import LabelSet

LABELS = LabelSet(("person", "location"))


class ScriptedGenerator:
    """One token per whitespace-separated word; answers from a script keyed by the prompt's text line."""

    max_new_tokens = 16

    def __init__(self, answers: dict[str, Generation] | None = None) -> None:
        self.answers = answers or {}
        self.batches: list[list[int]] = []  # prompt lengths of each batch

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def encode(self, instruction: str) -> list[int]:
        return [1] + [len(w) for w in instruction.split()]

    def generate(self, batch: Sequence[list[int]]) -> list[Generation]:
        self.batches.append([len(ids) for ids in batch])
        return [self.answers.get(str(len(ids)), Generation(" None", 1, True)) for ids in batch]

    def describe(self) -> dict[str, object]:
        return {}


def test_streams_an_endless_input_in_order_without_reading_it_all() -> None:
    consumed = 0

    def endless() -> Iterator[Document]:
        nonlocal consumed
        for i in itertools.count():
            consumed += 1
            yield Document(id=str(i), text="word " * (i % 7 + 1))

    records = extract(endless(), ScriptedGenerator(), LABELS, settings=ExtractSettings(window=50))
    first = list(itertools.islice(records, 120))
    assert [r.id for r in first] == [str(i) for i in range(120)]
    assert consumed <= 150  # three windows of 50 at most were read


def test_batches_respect_size_and_token_budget_and_sort_by_length() -> None:
    generator = ScriptedGenerator()
    docs = [Document(id=str(i), text="word " * (1 + (i * 7) % 23)) for i in range(60)]
    settings = ExtractSettings(batch_size=8, batch_tokens=400, window=60)
    stats = RunStats()
    records = list(extract(docs, generator, LABELS, settings=settings, stats=stats))
    assert [r.id for r in records] == [str(i) for i in range(60)]
    assert sum(len(b) for b in generator.batches) == 60  # every prompt generated exactly once
    for batch in generator.batches:
        assert len(batch) <= 8
        assert len(batch) == 1 or len(batch) * max(batch) <= 400
    flat = [n for batch in generator.batches for n in batch]
    assert flat == sorted(flat, reverse=True)  # longest first, so neighbours pad little
    assert stats.documents == 60 and stats.chunks == 60


def test_empty_text_gives_an_empty_record_without_a_prompt() -> None:
    generator = ScriptedGenerator()
    docs = [Document(id="a", text="   "), Document(id="b", text="Ada")]
    records = list(extract(docs, generator, LABELS))
    assert [(r.id, r.entities, r.unmatched) for r in records] == [("a", [], []), ("b", [], [])]
    assert sum(len(b) for b in generator.batches) == 1


def test_truncated_answer_drops_its_last_piece_and_is_counted() -> None:
    text = "Ada Lovelace met Charles Babbage in London"
    generator = ScriptedGenerator()
    length = len(generator.encode(_instruction(text)))
    generator.answers[str(length)] = Generation(" person: Ada Lovelace; person: Charles Bab", 16, finished=False)
    stats = RunStats()
    [record] = extract([Document(id="x", text=text)], generator, LABELS, stats=stats)
    # "Charles Bab" was cut by the token cap: it must not become a span of "Charles Babbage".
    assert [(e.start, e.end, e.text) for e in record.entities] == [(0, 12, "Ada Lovelace")]
    assert stats.truncated == 1


def _instruction(text: str) -> str:
    from b2ner_cli.prompts import build_instruction

    return build_instruction(text, LABELS, "en")


class OutOfMemoryAbove(ScriptedGenerator):
    """Runs out of memory for batches larger than ``limit``."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit

    def generate(self, batch: Sequence[list[int]]) -> list[Generation]:
        from b2ner_cli.engine.base import BatchTooLarge

        if len(batch) > self.limit:
            raise BatchTooLarge(len(batch))
        return super().generate(batch)


def test_out_of_memory_halves_the_batch_and_loses_nothing() -> None:
    generator = OutOfMemoryAbove(limit=3)
    docs = [Document(id=str(i), text="word " * (i % 5 + 1)) for i in range(20)]
    records = list(extract(docs, generator, LABELS, settings=ExtractSettings(batch_size=16, batch_tokens=10**6)))
    assert [r.id for r in records] == [str(i) for i in range(20)]
    assert all(len(b) <= 3 for b in generator.batches)
    assert sum(len(b) for b in generator.batches) == 20  # each prompt generated exactly once


def test_out_of_memory_on_one_prompt_is_a_clear_error() -> None:
    import pytest

    from b2ner_cli.errors import ModelError

    with pytest.raises(ModelError, match="Out of memory generating for a single prompt of"):
        list(extract([Document(id="a", text="word")], OutOfMemoryAbove(limit=0), LABELS))


def test_flat_setting_resolves_overlaps_in_records() -> None:
    text = "She moved to New York City last year"
    generator = ScriptedGenerator()
    length = len(generator.encode(_instruction(text)))
    generator.answers[str(length)] = Generation(" location: New York; location: New York City; person: York", 9, True)
    [overlapping] = extract([Document(id="x", text=text)], generator, LABELS)
    # "New York" 13-21 and "York" 17-21 lie inside "New York City" 13-26: kept without --flat ...
    assert [(e.start, e.end, e.label) for e in overlapping.entities] == [
        (13, 21, "location"), (13, 26, "location"), (17, 21, "person")]  # fmt: skip
    [flat] = extract([Document(id="x", text=text)], generator, LABELS, settings=ExtractSettings(flat=True))
    # ... and with it only the longest span survives
    assert [(e.start, e.end, e.text, e.label) for e in flat.entities] == [(13, 26, "New York City", "location")]


def test_progress_moves_as_batches_finish_before_any_record_is_complete() -> None:
    """Documents are answered longest first: the shortest, first document is answered last, so no record can be
    written before the final batch; progress must still move after every batch."""
    from b2ner_cli.models.spec import ModelSpec
    from b2ner_cli.pipeline import LLMRecognizer
    from b2ner_cli.records import Record
    from b2ner_cli.runs.run import Progress, RunSpec, execute
    from b2ner_cli.runs.settings import Task

    docs = [Document(id=str(i), text="word " * (i + 1)) for i in range(8)]
    timeline: list[tuple[str, int]] = []

    class Sink:
        count, path = 0, None

        def write(self, record: Record) -> None:
            timeline.append(("record", int(record.id)))
            self.count += 1

        def close(self, complete: bool) -> None:
            pass

    def events(event: object) -> None:
        if isinstance(event, Progress):
            timeline.append(("answered", event.stats.answered))

    task = Task.of(LABELS, settings=ExtractSettings(batch_size=2, window=8))
    recognizer = LLMRecognizer(ScriptedGenerator())  # type: ignore[arg-type]
    execute(RunSpec(ModelSpec(), task), documents=docs, sink=Sink(), recognizer=recognizer, events=events)
    first_record = timeline.index(("record", 0))
    # 8 documents in batches of 2: answered 2, 4, 6 before the last batch, which completes document 0.
    assert timeline[:first_record] == [("answered", 2), ("answered", 4), ("answered", 6), ("answered", 8)]
    assert [item for item in timeline if item[0] == "record"] == [("record", i) for i in range(8)]
