"""spaCy: b2ner as a pipeline component (factory ``"b2ner"``) and a run's records as a spaCy ``DocBin``.

Needs spaCy 3.7 or newer (``pip install 'b2ner[spacy]'``). Importing this module registers the factory and the
extension attributes; an installed b2ner also advertises the factory through the ``spacy_factories`` entry point,
so ``nlp.add_pipe("b2ner", config={...})`` works without importing anything. Importing it loads no model (nor
transformers): the component loads its model (through :meth:`b2ner_cli.Extractor.load`) when it is created.

How a record becomes annotations on a ``Doc`` (:func:`annotate`):

- Every entity goes through ``doc.char_span(start, end, label=..., alignment_mode=...)``. The default mode is
  ``"expand"``: an entity whose character offsets do not fall on token boundaries takes the whole tokens it touches
  (``"Ada"`` inside the token ``"Adam"`` becomes ``Adam``), so no entity b2ner found goes missing from the
  ``Doc`` (with ``"contract"`` it would shrink to the tokens wholly inside it, and vanish when there are none;
  ``"strict"`` keeps only entities on exact token boundaries). Mismatches are rare: b2ner grounds mentions as
  whole words, and the tokenizers split punctuation off; the usual one is punctuation a mention includes or leaves
  out (``Acme Inc`` against the token ``Inc.``), which ``"expand"`` keeps whole.
- ``doc.spans[spans_key]`` (default ``"b2ner"``) holds every aligned entity, overlapping or not, in b2ner's order
  (one span for one label on one token range).
- ``doc.ents`` replaces any earlier entities with a non-overlapping selection: greedily, the higher score first,
  then (without scores, or on a tie) the longer span, then the earlier one; an entity that overlaps one already
  chosen stays only in ``doc.spans``. Tokens outside the chosen entities are marked outside (``O``).
- ``doc._.b2ner_entities``: every entity exactly as b2ner gave it (the JSONL shape: ``start``, ``end``, ``text``,
  ``label``, ``score``, ``uncertainty``, ``source``) plus ``token_start``/``token_end``, the token range it
  aligned to (None when the alignment mode left it out). ``doc._.b2ner_unmatched``: the mentions b2ner could not
  find in the text (``text``, ``label``).
- ``span._.b2ner_score``, ``span._.b2ner_uncertainty`` and ``span._.b2ner_source`` read the entity behind a span
  of ``doc.ents`` or ``doc.spans`` (None when the recognizer gives none, or the span is not b2ner's).

Labels stay b2ner's (``person``, not ``PERSON``).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import spacy
from spacy.language import Language
from spacy.tokens import Doc, DocBin, Span
from spacy.util import minibatch

from ..api import Extractor
from ..engine.base import DEFAULT_MAX_NEW_TOKENS
from ..errors import UsageError
from ..io.output import AtomicFile
from ..labels import labels_from_json
from ..models.placement import DeviceChoice, DtypeChoice, Quantize
from ..prompts import LabelSet, is_han
from ..records import Entity, Record
from ..runs.settings import DEFAULT_BATCH_SIZE, DEFAULT_CHUNK_TOKENS, ExtractSettings, LangChoice

FACTORY = "b2ner"
DEFAULT_SPANS_KEY = "b2ner"
AlignmentMode = Literal["strict", "contract", "expand"]
ALIGNMENT_MODES: tuple[str, ...] = ("strict", "contract", "expand")
DEFAULT_ALIGNMENT: AlignmentMode = "expand"

logger = logging.getLogger(__name__)


# -- extension attributes ------------------------------------------------------------------------------------------


def _entity_of(span: Span) -> Mapping[str, Any] | None:
    """The b2ner entity a span was made from: same label, aligned to the same tokens."""
    for entity in span.doc._.b2ner_entities or ():
        if entity["label"] == span.label_ and (entity["token_start"], entity["token_end"]) == (span.start, span.end):
            return entity
    return None


def _entity_field(name: str) -> Any:
    def getter(span: Span) -> Any:
        entity = _entity_of(span)
        return None if entity is None else entity.get(name)

    return getter


def register_extensions() -> None:
    """Register the ``doc._.b2ner_*`` and ``span._.b2ner_*`` attributes (done on import; safe to repeat)."""
    for name in ("b2ner_entities", "b2ner_unmatched", "b2ner_id", "b2ner_raw"):
        Doc.set_extension(name, default=None, force=True)
    for name in ("score", "uncertainty", "source"):
        Span.set_extension(f"b2ner_{name}", getter=_entity_field(name), force=True)


register_extensions()


# -- records onto docs -----------------------------------------------------------------------------------------------


def check_alignment_mode(mode: str) -> None:
    if mode not in ALIGNMENT_MODES:
        raise UsageError(f"Unknown alignment mode `{mode}`.", f"Use one of: {', '.join(ALIGNMENT_MODES)}.")


def annotate(
    doc: Doc, record: Record, *, alignment_mode: str = DEFAULT_ALIGNMENT, spans_key: str = DEFAULT_SPANS_KEY
) -> Doc:
    """Put ``record``'s entities on ``doc`` (made from the same text), as the module docstring says."""
    check_alignment_mode(alignment_mode)
    if record.text != doc.text:
        raise ValueError(f"record {record.id!r} is not about this doc's text")
    entities: list[dict[str, object]] = []
    aligned: list[tuple[Entity, Span]] = []
    seen: set[tuple[int, int, str]] = set()
    for entity in record.entities:
        span = doc.char_span(entity.start, entity.end, label=entity.label, alignment_mode=alignment_mode)
        data = entity.to_dict()
        data["token_start"], data["token_end"] = (span.start, span.end) if span is not None else (None, None)
        entities.append(data)
        if span is not None and (span.start, span.end, entity.label) not in seen:
            seen.add((span.start, span.end, entity.label))
            aligned.append((entity, span))
    doc._.b2ner_entities = entities
    doc._.b2ner_unmatched = [item.to_dict() for item in record.unmatched]
    doc.spans[spans_key] = [span for _, span in aligned]
    doc.ents = non_overlapping(aligned)
    return doc


