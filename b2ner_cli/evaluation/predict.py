"""Running a recognizer over gold data: the predictions ``eval -m`` scores and the trainer's dev scoring uses.

One function, one set of defaults, through the run layer (so ``eval -m`` writes predictions and a manifest the same
way ``extract`` does).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path

from ..answers import answer_pieces, is_none_answer, label_key, split_piece
from ..io.readers import Document
from ..models.spec import ModelSpec
from ..records import Record
from ..retrieval.demos import DemoSpec
from ..runs.recognizer import Recognizer, recognizer_kind
from ..runs.run import Events, JsonlSink, Note, OutputSpec, RunSpec, check_demos, check_knn, execute
from ..runs.settings import ExtractSettings, Task
from .b2ner_metric import answer_from_pairs
from .records import GoldRecord, PredRecord, gold_documents


class _Collect:
    """A record sink that keeps predictions by id, and writes them on to another sink when given one; ``back`` maps
    each record's prompt labels back to its gold tags (``map_labels``), raw answer included."""

    def __init__(
        self, target: Path | None, keep_raw: bool = True, back: dict[str, dict[str, str]] | None = None
    ) -> None:
        self._back = back or {}
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
        back = self._back.get(record.id)
        if back:
            record = replace(record.relabeled(back), raw=relabel_answer(record.raw, back))
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
    map_labels: bool = False,
    demos: DemoSpec | None = None,
) -> dict[str, PredRecord]:
    """Extract on the gold texts, each with its gold label set; keep the raw answers (the b2ner metric scores them).

    ``output`` receives the predictions as JSONL (plus ``OUTPUT.meta.json``); ``recognizer`` skips loading. With
    ``map_labels``, raw tags (PER, B-ORG) are prompted as canonical names and the predictions (raw answers
    included) carry the gold's tags again, as scoring needs. ``demos``: each text's nearest training sentences
    become its few-shot examples (the LLM only). ``model.knn`` is checked as ``extract`` checks it.
    """
    spec = RunSpec(
        model=model,
        task=Task.of(None, (), settings or ExtractSettings()),
        output=OutputSpec(str(output) if output is not None else None, keep_raw=True),
        quiet=quiet,
        demos=demos,
    )
    if recognizer is None:
        if demos is not None:
            check_demos(spec, recognizer_kind(model))
        if model.knn is not None:
            check_knn(model, spec.task)
    documents = gold_documents(gold)
    back: dict[str, dict[str, str]] = {}
    if map_labels:
        documents, back = canonical_documents(documents, events)
    sink = _Collect(output, back=back)
    execute(spec, documents=documents, sink=sink, recognizer=recognizer, events=events)
    return sink.predictions


def canonical_documents(
    documents: Sequence[Document], events: Events | None = None
) -> tuple[list[Document], dict[str, dict[str, str]]]:
    """Documents prompted with canonical names for raw tags (one advice per distinct label set, shown as a note),
    and per document id the map from those names back to the tags."""
    from ..runs.labels import ResolvedLabels, advise

    resolved: dict[tuple[str, ...], ResolvedLabels] = {}
    out: list[Document] = []
    back: dict[str, dict[str, str]] = {}
    for document in documents:
        if document.labels is None:
            out.append(document)
            continue
        names = document.labels.names
        if names not in resolved:
            resolved[names] = advise(document.labels, "auto", True, lambda line: (events or _ignore)(Note(line)))
        labels = resolved[names]
        out.append(replace(document, labels=labels.labels))
        if labels.back:
            back[document.id] = labels.back
    return out, back


def relabel_answer(answer: str | None, back: Mapping[str, str]) -> str | None:
    """An answer with each piece's label renamed by ``back`` (matched as the parser matches labels); the rest kept."""
    if answer is None or is_none_answer(answer):
        return answer
    keys = {label_key(name): tag for name, tag in back.items()}
    pieces = []
    for start, end in answer_pieces(answer):
        piece = answer[start:end]
        split = split_piece(piece, list(back))
        tag = keys.get(label_key(split[0])) if split else None
        pieces.append(f"{tag}: {split[1]}" if split and tag else piece)
    return (" " if answer.startswith(" ") else "") + "; ".join(pieces)


def _ignore(_: object) -> None:
    pass
