"""Nearest-neighbour demonstrations: the training sentences most similar to a document (cosine of sentence vectors
made with the store's tagger encoder) become its few-shot examples in the B2NER prompt."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from itertools import islice
from typing import TYPE_CHECKING

from ..errors import UsageError
from ..prompts import Example

if TYPE_CHECKING:
    from ..io.readers import Document
    from ..taggers.tagger import Tagger
    from .store import Store

DEFAULT_SHOTS = 3


@dataclass(frozen=True)
class DemoSpec:
    """``--demos STORE --shots N``."""

    store: str
    shots: int = DEFAULT_SHOTS

    def __post_init__(self) -> None:
        if self.shots < 1:
            raise UsageError(f"--shots must be at least 1, not {self.shots}.")

    def to_dict(self) -> dict[str, object]:
        return {"store": self.store, "shots": self.shots}


class Demonstrations:
    """A store and the tagger encoder that made it, ready to find each text's nearest training sentences."""

    def __init__(self, store: Store, tagger: Tagger, shots: int = DEFAULT_SHOTS) -> None:
        self.store = store
        self.tagger = tagger
        self.shots = shots

    @classmethod
    def load(cls, spec: DemoSpec, *, device: str = "auto") -> Demonstrations:
        from ..taggers.tagger import Tagger
        from .store import open_store

        store = open_store(spec.store)
        return cls(store, Tagger.load(store.tagger_path, device=device), spec.shots)

    def examples(self, texts: list[str]) -> list[tuple[Example, ...]]:
        """The ``shots`` nearest training sentences of each text, nearest first, as few-shot examples."""
        from .store import sentence_vectors

        if not texts:
            return []
        _, indices = self.store.search(sentence_vectors(self.tagger, texts), self.shots)
        sentences = self.store.sentences
        return [tuple(Example(sentences[i].text, sentences[i].answer) for i in row) for row in indices.tolist()]

    def attach(self, documents: Iterable[Document], batch: int = 32) -> Iterator[Document]:
        """``documents`` with their ``examples`` set, in order (computed ``batch`` documents at a time)."""
        source = iter(documents)
        while chunk := list(islice(source, batch)):
            for document, found in zip(chunk, self.examples([d.text for d in chunk]), strict=True):
                yield replace(document, examples=found)