def non_overlapping(aligned: Sequence[tuple[Entity, Span]]) -> list[Span]:
    """The spans ``doc.ents`` can hold: greedily by score, then length in tokens, then position; in text order."""
    order = sorted(
        aligned,
        key=lambda pair: (pair[0].score is None, -(pair[0].score or 0.0), pair[1].start - pair[1].end, pair[1].start),
    )
    taken: set[int] = set()
    chosen: list[Span] = []
    for _, span in order:
        tokens = set(range(span.start, span.end))
        if tokens & taken:
            continue
        taken |= tokens
        chosen.append(span)
    return sorted(chosen, key=lambda span: span.start)


_OTHER_WORD = re.compile(r"[^\W_]+")


def text_language(text: str) -> Literal["en", "zh"]:
    """``zh`` when the text is mostly Chinese: at least as many Han characters as other words (runs of letters or
    digits), else ``en``. ``李明在Microsoft工作`` is zh (4 Han characters, 1 other word)."""
    han = sum(1 for char in text if is_han(char))
    if not han:
        return "en"
    others = len(_OTHER_WORD.findall("".join(" " if is_han(char) else char for char in text)))
    return "zh" if han >= others else "en"


# -- the pipeline component ------------------------------------------------------------------------------------------


class B2nerComponent:
    """Runs a loaded :class:`~b2ner_cli.Extractor` on docs and annotates them (see :func:`annotate`).

    ``pipe`` sends each batch of docs to the recognizer as one window (LLM prompts are then batched across docs);
    blank docs get empty annotations without reaching the model.
    """

    def __init__(
        self,
        extractor: Extractor,
        labels: Sequence[str] | Mapping[str, str] | LabelSet | None = None,
        *,
        name: str = FACTORY,
        alignment_mode: str = DEFAULT_ALIGNMENT,
        spans_key: str = DEFAULT_SPANS_KEY,
    ) -> None:
        check_alignment_mode(alignment_mode)
        self.name = name
        self.extractor = extractor
        if labels is None or isinstance(labels, LabelSet):
            self.label_set = labels or extractor.recognizer.labels()
        else:
            self.label_set = labels_from_json(dict(labels) if isinstance(labels, Mapping) else list(labels),
                                              where="labels")  # fmt: skip
        if self.label_set is None:
            raise UsageError(
                "The b2ner component needs labels for this model.",
                'Add them to its config, e.g. config={"labels": ["person", "organization", "location"]}.',
            )
        self.alignment_mode = alignment_mode
        self.spans_key = spans_key

    @property
    def labels(self) -> tuple[str, ...]:
        """The labels this component sets (spaCy lists them in ``nlp.pipe_labels`` and the pipeline's meta)."""
        return self.label_set.names if self.label_set is not None else ()

    def __call__(self, doc: Doc) -> Doc:
        return next(self.pipe([doc], batch_size=1))

    def pipe(self, stream: Iterable[Doc], batch_size: int = 128) -> Iterator[Doc]:
        for batch in minibatch(stream, size=batch_size):
            todo = [doc for doc in batch if doc.text.strip()]
            records = iter(self.extractor.extract([doc.text for doc in todo], self.label_set, window=max(1, len(todo))))
            for doc in batch:
                text = doc.text
                record = next(records) if text.strip() else Record("", text, [], [])
                yield annotate(doc, record, alignment_mode=self.alignment_mode, spans_key=self.spans_key)


