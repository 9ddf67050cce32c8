"""A finetuning job from start to end: read and check the data, load the model, train, and report.

``b2ner finetune`` builds a :class:`FinetuneSpec` and calls :func:`finetune` (or :func:`dry_run_report`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import __version__
from ..io.writers import write_json_atomic
from ..models.spec import ModelSpec
from ..prompts import LabelSet
from ..wording import count
from .data import TrainExample
from .setup import LoraSettings
from .trainer import Progress, TrainResult, TrainSettings

Note = Callable[[str], None]


@dataclass(frozen=True)
class FinetuneSpec:
    train_file: Path
    output: Path
    model: ModelSpec = field(default_factory=ModelSpec)
    lora: LoraSettings = field(default_factory=LoraSettings)
    settings: TrainSettings = field(default_factory=TrainSettings)
    dev_file: Path | None = None
    replay: Path | None = None
    #: the label set to train (default: every label in the data), and the file it came from (an input to protect).
    labels: LabelSet | None = None
    labels_file: Path | None = None
    resume: bool = False
    overwrite: bool = False
    quiet: bool = False


@dataclass
class FinetuneData:
    examples: list[TrainExample]
    dev: list[Any]
    replay: list[TrainExample]
    descriptions: dict[str, str] | None


def read_data(spec: FinetuneSpec, note: Note) -> FinetuneData:
    """Training, dev and replay data, checked: an empty set or one without entities is refused."""
    from ..evaluation.readers import read_gold
    from .data import from_gold
    from .trainer import check_examples

    label_set = spec.labels
    descriptions = (
        dict(zip(label_set.names, label_set.descriptions, strict=True))
        if label_set and label_set.descriptions
        else None
    )
    examples = from_gold(read_gold(spec.train_file), label_set.names if label_set else None, descriptions)
    check_examples(examples, str(spec.train_file))
    _check_labels(examples, note)
    dev = read_gold(spec.dev_file) if spec.dev_file else []
    if dev:
        known = {label for e in examples for label in e.labels}
        unknown = sorted({s.label for r in dev for s in r.entities} - known)
        if unknown:
            note(f"dev labels unknown to training: {', '.join(unknown)}")
    replay = from_gold(read_gold(spec.replay)) if spec.replay else []
    return FinetuneData(examples, dev, replay, descriptions)


def _check_labels(examples: list[TrainExample], note: Note) -> None:
    from .data import labels_without_examples

    missing = labels_without_examples(examples)
    if missing:
        note(f"labels with no training example: {', '.join(missing)}")


def _metadata(spec: FinetuneSpec, data: FinetuneData, base: dict[str, Any]) -> dict[str, Any]:
    labels = list(dict.fromkeys(label for e in data.examples for label in e.labels))
    return {
        **base,
        "labels": labels,
        "label_descriptions": data.descriptions,
        "train": str(spec.train_file),
        "dev": str(spec.dev_file) if spec.dev_file else None,
        "settings": {**spec.settings.__dict__, "lora": spec.lora.__dict__},
    }


def dry_run_report(spec: FinetuneSpec, note: Note) -> dict[str, Any]:
    """What a run would do: config, parameter counts, examples and tokens per epoch; trains nothing."""
    from .data import epoch_samples
    from .setup import parameter_counts, trainable_model

    data = read_data(spec, note)
    trainable, loaded, base = trainable_model(spec.model, spec.lora, note=note, seed=spec.settings.seed,
                                              quiet=spec.quiet)  # fmt: skip
    samples = epoch_samples(data.examples, spec.settings.seed, 0, spec.settings.label_dropout)
    tokenizer = loaded.tokenizer
    lengths = [len(tokenizer.encode(s.instruction + s.target, add_special_tokens=False)) + 2 for s in samples]
    return {
        "b2ner_version": __version__, **_metadata(spec, data, base), "parameters": parameter_counts(trainable),
        "examples": len(data.examples), "dev_examples": len(data.dev), "replay_examples": len(data.replay),
        "tokens_per_epoch": sum(lengths), "longest_example_tokens": max(lengths),
        "optimizer_steps_per_epoch": -(-len(data.examples) // spec.settings.batch_size),
    }  # fmt: skip


def finetune(
    spec: FinetuneSpec,
    *,
    note: Note,
    on_step: Callable[[Progress], None] | None = None,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
) -> TrainResult:
    """Train; the best adapter by dev F1 (or the last epoch) ends in ``spec.output`` with ``report.json``."""
    from .setup import trainable_model
    from .trainer import check_output, train

    data = read_data(spec, note)
    inputs = [spec.train_file, spec.dev_file, spec.replay, spec.labels_file]
    # Nothing is deleted before training has produced a result: with --overwrite the run is built beside the old
    # output and swapped in at the end.
    plan = check_output(spec.output, spec.overwrite, spec.resume, inputs)
    try:
        trainable, loaded, base = trainable_model(spec.model, spec.lora, note=note, seed=spec.settings.seed,
                                                  quiet=spec.quiet)  # fmt: skip
        result = train(trainable, loaded.tokenizer, data.examples, plan.work, spec.settings, dev=data.dev,
                       replay=data.replay, metadata=_metadata(spec, data, base), resume=spec.resume,
                       on_step=on_step, on_epoch=on_epoch, note=note, run=run_record(spec))  # fmt: skip
        summary = {"best_epoch": result.best_epoch, "best_dev_metrics": result.best_metrics,
                   "skipped_too_long": result.skipped_too_long, "epochs": result.history}  # fmt: skip
        write_json_atomic(plan.work / "report.json", summary)
        plan.publish()
    except BaseException:
        plan.discard()
        raise
    if result.skipped_too_long:
        verb = "was" if result.skipped_too_long == 1 else "were"
        note(
            f"{count(result.skipped_too_long, 'example')} longer than --max-length {spec.settings.max_length} "
            f"tokens {verb} skipped."
        )
    return result


def _path(path: Path | None) -> str | None:
    return str(path.resolve()) if path is not None else None


def run_record(spec: FinetuneSpec) -> dict[str, Any]:
    """The job's settings as the checkpoint keeps them (files as absolute paths), for ``--resume`` to restore."""
    from dataclasses import asdict

    labels = spec.labels
    return {
        "model": spec.model.model, "adapter": spec.model.adapter, "no_adapter": spec.model.no_adapter,
        "quantize": spec.model.quantize, "lora": asdict(spec.lora),
        "settings": {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(spec.settings).items()},
        "dev_file": _path(spec.dev_file), "replay": _path(spec.replay), "labels_file": _path(spec.labels_file),
        "labels": list(labels.names) if labels else None,
        "label_descriptions": list(labels.descriptions) if labels and labels.descriptions else None,
    }  # fmt: skip


