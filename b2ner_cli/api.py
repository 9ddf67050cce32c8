"""The Python API, mirroring ``b2ner extract``.

>>> from b2ner_cli import Extractor
>>> ner = Extractor.load("path/to/model", adapter="path/to/adapter")          # doctest: +SKIP
>>> ner.extract(["Barack Obama visited Paris."], labels=["person", "location"])  # doctest: +SKIP

The LinkNER cascade: a tagger first, its uncertain entities checked by the B2NER LLM (loaded only when needed):

>>> ner = Extractor.load("path/to/tagger", cascade="b2ner-7b", threshold=0.4)  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import replace
from typing import Any

from .engine.base import DEFAULT_MAX_NEW_TOKENS, Generator
from .io.readers import Document
from .labels import labels_from_json
from .models.placement import DeviceChoice, DtypeChoice, Quantize
from .models.spec import ModelSpec, build_model_spec
from .prompts import Example, LabelSet
from .records import Record
from .retrieval.knn import KnnSpec
from .runs.recognizer import LoadOptions, Note, Recognizer, load_recognizer, stream
from .runs.settings import ExtractSettings, RunStats, Task


class Extractor:
    """A loaded recognizer (the B2NER LLM, or any registered kind) plus run settings; reusable across calls."""

    def __init__(self, recognizer: Recognizer | Generator, settings: ExtractSettings | None = None) -> None:
        if not hasattr(recognizer, "recognize"):  # a bare generator: the LLM path around it
            from .pipeline import LLMRecognizer

            recognizer = LLMRecognizer(recognizer)
        self.recognizer: Recognizer = recognizer  # type: ignore[assignment]
        self.settings = settings or ExtractSettings()

    @property
    def generator(self) -> Generator:
        """The generation engine of an LLM recognizer."""
        generator: Generator = getattr(self.recognizer, "generator")  # noqa: B009
        return generator

    @classmethod
    def load(
        cls,
        model: str | None = None,
        adapter: str | None = None,
        *,
        revision: str | None = None,
        adapter_revision: str | None = None,
        no_adapter: bool = False,
        offline: bool = False,
        device: DeviceChoice = "auto",
        dtype: DtypeChoice = "auto",
        quantize: Quantize = "auto",
        max_memory: Mapping[int | str, int] | None = None,
        merge: bool | None = None,
        trust_remote_code: bool = False,
        max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
        engine: str = "auto",
        settings: ExtractSettings | None = None,
        quiet: bool = False,
        note: Note | None = None,
        cascade: str | None = None,
        cascade_adapter: str | None = None,
        threshold: float | None = None,
        cascade_mode: str | None = None,
        knn: str | KnnSpec | None = None,
    ) -> Extractor:
        """Load a model (alias, Hub repo id or directory; default ``b2ner-7b``) and its adapter; imports torch.

        ``cascade``: ``model`` is a tagger and this LLM (with ``cascade_adapter``) checks the entities whose
        uncertainty exceeds ``threshold`` (default 0.4; ``settings.uncertainty`` says how it is computed), in
        ``cascade_mode`` ``"span"`` (default) or ``"sentence"``; the LLM loads when a first document is routed.

        ``knn``: ``model`` is a tagger and this store (``b2ner index``) is mixed into its predictions (kNN-NER);
        a :class:`~b2ner_cli.retrieval.knn.KnnSpec` overrides the store's k, lambda and temperature.
        """
        spec = build_model_spec(
            model, adapter, revision=revision, adapter_revision=adapter_revision, no_adapter=no_adapter,
            offline=offline, device=device, dtype=dtype, quantize=quantize, max_memory=max_memory, merge=merge,
            trust_remote_code=trust_remote_code, max_new_tokens=max_new_tokens, engine=engine, cascade=cascade,
            cascade_adapter=cascade_adapter, threshold=threshold, cascade_mode=cascade_mode,
            knn=KnnSpec(knn) if isinstance(knn, str) else knn,
        )  # fmt: skip
        if spec.knn is not None:
            from .runs.run import check_knn

            check_knn(spec, Task.of(None, (), settings or ExtractSettings()))
        return cls.from_spec(spec, settings, quiet=quiet, note=note)

    @classmethod
    def from_spec(
        cls, spec: ModelSpec, settings: ExtractSettings | None = None, *, quiet: bool = False, note: Note | None = None
    ) -> Extractor:
        return cls(load_recognizer(spec, LoadOptions(quiet, note)), settings)

    def iter_extract(
        self,
        texts: Iterable[str | Document],
        labels: Sequence[str] | Mapping[str, str] | LabelSet | None = None,
        *,
        examples: Sequence[Example] = (),
        stats: RunStats | None = None,
        **overrides: Any,
    ) -> Iterator[Record]:
        """Records in input order, streamed. ``labels`` may map label -> description."""
        label_set = (
            labels
            if isinstance(labels, LabelSet) or labels is None
            else labels_from_json(dict(labels) if isinstance(labels, Mapping) else list(labels), where="labels")
        )
        documents = (
            t if isinstance(t, Document) else Document(id=str(i), text=t, source=f"text {i}")
            for i, t in enumerate(texts)
        )
        settings = replace(self.settings, **overrides) if overrides else self.settings
        task = Task.of(label_set or self.recognizer.labels(), examples, settings)
        return stream(self.recognizer, documents, task, stats if stats is not None else RunStats())

    def extract(
        self,
        texts: Iterable[str | Document],
        labels: Sequence[str] | Mapping[str, str] | LabelSet | None = None,
        **kwargs: Any,
    ) -> list[Record]:
        return list(self.iter_extract(texts, labels, **kwargs))
