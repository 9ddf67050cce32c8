"""A trained tagger behind the recognizer seam (kind ``tagger``): ``b2ner extract -m TAGGER_DIR``, ``eval -m``,
``Extractor.load(TAGGER_DIR)``.

Texts are cut into windows with the tagger's own subword limit, windows are sorted by length and packed under
``task.settings.batch_tokens``, and a record is yielded as soon as it and every record before it are complete.
Every entity carries ``score``, ``uncertainty`` (span heads; None for crf) and ``source="tagger"``.

:func:`check_tagger_options` refuses the LLM-only options (prompt, adapter and placement flags) before anything
loads; the run layer's ``check`` calls it for tagger runs, and ``extract`` calls it with the flags a ``RunSpec``
does not carry.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from ..errors import UsageError
from ..grounding import flatten
from ..io.readers import Document
from ..models.spec import ModelSpec
from ..prompts import LabelSet
from ..records import Entity, Record
from ..runs.settings import RunStats, Task
from .card import read_card
from .types import UNCERTAINTY

if TYPE_CHECKING:
    from ..retrieval.knn import KnnMixer
    from ..runs.recognizer import Note, ProgressHook
    from .tagger import Tagger

SOURCE = "tagger"


def check_tagger_options(
    model: ModelSpec,
    task: Task,
    *,
    map_labels: bool = False,
    dry_run: bool = False,
    examples: bool = False,
    data_parallel: str = "1",
) -> None:
    """Raise UsageError, naming the flag, for an option that only means something to the B2NER LLM."""
    where = f"`{model.model}` is a tagger"
    given: list[tuple[bool, str, str]] = [
        (model.adapter is not None, "--adapter", "a tagger has no adapter; drop --adapter (or unset B2NER_ADAPTER)"),
        (examples or bool(task.examples), "--examples", "a tagger is not prompted; drop --examples"),
        (task.settings.lang != "auto", "--lang", "a tagger is not prompted; drop --lang"),
        (
            task.labels is not None and task.labels.descriptions is not None,
            "--labels-file with descriptions",
            "a tagger selects labels by name; give a label list (or -l) instead",
        ),
        (map_labels, "--map-labels", "a tagger uses its own label names; drop --map-labels"),
        (model.merge is not None, "--merge", "a tagger has no adapter to merge; drop --merge/--no-merge"),
        (model.quantize != "auto", "--quantize", "a tagger runs in full precision; drop --quantize"),
        (model.dtype != "auto", "--dtype", "a tagger picks its dtype (bfloat16 autocast on GPU); drop --dtype"),
        (dry_run, "--dry-run", "a tagger has no prompt to preview; drop --dry-run"),
        (data_parallel not in ("1", "auto"), "--data-parallel", "a tagger runs in one process; drop --data-parallel"),
    ]
    for bad, flag, hint in given:
        if bad:
            raise UsageError(f"{flag} cannot be used with a tagger ({where}).", hint[0].upper() + hint[1:] + ".")
    if task.labels is not None and model.model is not None:
        known = tuple(read_card(model.model)["labels"])
        check_labels(task.labels.names, known)


def check_labels(names: Sequence[str], known: Sequence[str]) -> None:
    """UsageError listing the tagger's labels when ``names`` holds one it does not know."""
    unknown = [label for label in names if label not in known]
    if unknown:
        raise UsageError(
            f"This tagger does not know the label{'s' if len(unknown) > 1 else ''} "
            f"{', '.join(f'`{x}`' for x in unknown)}.",
            f"Its labels are: {', '.join(known)}.",
        )