def saved_spec(spec: FinetuneSpec) -> FinetuneSpec | None:
    """``spec`` with the settings of the run whose checkpoint is in ``spec.output`` (None for a checkpoint from
    before they were kept). Only the files, the output and the reporting options come from ``spec``."""
    import json
    from dataclasses import replace

    from .setup import LoraSettings
    from .trainer import CHECKPOINT, TrainSettings

    try:
        state = json.loads((spec.output / CHECKPOINT / "state.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None  # training reports a missing or damaged checkpoint
    run = state.get("run") if isinstance(state, dict) else None
    if not isinstance(run, dict):
        return None
    settings: dict[str, Any] = {k: tuple(v) if k == "betas" else v for k, v in run["settings"].items()}
    names, descriptions = run.get("labels"), run.get("label_descriptions")
    return replace(
        spec,
        model=replace(spec.model, model=run["model"], adapter=run["adapter"], no_adapter=run["no_adapter"],
                      quantize=run["quantize"]),
        lora=LoraSettings(**run["lora"]),
        settings=TrainSettings(**settings),
        dev_file=Path(run["dev_file"]) if run.get("dev_file") else None,
        replay=Path(run["replay"]) if run.get("replay") else None,
        labels_file=Path(run["labels_file"]) if run.get("labels_file") else None,
        labels=LabelSet(tuple(names), tuple(descriptions) if descriptions else None) if names else None,
    )  # fmt: skip
