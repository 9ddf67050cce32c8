"""The recognizer seam: a window of documents in, records out (entities with optional score, uncertainty, source).

The B2NER LLM path (:class:`b2ner_cli.pipeline.LLMRecognizer`) is the built-in implementation; others register a
factory with :func:`register_recognizer` and are chosen by the :class:`ModelSpec` they match (its ``kind``, or the
model it names). Tests register a fake the same way, as a plugin would.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import islice
from typing import Protocol

from ..errors import UsageError
from ..io.readers import Document
from ..models.spec import ModelSpec
from ..prompts import LabelSet
from ..records import Record
from .settings import RunStats, Task

Note = Callable[[str], None]
#: called whenever some work finished (a batch of prompts), so that progress can move inside a window.
ProgressHook = Callable[[], None]


class Recognizer(Protocol):
    """Turns documents into records. Holds its model, never per-run state: one instance may serve several runs
    (or threads) at once; everything a run asks for comes in the :class:`Task`."""

    #: "llm", "tagger", ... (recorded in the run manifest).
    kind: str

    def recognize(
        self, window: Sequence[Document], task: Task, stats: RunStats, progress: ProgressHook | None = None
    ) -> Iterator[Record]:
        """One record per document of ``window``, in the window's order, each yielded as soon as it is complete."""
        ...

    def labels(self) -> LabelSet | None:
        """The label set the model brings (a tagger's labels), used when the run gives none."""
        ...

    def suggest_batch_tokens(self) -> int | None:
        """A batch token budget for this device (from free GPU memory), or None to keep the default."""
        ...

    def describe(self) -> dict[str, object]:
        """How results were made: model, adapter, revisions, dtype, device, settings."""
        ...


def stream(
    recognizer: Recognizer,
    documents: Iterable[Document],
    task: Task,
    stats: RunStats,
    progress: ProgressHook | None = None,
) -> Iterator[Record]:
    """Records for ``documents`` in input order, window by window (``task.settings.window`` documents at a time)."""
    iterator = iter(documents)
    while window := list(islice(iterator, task.settings.window)):
        yield from recognizer.recognize(window, task, stats, progress)


@dataclass(frozen=True)
class LoadOptions:
    """How loading reports: ``note`` receives stderr-worthy lines; ``quiet`` hides download progress."""

    quiet: bool = False
    note: Note | None = None


Factory = Callable[[ModelSpec, LoadOptions], Recognizer]
Matcher = Callable[[ModelSpec], bool]

_REGISTRY: dict[str, tuple[Factory, Matcher | None]] = {}


def register_recognizer(kind: str, factory: Factory, matches: Matcher | None = None) -> None:
    """Make ``kind`` loadable: chosen when ``spec.kind == kind``, or (with ``kind="auto"``) when ``matches(spec)``.

    Registering a kind again replaces it; the most recently registered matcher is tried first.
    """
    _REGISTRY.pop(kind, None)
    _REGISTRY[kind] = (factory, matches)


def unregister_recognizer(kind: str) -> None:
    _REGISTRY.pop(kind, None)


def recognizer_kind(spec: ModelSpec) -> str:
    """The kind a spec loads as: ``cascade`` when it names a cascade LLM, its own ``kind``, else the first
    registered matcher that claims it, else ``llm``."""
    if spec.cascade is not None and "cascade" in _REGISTRY:
        return "cascade"
    if spec.kind != "auto":
        if spec.kind not in _REGISTRY:
            known = ", ".join(sorted(_REGISTRY))
            raise UsageError(f"Unknown model kind `{spec.kind}`.", f"Known kinds: {known}.")
        return spec.kind
    for kind, (_, matches) in reversed(_REGISTRY.items()):
        if matches is not None and matches(spec):
            return kind
    return "llm"


@dataclass(frozen=True)
class Registration:
    """How this process loads a kind of recognizer: what another process (a Ray actor) registers to load a spec
    as this one would. It travels as Ray ships any function, so a plugin's module must be importable there."""

    kind: str
    factory: Factory
    matches: Matcher | None

    def register(self) -> None:
        register_recognizer(self.kind, self.factory, self.matches)


def registration(spec: ModelSpec) -> Registration:
    """The registration that loads ``spec`` in this process."""
    kind = recognizer_kind(spec)
    factory, matches = _REGISTRY[kind]
    return Registration(kind, factory, matches)


#: ``report(spec, task, stats)``: what a kind adds to the run manifest once the run is over (from the spec and the
#: run's counts, so that it works where the recognizer ran in other processes too).
RunReport = Callable[[ModelSpec, Task, RunStats], dict[str, object]]
_REPORTS: dict[str, RunReport] = {}


def register_run_report(kind: str, report: RunReport) -> None:
    """Give ``kind`` a part of the run manifest, written when the run ends (the cascade: its routing counts)."""
    _REPORTS[kind] = report


def run_report(spec: ModelSpec, task: Task, stats: RunStats) -> dict[str, object]:
    """The manifest part the kind of ``spec`` adds at the end of a run ({} for most kinds)."""
    report = _REPORTS.get(recognizer_kind(spec))
    return report(spec, task, stats) if report is not None else {}


def load_recognizer(spec: ModelSpec, options: LoadOptions | None = None) -> Recognizer:
    """Load the recognizer a spec names (imports torch through the factory)."""
    factory, _ = _REGISTRY[recognizer_kind(spec)]
    return factory(spec, options or LoadOptions())


def _load_llm(spec: ModelSpec, options: LoadOptions) -> Recognizer:
    from ..pipeline import LLMRecognizer

    return LLMRecognizer.load(spec, quiet=options.quiet, note=options.note)


def _load_tagger(spec: ModelSpec, options: LoadOptions) -> Recognizer:
    from ..taggers.recognizer import TaggerRecognizer

    return TaggerRecognizer.load(spec, quiet=options.quiet, note=options.note)


def _load_cascade(spec: ModelSpec, options: LoadOptions) -> Recognizer:
    from ..cascade.recognizer import CascadeRecognizer

    return CascadeRecognizer.load(spec, options)


def _cascade_report(spec: ModelSpec, task: Task, stats: RunStats) -> dict[str, object]:
    from ..cascade.spec import cascade_block

    assert spec.cascade is not None
    return {"cascade": cascade_block(spec.cascade, task.settings.uncertainty, stats.cascade)}


def _is_tagger(spec: ModelSpec) -> bool:
    from ..taggers.card import is_tagger_dir

    return spec.model is not None and is_tagger_dir(spec.model)


register_recognizer("llm", _load_llm)
register_recognizer("tagger", _load_tagger, matches=_is_tagger)
register_recognizer("cascade", _load_cascade)
register_run_report("cascade", _cascade_report)
