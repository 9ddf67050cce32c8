"""The Python API, mirroring ``b2ner extract``.

>>> from b2ner_cli import Extractor
>>> ner = Extractor.load("path/to/model", adapter="path/to/adapter")          # doctest: +SKIP
>>> ner.extract(["Barack Obama visited Paris."], labels=["person", "location"])  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import replace
from typing import Any

from .engine.base import Generator
from .io.readers import Document
from .labels import labels_from_json
from .pipeline import ExtractSettings, Record, RunStats, extract
from .prompts import Example, LabelSet


class Extractor:
    """A loaded model plus the pipeline settings; reusable across calls."""

    def __init__(self, generator: Generator, settings: ExtractSettings | None = None) -> None:
        self.generator = generator
        self.settings = settings or ExtractSettings()

    @classmethod
    def load(
        cls,
        model: str | None = None,
        adapter: str | None = None,
        *,
        max_new_tokens: int | None = None,
        settings: ExtractSettings | None = None,
        **load_options: Any,
    ) -> Extractor:
        """Load a model (alias, Hub repo id or directory; default ``b2ner-7b``) and its adapter; imports torch.

        ``load_options`` are those of :func:`b2ner_cli.models.loading.load`: ``revision``, ``adapter_revision``,
        ``no_adapter``, ``offline``, ``device``, ``dtype``, ``quantize``, ``max_memory``, ``merge``,
        ``trust_remote_code``, ``quiet``, ``note``.
        """
        from .engine.base import DEFAULT_MAX_NEW_TOKENS
        from .engine.hf import HFGenerator
        from .models.loading import load

        loaded = load(model, adapter, **load_options)
        generator = HFGenerator(
            loaded.model,
            loaded.tokenizer,
            max_new_tokens=max_new_tokens or DEFAULT_MAX_NEW_TOKENS,
            info=loaded.info(),
        )
        return cls(generator, settings)

    def iter_extract(
        self,
        texts: Iterable[str | Document],
        labels: Sequence[str] | Mapping[str, str] | LabelSet | None = None,
        *,
        examples: Sequence[Example] = (),
        stats: RunStats | None = None,
        **overrides: object,
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
        settings = replace(self.settings, **overrides) if overrides else self.settings  # type: ignore[arg-type]
        return extract(documents, self.generator, label_set, examples, settings, stats)

    def extract(
        self,
        texts: Iterable[str | Document],
        labels: Sequence[str] | Mapping[str, str] | LabelSet | None = None,
        **kwargs: object,
    ) -> list[Record]:
        return list(self.iter_extract(texts, labels, **kwargs))  # type: ignore[arg-type]
