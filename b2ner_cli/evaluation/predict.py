"""Running a recognizer over gold data: the predictions ``eval -m`` scores and the trainer's dev scoring uses.

One function, one set of defaults, through the run layer (so ``eval -m`` writes predictions and a manifest the same
way ``extract`` does).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ..models.spec import ModelSpec
from ..records import Record
from ..runs.recognizer import Recognizer
from ..runs.run import Events, JsonlSink, OutputSpec, RunSpec, execute
from ..runs.settings import ExtractSettings, Task
from .b2ner_metric import answer_from_pairs
from .records import GoldRecord, PredRecord, gold_documents


class _Collect:
    """A record sink that keeps predictions by id, and writes them on to another sink when given one."""

    def __init__(self, target: Path | None, keep_raw: bool = True) -> None:
        self._target = target
        self._keep_raw = keep_raw
        self._inner: JsonlSink | None = None  # opened on the first record: a failed load leaves no file behind
        self.path = target
        self.count = 0
        self.predictions: dict[str, PredRecord] = {}
        self._source = str(target) if target is not None else "predictions"

    def _open(self) -> JsonlSink | None:
        if self._inner is None and self._target is not None:
            self._inner = JsonlSink(self._target, self._keep_raw)
        return self._inner

    def write(self, record: Record) -> None:
        inner = self._open()
        if inner is not None:
            inner.write(record)
        if record.raw is not None:
            answer = record.raw
        else:  # a recognizer that does not generate text: the answer its entities make
            pairs = [(e.label, e.text) for e in record.entities] + [(u.label, u.text) for u in record.unmatched]
            answer = answer_from_pairs(dict.fromkeys(pairs))
        self.predictions[record.id] = PredRecord(
            record.id,
            tuple(record.entities),
            answer,
            len(record.unmatched),
            self._source,
            record.text,
            record.raw is not None,
        )
        self.count += 1

    def close(self, complete: bool) -> Path | None:
        inner = self._open() if complete else self._inner  # a complete run with no record writes an empty file
        return inner.close(complete) if inner is not None else None


def predict_gold(
    gold: Sequence[GoldRecord],
    model: ModelSpec,
    *,
    recognizer: Recognizer | None = None,
    settings: ExtractSettings | None = None,
    output: Path | None = None,
    events: Events | None = None,
    quiet: bool = False,
) -> dict[str, PredRecord]:
    """Extract on the gold texts, each with its gold label set; keep the raw answers (the b2ner metric scores them).

    ``output`` receives the predictions as JSONL (plus ``OUTPUT.meta.json``); ``recognizer`` skips loading.
    """
    spec = RunSpec(
        model=model,
        task=Task.of(None, (), settings or ExtractSettings()),
        output=OutputSpec(str(output) if output is not None else None, keep_raw=True),
        quiet=quiet,
    )
    sink = _Collect(output)
    execute(spec, documents=gold_documents(gold), sink=sink, recognizer=recognizer, events=events)
    return sink.predictions