class TaggerRecognizer:
    """A :class:`Tagger` as a recognizer. Holds the model only; labels, uncertainty method and budgets come in
    the :class:`Task`."""

    kind = "tagger"

    def __init__(self, tagger: Tagger, knn: KnnMixer | None = None, knn_store: str | None = None) -> None:
        self.tagger = tagger
        #: kNN-NER (``--knn STORE``): the datastore's neighbours mixed into the head's distribution.
        self.knn = knn
        self.knn_store = knn_store

    @classmethod
    def load(cls, spec: ModelSpec, *, quiet: bool = False, note: Note | None = None) -> TaggerRecognizer:
        """Load the tagger directory ``spec.model`` on ``spec.device``; imports torch."""
        from .tagger import Tagger

        if spec.model is None:
            raise UsageError("A tagger run needs the tagger directory.", "Pass -m TAGGER_DIR.")
        if spec.adapter is not None:  # eval -m and the Python API do not go through check_tagger_options
            raise UsageError(f"--adapter cannot be used with a tagger (`{spec.model}` is a tagger).",
                             "A tagger has no adapter; drop --adapter (or unset B2NER_ADAPTER).")  # fmt: skip
        if spec.knn is None:
            return cls(Tagger.load(spec.model, device=spec.device))
        from ..retrieval.knn import KnnMixer
        from ..retrieval.store import open_store

        store = open_store(spec.knn.store, tagger=spec.model)  # refuses a store made by another tagger
        mixer = KnnMixer(store.knn_index(), store.params(spec.knn))
        return cls(Tagger.load(spec.model, device=spec.device), mixer, str(store.path))

    def labels(self) -> LabelSet | None:
        return LabelSet(self.tagger.labels)

    def suggest_batch_tokens(self) -> int | None:
        return None

    def describe(self) -> dict[str, object]:
        described: dict[str, object] = {"recognizer": self.kind, **self.tagger.describe()}
        if self.knn is not None:
            described["knn"] = {"store": self.knn_store, **self.knn.params.to_dict(), "keys": len(self.knn.index),
                                "search": self.knn.index.backend}  # fmt: skip
        return described

    def recognize(
        self, window: Sequence[Document], task: Task, stats: RunStats, progress: ProgressHook | None = None
    ) -> Iterator[Record]:
        from .runtime import run_windows, token_batches
        from .tagger import _pad_id, check_knn_uncertainty
        from .words import Window, make_windows

        tagger, settings = self.tagger, task.settings
        docs = list(window)
        method = None if tagger.head == "crf" else settings.uncertainty
        if settings.uncertainty not in UNCERTAINTY:
            choices = ", ".join(UNCERTAINTY)
            raise UsageError(f"Unknown uncertainty method `{settings.uncertainty}`.", f"Choose one of: {choices}.")
        if settings.mc_samples < 1:
            raise UsageError(f"--mc-samples must be at least 1, not {settings.mc_samples}.")
        if self.knn is not None:
            check_knn_uncertainty(tagger.head, settings.uncertainty)
        # documents grouped by the label subset they ask for (usually one group): one kept-class set per group
        groups: dict[tuple[str, ...], list[int]] = {}
        for index, document in enumerate(docs):
            names = (document.labels or task.labels or LabelSet(tagger.labels)).names
            check_labels(names, tagger.labels)
            groups.setdefault(tuple(names), []).append(index)
        windows: list[Window] = []
        kept_of: list[Any] = []
        for names, members in groups.items():
            kept = None if set(names) == set(tagger.labels) else tagger.kept_classes(names)
            for w in make_windows(tagger.tokenizer, [docs[i].text for i in members], tagger.settings.max_length):
                w.doc = members[w.doc]
                windows.append(w)
                kept_of.append(kept)
        remaining = [0] * len(docs)
        for w in windows:
            remaining[w.doc] += 1
        chunks = list(remaining)
        found: list[list[Entity]] = [[] for _ in docs]
        pad = _pad_id(tagger.tokenizer)
        emitted = 0
        # batches never mix label subsets: each group is packed on its own, all sorted by length
        plan: list[list[int]] = []
        for kept_key in {id(k): k for k in kept_of}.values():
            members = [i for i, k in enumerate(kept_of) if k is kept_key]
            plan.extend([members[j] for j in batch] for batch in token_batches([windows[i] for i in members],
                                                                                 settings.batch_tokens))  # fmt: skip
        for batch in plan:
            part = [windows[i] for i in batch]
            decoded = run_windows(tagger.model, part, pad_id=pad, device=tagger.device, kept=kept_of[batch[0]],
                                  method=method, mc_samples=settings.mc_samples, batch_tokens=2**62,
                                  knn=self.knn)  # fmt: skip
            for w, candidates in zip(part, decoded, strict=True):
                text = docs[w.doc].text
                for first, last, cls, score, u in candidates:
                    start, end = w.words[first][0], w.words[last][1]
                    found[w.doc].append(Entity(start, end, text[start:end], tagger.labels[cls - 1], score=float(score),
                                               uncertainty=None if u is None else float(u), source=SOURCE))  # fmt: skip
                remaining[w.doc] -= 1
            stats.prompts_done += len(batch)
            if progress is not None:
                progress()
            while emitted < len(docs) and remaining[emitted] == 0:
                yield self._record(docs[emitted], found[emitted], chunks[emitted], settings.flat, stats)
                emitted += 1
        while emitted < len(docs):  # blank documents: no window
            yield self._record(docs[emitted], found[emitted], chunks[emitted], settings.flat, stats)
            emitted += 1

    @staticmethod
    def _record(document: Document, entities: list[Entity], chunks: int, flat: bool, stats: RunStats) -> Record:
        entities.sort(key=lambda e: (e.start, e.end, e.label))
        if flat:
            entities = flatten(entities)
        stats.documents += 1
        stats.chunks += chunks
        stats.entities += len(entities)
        return Record(document.id, document.text, entities, [], None)
