"""The LinkNER cascade behind the recognizer seam (kind ``cascade``): a tagger first, then the B2NER LLM on the
documents holding an uncertain entity, with B2NER's own extraction prompt over the same labels, then the merge.

Torch-free here: the tagger and the LLM are recognizers loaded through the registry. The LLM loads on the first
routed document (a run that routes nothing never loads it). Counts and seconds go to ``RunStats.cascade``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

from ..errors import UsageError
from ..io.readers import Document
from ..prompts import LabelSet
from ..records import Record
from ..runs.settings import RunStats, Task
from .merge import merge, uncertain
from .spec import CascadeSpec, check_cascade

if TYPE_CHECKING:
    from ..models.spec import ModelSpec
    from ..runs.recognizer import LoadOptions, ProgressHook, Recognizer

#: the LLM-side counts a cascade adds to the run's (documents, chunks and entities are the cascade's own).
_LLM_COUNTS = ("unknown_labels", "malformed", "truncated", "runaways", "new_tokens", "prompts_done")


def load_llm(spec: ModelSpec, options: LoadOptions) -> Recognizer:
    """Load the cascade's LLM (through the registry: the B2NER LLM, or a registered kind)."""
    from ..runs.recognizer import load_recognizer

    return load_recognizer(spec, options)


class CascadeRecognizer:
    """A tagger recognizer plus a lazily loaded LLM recognizer; threshold and mode from a :class:`CascadeSpec`."""

    kind = "cascade"

    def __init__(
        self, tagger: Recognizer, cascade: CascadeSpec, llm: Callable[[], Recognizer] | Recognizer | None = None
    ) -> None:
        self.tagger = tagger
        self.cascade = cascade
        self._llm: Recognizer | None = None
        self._make_llm: Callable[[], Recognizer] | None = None
        if llm is not None and hasattr(llm, "recognize"):
            self._llm = llm  # type: ignore[assignment]
        elif llm is not None:
            self._make_llm = llm
        self._lock = threading.Lock()

    @classmethod
    def load(cls, spec: ModelSpec, options: LoadOptions) -> CascadeRecognizer:
        """Load the tagger ``spec.model`` now; check that ``spec.cascade.llm`` resolves (the usual model errors),
        and load it on the first routed document."""
        from ..runs.recognizer import load_recognizer, recognizer_kind

        cascade = spec.cascade
        if cascade is None:
            raise UsageError("A cascade needs an LLM.", "Pass --cascade LLM.")
        check_cascade(spec)
        if recognizer_kind(cascade.llm) == "llm":  # fail now on a wrong path or alias, not after the tagger ran
            from ..models.resolve import resolve_spec

            resolve_spec(cascade.llm, quiet=options.quiet)
        tagger = load_recognizer(replace(spec, cascade=None), options)
        return cls(tagger, cascade, lambda: load_llm(cascade.llm, options))

    @property
    def llm_loaded(self) -> bool:
        return self._llm is not None

    def llm(self) -> Recognizer:
        """The LLM recognizer, loaded on first use (once, whichever thread asks first)."""
        with self._lock:
            if self._llm is None:
                if self._make_llm is None:
                    raise UsageError("This cascade has no LLM to route to.", "Pass --cascade LLM.")
                self._llm = self._make_llm()
            return self._llm

    def labels(self) -> LabelSet | None:
        return self.tagger.labels()

    def suggest_batch_tokens(self) -> int | None:
        return None

    def describe(self) -> dict[str, object]:
        described = {**self.tagger.describe(), "recognizer": self.kind, "tagger_recognizer": self.tagger.kind}
        if self._llm is not None:
            described["llm"] = self._llm.describe()
        return described

    def recognize(
        self, window: Sequence[Document], task: Task, stats: RunStats, progress: ProgressHook | None = None
    ) -> Iterator[Record]:
        docs = list(window)
        threshold, counts = self.cascade.threshold, stats.cascade
        started = time.perf_counter()
        tagger_stats = RunStats()
        tagged = list(self.tagger.recognize(docs, task, tagger_stats, progress))
        counts["tagger_seconds"] = counts.get("tagger_seconds", 0.0) + time.perf_counter() - started
        sent = [i for i, record in enumerate(tagged) if uncertain(record, threshold)]
        answers: dict[int, Record] = {}
        if sent:
            started = time.perf_counter()
            llm_stats = RunStats()
            labels = task.labels or self.tagger.labels()
            llm_task = replace(task, labels=labels)
            llm_docs = [docs[i] for i in sent]
            for index, record in zip(sent, self.llm().recognize(llm_docs, llm_task, llm_stats, progress), strict=True):
                answers[index] = record
            counts["llm_seconds"] = counts.get("llm_seconds", 0.0) + time.perf_counter() - started
            for name in _LLM_COUNTS:
                setattr(stats, name, getattr(stats, name) + getattr(llm_stats, name))
            for label, n in llm_stats.unknown_label_names.items():
                stats.unknown_label_names[label] = stats.unknown_label_names.get(label, 0) + n
            stats.chunks += llm_stats.chunks
            if self.cascade.mode == "sentence":  # span mode keeps no LLM mention, found or not
                stats.unmatched += llm_stats.unmatched
        stats.prompts_done += tagger_stats.prompts_done
        stats.chunks += tagger_stats.chunks
        counts["documents"] = counts.get("documents", 0) + len(docs)
        counts["routed_documents"] = counts.get("routed_documents", 0) + len(sent)
        counts["spans"] = counts.get("spans", 0) + sum(len(r.entities) for r in tagged)
        counts["routed_spans"] = counts.get("routed_spans", 0) + sum(len(uncertain(tagged[i], threshold)) for i in sent)
        for index, record in enumerate(tagged):
            final = merge(record, answers.get(index), threshold, self.cascade.mode, task.settings.flat)
            stats.documents += 1
            stats.entities += len(final.entities)
            stats.answered += 1
            yield final
