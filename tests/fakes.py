"""A fake recognizer for tests about something other than models (CLI rendering, the run layer, the seam itself).

It finds every occurrence of a few scripted mentions whose label the run asked for, with a fixed score, as a
plugin recognizer would. Registered through :func:`b2ner_cli.runs.recognizer.register_recognizer` by the
``fake_model`` fixture (``-m fake``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence

from b2ner_cli.io.readers import Document
from b2ner_cli.prompts import LabelSet
from b2ner_cli.records import Entity, Record
from b2ner_cli.runs.recognizer import ProgressHook
from b2ner_cli.runs.settings import RunStats, Task

SCRIPT = {"Ada": ("person", 0.9), "Paris": ("location", 0.75), "Acme": ("organization", 0.5)}


class FakeRecognizer:
    kind = "fake"

    def __init__(self) -> None:
        self.windows: list[int] = []

    def recognize(
        self, window: Sequence[Document], task: Task, stats: RunStats, progress: ProgressHook | None = None
    ) -> Iterator[Record]:
        self.windows.append(len(window))
        for document in window:
            labels = document.labels or task.labels
            wanted = set(labels.names) if labels else set()
            entities = []
            for mention, (label, score) in SCRIPT.items():
                at = document.text.find(mention)
                while at != -1 and label in wanted:
                    entities.append(Entity(at, at + len(mention), mention, label, score=score, source="fake"))
                    at = document.text.find(mention, at + 1)
            entities.sort(key=lambda e: (e.start, e.end))
            stats.documents += 1
            stats.chunks += 1
            stats.prompts_done += 1
            stats.entities += len(entities)
            if progress is not None:
                progress()
            yield Record(document.id, document.text, entities, [], None)

    def labels(self) -> LabelSet | None:
        return None

    def suggest_batch_tokens(self) -> int | None:
        return None

    def describe(self) -> dict[str, object]:
        return {"recognizer": self.kind, "backbone": "fake"}


class CrashOnceRecognizer(FakeRecognizer):
    """A fake whose process dies outright (no cleanup, as a lost worker) the first time it meets a document saying
    ``CRASH``; ``marker`` records that it did, so the retry of that window goes through."""

    def __init__(self, marker: str) -> None:
        super().__init__()
        self.marker = marker

    def recognize(
        self, window: Sequence[Document], task: Task, stats: RunStats, progress: ProgressHook | None = None
    ) -> Iterator[Record]:
        if any("CRASH" in d.text for d in window) and not os.path.exists(self.marker):
            with open(self.marker, "w", encoding="utf-8") as stream:
                stream.write(str(os.getpid()))
            os._exit(1)
        yield from super().recognize(window, task, stats, progress)