@Language.factory(
    FACTORY,
    default_config={
        "model": None,
        "adapter": None,
        "labels": None,
        "revision": None,
        "adapter_revision": None,
        "no_adapter": False,
        "offline": False,
        "device": "auto",
        "dtype": "auto",
        "quantize": "auto",
        "trust_remote_code": False,
        "max_new_tokens": DEFAULT_MAX_NEW_TOKENS,
        "batch_size": DEFAULT_BATCH_SIZE,
        "max_chunk_tokens": DEFAULT_CHUNK_TOKENS,
        "lang": "auto",
        "min_score": None,
        "flat": False,
        "uncertainty": "confidence",
        "cascade": None,
        "cascade_adapter": None,
        "threshold": None,
        "cascade_mode": None,
        "knn": None,
        "alignment_mode": DEFAULT_ALIGNMENT,
        "spans_key": DEFAULT_SPANS_KEY,
    },
    assigns=["doc.ents", "doc.spans", "doc._.b2ner_entities", "doc._.b2ner_unmatched"],
)
def make_b2ner(
    nlp: Language,
    name: str,
    model: str | None,
    adapter: str | None,
    labels: list[str] | dict[str, str] | None,
    revision: str | None,
    adapter_revision: str | None,
    no_adapter: bool,
    offline: bool,
    device: DeviceChoice,
    dtype: DtypeChoice,
    quantize: Quantize,
    trust_remote_code: bool,
    max_new_tokens: int,
    batch_size: int,
    max_chunk_tokens: int,
    lang: LangChoice,
    min_score: float | None,
    flat: bool,
    uncertainty: str,
    cascade: str | None,
    cascade_adapter: str | None,
    threshold: float | None,
    cascade_mode: str | None,
    knn: str | None,
    alignment_mode: AlignmentMode,
    spans_key: str,
) -> B2nerComponent:
    """The ``"b2ner"`` factory: the options of ``b2ner extract``, loaded through :meth:`Extractor.load`."""
    check_alignment_mode(alignment_mode)
    settings = ExtractSettings(lang=lang, flat=flat, max_chunk_tokens=max_chunk_tokens, batch_size=batch_size,
                               min_score=min_score, uncertainty=uncertainty)  # fmt: skip
    extractor = Extractor.load(
        model, adapter, revision=revision, adapter_revision=adapter_revision, no_adapter=no_adapter, offline=offline,
        device=device, dtype=dtype, quantize=quantize, trust_remote_code=trust_remote_code,
        max_new_tokens=max_new_tokens, settings=settings, note=logger.info, cascade=cascade,
        cascade_adapter=cascade_adapter, threshold=threshold, cascade_mode=cascade_mode, knn=knn,
    )  # fmt: skip
    return B2nerComponent(extractor, labels, name=name, alignment_mode=alignment_mode, spans_key=spans_key)


# -- a run's records as a DocBin ---------------------------------------------------------------------------------------


class DocBinSink:
    """Records as a spaCy ``DocBin`` file (``extract --format spacy -o FILE.spacy``); a run's record sink.

    Each record is tokenized by a blank spaCy pipeline of its text's language (:func:`text_language`: ``zh`` splits
    into characters and needs no segmenter; else ``en``) and annotated as :func:`annotate` says, with
    ``doc._.b2ner_id`` (and ``doc._.b2ner_raw`` with ``keep_raw``). A DocBin is one compressed blob: the docs are
    kept in memory and the file is written at ``close`` (atomically; an incomplete run's docs go to FILE, or to
    FILE.partial beside an existing FILE, as for JSONL). Read it back with
    ``DocBin().from_disk(path).get_docs(nlp.vocab)`` (import :mod:`b2ner_cli.integrations.spacy` for the ``_``
    attributes).
    """

    def __init__(
        self,
        target: str | Path | None,
        *,
        keep_raw: bool = False,
        alignment_mode: str = DEFAULT_ALIGNMENT,
        spans_key: str = DEFAULT_SPANS_KEY,
    ) -> None:
        if target is None or str(target) == "-":
            raise UsageError("A spaCy DocBin is a binary file; it cannot go to stdout.", "Name a file: -o FILE.spacy.")
        check_alignment_mode(alignment_mode)
        self.path: Path | None = Path(target)
        self.keep_raw = keep_raw
        self.alignment_mode = alignment_mode
        self.spans_key = spans_key
        self._docs = DocBin(store_user_data=True)
        self._blank: dict[str, Language] = {}
        self._count = 0
        self._closed = False
        self._kept: Path | None = None

    @property
    def count(self) -> int:
        return self._count

    def make_doc(self, record: Record) -> Doc:
        lang = text_language(record.text)
        if lang not in self._blank:
            self._blank[lang] = spacy.blank(lang)
        doc = annotate(self._blank[lang].make_doc(record.text), record, alignment_mode=self.alignment_mode,
                       spans_key=self.spans_key)  # fmt: skip
        doc._.b2ner_id = record.id
        if self.keep_raw and record.raw is not None:
            doc._.b2ner_raw = record.raw
        return doc

    def write(self, record: Record) -> None:
        self._docs.add(self.make_doc(record))
        self._count += 1

    def close(self, complete: bool) -> Path | None:
        if self._closed:
            return self._kept
        self._closed = True
        assert self.path is not None
        file = AtomicFile(self.path)
        file.write_bytes(self._docs.to_bytes())
        if complete:
            file.commit()
            return None
        self._kept = file.abort()
        return self._kept
