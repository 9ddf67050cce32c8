"""Which labels a run prompts with: flags, a labels file, a public dataset's set, or the adapter's own; raw dataset
tags (PER, B-ORG) flagged, or mapped to canonical names and back with ``map_labels``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import UsageError
from ..labels import load_labels_file, parse_labels_arg
from ..models.spec import ModelSpec
from ..prompts import LabelSet
from .settings import LangChoice

Note = Callable[[str], None]


@dataclass(frozen=True)
class LabelSources:
    """The label options of a command, as given (at most one of ``labels``, ``labels_file``, ``from_dataset``)."""

    labels: str | None = None
    labels_file: Path | None = None
    from_dataset: str | None = None
    map_labels: bool = False


@dataclass(frozen=True)
class ResolvedLabels:
    labels: LabelSet | None
    #: prompt label -> the user's own label, written back into the output (``map_labels``).
    back: dict[str, str] = field(default_factory=dict)


def resolve_labels(
    sources: LabelSources,
    lang: LangChoice,
    *,
    adapter: str | None = None,
    model: ModelSpec | None = None,
    note: Note | None = None,
) -> ResolvedLabels:
    """The run's default label set (None when records must bring their own).

    Without a label option, the labels of a finetuned adapter: ``adapter`` (a directory), else the adapter
    ``model`` runs with (``--adapter``, or its alias's), when it is on disk.
    """
    given = [x for x in (sources.labels, sources.labels_file, sources.from_dataset) if x is not None]
    if len(given) > 1:
        raise UsageError("Give only one of --labels, --labels-file and --labels-from-dataset.")
    if sources.from_dataset is not None:
        return ResolvedLabels(dataset_label_set(sources.from_dataset, lang))
    if sources.labels is not None:
        label_set = parse_labels_arg(sources.labels)
    elif sources.labels_file is not None:
        label_set = load_labels_file(sources.labels_file)
    elif adapter is not None:  # an adapter was trained on its labels as they are: no advice about raw tags
        return ResolvedLabels(adapter_labels(adapter))
    else:
        return ResolvedLabels(model_labels(model) if model is not None else None)
    return advise(label_set, lang, sources.map_labels, note or (lambda _: None))


def dataset_label_set(name: str, lang: LangChoice) -> LabelSet:
    from ..taxonomy.data import load
    from ..taxonomy.suggest import dataset_labels

    names = dataset_labels(name, None if lang == "auto" else lang)
    if names is None:
        known = ", ".join(sorted(load().datasets))
        raise UsageError(f'No dataset "{name}" in the taxonomy.', f"Known datasets: {known}.")
    return LabelSet(tuple(names))


def adapter_labels(adapter: str) -> LabelSet | None:
    """The labels an adapter from ``b2ner finetune`` was trained on (with their descriptions, if any)."""
    from ..models.resolve import adapter_metadata

    meta = adapter_metadata(adapter)
    names = meta.get("labels") if meta else None
    if not isinstance(names, list) or not names:
        return None
    descriptions = meta.get("label_descriptions") if meta else None
    if isinstance(descriptions, dict) and all(isinstance(descriptions.get(n), str) for n in names):
        return LabelSet(tuple(names), tuple(descriptions[n] for n in names))
    return LabelSet(tuple(names))


def model_labels(model: ModelSpec) -> LabelSet | None:
    """The labels the run's adapter (``--adapter``, or the alias's) was finetuned on, if it is on disk."""
    from ..models.resolve import local_adapter

    if model.kind not in ("auto", "llm"):
        return None
    adapter = local_adapter(
        model.model, model.adapter, adapter_revision=model.adapter_revision, no_adapter=model.no_adapter
    )
    return adapter_labels(adapter) if adapter is not None else None


def advise(label_set: LabelSet, lang: LangChoice, map_labels: bool, note: Note) -> ResolvedLabels:
    """Flag raw tags (PER, B-ORG) with the canonical names B2NER works better with; apply them with ``map_labels``."""
    if label_set.descriptions is not None:
        return ResolvedLabels(label_set)
    from ..pipeline import resolve_lang
    from ..taxonomy.suggest import advise as taxonomy_advise

    language = resolve_lang(lang, label_set)
    advice = taxonomy_advise(label_set.names, language)
    if not advice.flagged:
        return ResolvedLabels(label_set)
    pairs = ", ".join(f"{s.raw} -> {s.name(language)}" for s in advice.flagged)
    if map_labels:
        note(f"prompting with canonical names ({pairs}); your labels are kept in the output.")
        return ResolvedLabels(LabelSet(tuple(advice.names)), advice.back)
    note(
        f"some labels look like raw dataset tags ({pairs}). B2NER works better with descriptive names: "
        f'--labels "{",".join(advice.names)}", or add --map-labels to prompt with them and keep your tags '
        "in the output."
    )
    return ResolvedLabels(label_set)
