"""The service behind the HTTP routes, free of any web framework: a loaded recognizer, the run's task (default labels
and settings), the request limits and the batcher. The routes in :mod:`b2ner_cli.serve.http` only move bytes."""

from __future__ import annotations

from concurrent.futures import Future
from dataclasses import dataclass

from .. import __version__
from ..errors import UsageError
from ..models.spec import ModelSpec
from ..prompts import LabelSet
from ..records import Record
from ..runs.recognizer import LoadOptions, Recognizer, load_recognizer
from ..runs.run import Events, Loaded, Loading, Note, RunSpec, prepare
from ..runs.settings import Task
from .batcher import Batcher
from .requests import BAD_REQUEST, EXAMPLE, ExtractRequest, RequestError, parse_request
from .settings import ServeSettings

#: recognizers that know a fixed set of labels and select among them by name.
_TAGGER_KINDS = ("tagger", "cascade")


@dataclass(frozen=True)
class Answer:
    """What ``POST /extract`` answers: one record per text, as ``b2ner extract`` writes them."""

    records: list[Record]
    keep_raw: bool = False

    def to_dict(self) -> dict[str, object]:
        return {"records": [record.to_dict(self.keep_raw) for record in self.records]}


class Service:
    """Requests in, records out, through one :class:`Batcher` over ``recognizer``."""

    def __init__(self, recognizer: Recognizer, task: Task, settings: ServeSettings | None = None) -> None:
        self.recognizer = recognizer
        self.settings = settings or ServeSettings()
        if task.labels is None and recognizer.labels() is not None:
            task = Task(recognizer.labels(), task.examples, task.settings)
        self.task = task
        self.batcher = Batcher(recognizer, task, wait=self.settings.batch_wait_ms / 1000,
                               max_texts=self.settings.max_batch_texts)  # fmt: skip

    def parse(self, body: bytes) -> ExtractRequest:
        """A checked request (RequestError with a 4xx status otherwise), before it waits for a batch."""
        request = parse_request(body, self.settings)
        labels = request.labels
        if labels is None and self.task.labels is None:
            raise RequestError(BAD_REQUEST, "No labels given, and the model brings none.", EXAMPLE)
        if labels is not None and self.recognizer.kind in _TAGGER_KINDS:
            self._check_tagger_labels(labels)
        return request

    def _check_tagger_labels(self, labels: LabelSet) -> None:
        if labels.descriptions is not None:
            raise RequestError(BAD_REQUEST, "This model is a tagger: it selects labels by name, without descriptions.",
                               'Send "labels" as a list of names.')  # fmt: skip
        from ..taggers.recognizer import check_labels

        try:
            check_labels(labels.names, self.task.labels.names if self.task.labels is not None else ())
        except UsageError as error:
            raise RequestError(BAD_REQUEST, error.message, error.hint) from None

    def submit(self, request: ExtractRequest) -> Future[list[Record]]:
        """The request's records, once its batch has run."""
        return self.batcher.submit(request.documents)

    def answer(self, records: list[Record]) -> Answer:
        return Answer(records, self.settings.keep_raw)

    def info(self) -> dict[str, object]:
        """``GET /info``: the model and adapter with their revisions, the default labels, the limits."""
        described = self.recognizer.describe()
        labels = self.task.labels
        return {
            "b2ner_version": __version__,
            "recognizer": self.recognizer.kind,
            "model": described.get("backbone", described.get("tagger")),
            "adapter": described.get("adapter"),
            "revisions": {
                "model": described.get("backbone_revision", described.get("revision")),
                "adapter": described.get("adapter_revision"),
            },
            "labels": list(labels.names) if labels is not None else None,
            "label_descriptions": dict(zip(labels.names, labels.descriptions, strict=True))
            if labels is not None and labels.descriptions is not None
            else None,
            "limits": self.settings.limits(),
            "description": described,
        }

    def close(self) -> None:
        self.batcher.close()


def load_service(
    model: ModelSpec,
    task: Task,
    settings: ServeSettings | None = None,
    *,
    auto_batch_tokens: bool = False,
    quiet: bool = False,
    events: Events | None = None,
) -> Service:
    """Load the recognizer ``model`` names (imports torch) and build the service around it; ``auto_batch_tokens``
    takes the recognizer's batch token budget (from free GPU memory) as ``b2ner extract`` does."""
    emit = events or (lambda _: None)
    emit(Loading(model))
    recognizer = load_recognizer(model, LoadOptions(quiet, lambda line: emit(Note(line))))
    emit(Loaded(recognizer.describe()))
    task = prepare(RunSpec(model=model, task=task, auto_batch_tokens=auto_batch_tokens), recognizer)
    return Service(recognizer, task, settings)
