"""``b2ner finetune``: teach the model new labels with LoRA (or QLoRA), keeping the best adapter by dev F1."""

from __future__ import annotations

import json
from collections.abc import Callable
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from ..labels import load_labels_file, parse_labels_arg
from ..models.spec import ModelSpec
from .common import (
    AdapterOption,
    LabelsFileOption,
    LabelsOption,
    ModelOption,
    OfflineOption,
    Quantize,
    QuantizeOption,
    QuietOption,
    boundary,
    note_printer,
    stderr_console,
)

if TYPE_CHECKING:
    from ..training.job import FinetuneSpec

EPILOG = """[bold]Examples[/]

  b2ner finetune train.jsonl --dev dev.jsonl -o my-adapter

  b2ner finetune train.jsonl -o my-adapter -m ./llama-dir --lora-r 16 --epochs 3 --dry-run

  b2ner finetune train.jsonl -o my-adapter --train-batch-size 32 --micro-batch-size 4

  b2ner extract notes.txt --adapter my-adapter        # backbone and labels come from the adapter

  b2ner finetune llm-output.jsonl --head spanner -o my-tagger    # a fast local tagger instead of a LoRA
"""


class Head(str, Enum):
    spanner = "spanner"
    crf = "crf"
    pointer = "pointer"
    biaffine = "biaffine"


class Loss(str, Enum):
    ce = "ce"
    evidential = "evidential"


#: parameter name -> flag, refused with --head (they configure the LoRA path only).
LORA_ONLY = {
    "model": "--model", "adapter": "--adapter", "no_adapter": "--no-adapter", "lora_r": "--lora-r",
    "lora_alpha": "--lora-alpha", "lora_dropout": "--lora-dropout", "target_modules": "--target-modules",
    "quantize": "--quantize", "replay": "--replay", "replay_ratio": "--replay-ratio", "select": "--select",
    "micro_batch_size": "--micro-batch-size", "label_dropout": "--label-dropout", "eval_every": "--eval-every",
    "gradient_checkpointing": "--gradient-checkpointing", "old_batch_size": "--batch-size", "dry_run": "--dry-run",
}  # fmt: skip
#: parameter name -> the tagger setting it sets when given (LoRA defaults do not carry over).
TAGGER_SETTINGS = {"epochs": "epochs", "lr": "encoder_lr", "train_batch_size": "batch_size",
                   "warmup_ratio": "warmup_ratio", "max_length": "max_length", "seed": "seed"}  # fmt: skip


def given(ctx: typer.Context, name: str) -> bool:
    """Whether a parameter was given on the command line (not its default, nor an environment variable)."""
    source = ctx.get_parameter_source(name)  # typer may bring its own click: compare by name
    return getattr(source, "name", None) == "COMMANDLINE"


class Select(str, Enum):
    b2ner = "b2ner"
    strict = "strict"


@boundary
def finetune(
    ctx: typer.Context,
    train_file: Annotated[Path, typer.Argument(help="Training data: JSONL like eval's gold, or B2NERD JSON.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Directory for the adapter, metrics and checkpoints.")],
    dev_file: Annotated[Path | None, typer.Option("--dev", help="Dev data; the best epoch by dev F1 is kept.")] = None,
    labels: LabelsOption = None,
    labels_file: LabelsFileOption = None,
    model: ModelOption = None,
    adapter: AdapterOption = None,
    no_adapter: Annotated[
        bool, typer.Option("--no-adapter", help="Start from the backbone with a fresh LoRA.")
    ] = False,
    offline: OfflineOption = False,
    lora_r: Annotated[int, typer.Option("--lora-r", min=1, help="Rank of a fresh LoRA.")] = 32,
    lora_alpha: Annotated[int, typer.Option("--lora-alpha", min=1, help="Alpha of a fresh LoRA.")] = 64,
    lora_dropout: Annotated[float, typer.Option("--lora-dropout", min=0.0, max=1.0)] = 0.05,
    target_modules: Annotated[
        str | None, typer.Option("--target-modules", help="Comma-separated modules (default: q,k,v on Llama).")
    ] = None,
    epochs: Annotated[int, typer.Option("--epochs", min=1)] = 5,
    lr: Annotated[float, typer.Option("--lr", min=0.0)] = 3e-4,
    train_batch_size: Annotated[
        int, typer.Option("--train-batch-size", min=1, help="Global training batch (examples per optimizer step).")
    ] = 128,
    old_batch_size: Annotated[
        int | None, typer.Option("--batch-size", "-b", min=1, hidden=True, help="Old name of --train-batch-size.")
    ] = None,
    micro_batch_size: Annotated[
        int, typer.Option("--micro-batch-size", min=1, help="Examples per forward pass (gradient accumulation).")
    ] = 8,
    warmup_ratio: Annotated[float, typer.Option("--warmup-ratio", min=0.0, max=1.0)] = 0.03,
    max_length: Annotated[int, typer.Option("--max-length", min=16, help="Longer examples are skipped.")] = 4096,
    label_dropout: Annotated[float, typer.Option("--label-dropout", min=0.0, max=0.9)] = 0.1,
    replay: Annotated[
        Path | None, typer.Option("--replay", help="General-domain examples mixed in to limit forgetting.")
    ] = None,
    replay_ratio: Annotated[float, typer.Option("--replay-ratio", min=0.0, help="Replay examples per example.")] = 0.2,
    select: Annotated[Select, typer.Option("--select", help="Metric that picks the best epoch.")] = Select.b2ner,
    eval_every: Annotated[int, typer.Option("--eval-every", min=1, help="Evaluate on --dev every N epochs.")] = 1,
    quantize: QuantizeOption = Quantize.auto,
    gradient_checkpointing: Annotated[bool, typer.Option("--gradient-checkpointing")] = False,
    seed: Annotated[int, typer.Option("--seed")] = 42,
    resume: Annotated[
        bool,
        typer.Option(
            "--resume",
            help="Continue the interrupted run in --output with its own settings (dev set included); only --epochs "
            "may be raised, and other flags that differ are refused.",
        ),
    ] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace a non-empty --output.")] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the config, parameter counts, examples and tokens; train nothing.")
    ] = False,
    head: Annotated[
        Head | None,
        typer.Option("--head", help="Train a local tagger with this head on an encoder instead of a LoRA adapter."),
    ] = None,
    encoder: Annotated[
        str | None,
        typer.Option(
            "--encoder",
            help="With --head: an encoder alias (xlm-roberta-base, bert-base-cased, roberta-base, "
            "chinese-roberta-wwm-ext, deberta-v3-base), a Hub repo id or a directory. \\[default: xlm-roberta-base]",
        ),
    ] = None,
    revision: Annotated[
        str | None, typer.Option("--revision", help="With --head: the encoder's revision on the Hub.")
    ] = None,
    head_lr: Annotated[
        float, typer.Option("--head-lr", min=0.0, help="With --head: learning rate of the head (--lr: encoder).")
    ] = 1e-3,
    max_span_words: Annotated[
        int, typer.Option("--max-span-words", min=1, help="With --head spanner/biaffine: longest entity, in words.")
    ] = 8,
    loss: Annotated[Loss, typer.Option("--loss", help="With --head spanner: ce or evidential (E-NER).")] = Loss.ce,
    nested: Annotated[
        bool, typer.Option("--nested", help="With --head biaffine: entities may contain each other.")
    ] = False,
    patience: Annotated[
        int | None, typer.Option("--patience", min=1, help="With --head and --dev: stop after N epochs without gain.")
    ] = None,
    quiet: QuietOption = False,
) -> None:
    """Finetune a LoRA adapter on annotated data (or, with --head, train a local tagger); keeps the best by dev F1."""
    if head is not None:
        _finetune_tagger(
            ctx,
            head.value,
            train_file,
            output,
            dev_file,
            labels,
            labels_file,
            encoder,
            revision,
            head_lr,
            max_span_words,
            loss.value,
            nested,
            patience,
            offline,
            resume,
            overwrite,
            quiet,
        )
        return  # fmt: skip
    from ..training.job import FinetuneSpec, dry_run_report
    from ..training.job import finetune as run_finetune
    from ..training.setup import LoraSettings
    from ..training.trainer import TrainSettings

    err = stderr_console()
    note = note_printer(err, quiet)
    if old_batch_size is not None:
        note("--batch-size/-b is now --train-batch-size in finetune (-b is the generation batch everywhere).")
        train_batch_size = old_batch_size
    settings = TrainSettings(
        epochs=epochs, lr=lr, batch_size=train_batch_size, micro_batch_size=micro_batch_size,
        warmup_ratio=warmup_ratio, max_length=max_length, seed=seed, label_dropout=label_dropout,
        replay_ratio=replay_ratio if replay else 0.0, select=select.value, eval_every=eval_every,
        gradient_checkpointing=gradient_checkpointing,
    )  # fmt: skip
    spec = FinetuneSpec(
        train_file=train_file,
        output=output,
        model=ModelSpec(model, adapter, no_adapter=no_adapter, offline=offline, quantize=quantize.value),
        lora=LoraSettings(lora_r, lora_alpha, lora_dropout, target_modules.split(",") if target_modules else None),
        settings=settings,
        dev_file=dev_file,
        replay=replay,
        labels=parse_labels_arg(labels) if labels else load_labels_file(labels_file) if labels_file else None,
        labels_file=labels_file,
        resume=resume,
        overwrite=overwrite,
        quiet=quiet,
    )
    if resume:
        spec = _resumed(ctx, spec)
    if dry_run:
        typer.echo(json.dumps(dry_run_report(spec, note), ensure_ascii=False, indent=2, default=str))
        return
    progress = Progress(
        TextColumn("epoch {task.fields[epoch]}"), BarColumn(), TextColumn("{task.completed}/{task.total} steps"),
        TextColumn("loss {task.fields[loss]:.4f}"), TextColumn("lr {task.fields[lr]:.2e}"),
        TextColumn("{task.fields[tps]:.0f} tok/s"), TimeRemainingColumn(),
        console=err, disable=quiet or not err.is_terminal, transient=True,
    )  # fmt: skip
    with progress:
        task = progress.add_task("train", total=None, epoch=0, loss=0.0, lr=0.0, tps=0.0)

        def on_step(p: Any) -> None:
            progress.update(task, total=p.total_steps, completed=p.step, epoch=p.epoch, loss=p.loss, lr=p.lr,
                            tps=p.tokens_per_second)  # fmt: skip

        def on_epoch(record: dict[str, Any]) -> None:  # one plain line per epoch, also when stderr is a file
            if quiet:
                return
            dev = record.get("dev")
            select = spec.settings.select
            score = f", dev {select} F1 {100 * dev[select]['f1']:.2f}" if dev else ""
            progress.console.print(f"epoch {record['epoch']}/{spec.settings.epochs}: loss {record['loss']:.4f}{score}",
                                   markup=False)  # fmt: skip

        result = run_finetune(spec, note=note, on_step=on_step, on_epoch=on_epoch)
    if not quiet:
        best, chosen = result.best_metrics, spec.settings.select
        score = f"dev {chosen} F1 {100 * best[chosen]['f1']:.2f}" if best else "no dev set"
        err.print(f"Adapter saved to {output} (epoch {result.best_epoch}, {score}).", markup=False)


def _path(path: Path | None) -> str | None:
    return str(path.resolve()) if path is not None else None


def _labels(spec: FinetuneSpec) -> object:
    return (spec.labels.names, spec.labels.descriptions) if spec.labels else None


#: parameter name -> (flag, the setting it gives): what ``--resume`` restores from the checkpoint.
RESTORED: dict[str, tuple[str, Callable[[FinetuneSpec], object]]] = {
    "model": ("--model", lambda s: s.model.model), "adapter": ("--adapter", lambda s: s.model.adapter),
    "no_adapter": ("--no-adapter", lambda s: s.model.no_adapter),
    "quantize": ("--quantize", lambda s: s.model.quantize), "lora_r": ("--lora-r", lambda s: s.lora.r),
    "lora_alpha": ("--lora-alpha", lambda s: s.lora.alpha),
    "lora_dropout": ("--lora-dropout", lambda s: s.lora.dropout),
    "target_modules": ("--target-modules", lambda s: s.lora.target_modules),
    "lr": ("--lr", lambda s: s.settings.lr),
    "train_batch_size": ("--train-batch-size", lambda s: s.settings.batch_size),
    "old_batch_size": ("--batch-size", lambda s: s.settings.batch_size),
    "micro_batch_size": ("--micro-batch-size", lambda s: s.settings.micro_batch_size),
    "warmup_ratio": ("--warmup-ratio", lambda s: s.settings.warmup_ratio),
    "max_length": ("--max-length", lambda s: s.settings.max_length),
    "label_dropout": ("--label-dropout", lambda s: s.settings.label_dropout),
    "replay": ("--replay", lambda s: _path(s.replay)),
    "replay_ratio": ("--replay-ratio", lambda s: s.settings.replay_ratio),
    "select": ("--select", lambda s: s.settings.select),
    "eval_every": ("--eval-every", lambda s: s.settings.eval_every),
    "gradient_checkpointing": ("--gradient-checkpointing", lambda s: s.settings.gradient_checkpointing),
    "seed": ("--seed", lambda s: s.settings.seed), "dev_file": ("--dev", lambda s: _path(s.dev_file)),
    "labels": ("--labels", _labels), "labels_file": ("--labels-file", _labels),
}  # fmt: skip


def _resumed(ctx: typer.Context, spec: FinetuneSpec) -> FinetuneSpec:
    """The run's own settings from its checkpoint (``--epochs`` may raise the count); a flag given on the command
    line that says otherwise is refused, by name. A checkpoint from before settings were kept: ``spec`` as is."""
    from dataclasses import replace

    from ..errors import UsageError
    from ..training.job import saved_spec

    saved = saved_spec(spec)
    if saved is None:
        return spec
    for name, (flag, setting) in RESTORED.items():
        if given(ctx, name) and setting(spec) != setting(saved):
            shown = ctx.params[name].value if isinstance(ctx.params[name], Enum) else ctx.params[name]
            raise UsageError(
                f"{flag} {shown} conflicts with the run in {spec.output}, which was started with "
                f"{flag} {_shown(setting(saved))}.",
                f"Drop {flag}: --resume continues with the run's own settings (only --epochs may be raised); "
                "or start anew with --overwrite.",
            )
    epochs = saved.settings.epochs
    if given(ctx, "epochs"):
        if spec.settings.epochs < epochs:
            raise UsageError(
                f"--epochs {spec.settings.epochs} is below the {epochs} the run in {spec.output} was started with.",
                "Resume with the same or a higher --epochs.",
            )
        epochs = spec.settings.epochs
    return replace(saved, settings=replace(saved.settings, epochs=epochs))


def _shown(value: object) -> str:
    if value is None:
        return "(not given)"
    if isinstance(value, tuple) and value and isinstance(value[0], tuple):
        return ",".join(value[0])  # labels: their names
    if isinstance(value, list):
        return ",".join(map(str, value))
    return str(value)


def _finetune_tagger(
    ctx: typer.Context, head: str, train_file: Path, output: Path, dev_file: Path | None, labels: str | None,
    labels_file: Path | None, encoder: str | None, revision: str | None, head_lr: float, max_span_words: int,
    loss: str, nested: bool, patience: int | None, offline: bool, resume: bool, overwrite: bool, quiet: bool,
) -> None:  # fmt: skip
    from ..taggers.job import TaggerJobSpec, train_tagger_job
    from ..taggers.types import TaggerTrainSettings

    err = stderr_console()
    note = note_printer(err, quiet)
    params = ctx.params
    overrides = {setting: params[name] for name, setting in TAGGER_SETTINGS.items() if given(ctx, name)}
    settings = TaggerTrainSettings(head=head, head_lr=head_lr, max_span_words=max_span_words, loss=loss,
                                   nested=nested, patience=patience, **overrides)  # fmt: skip
    spec = TaggerJobSpec(
        train_file=train_file,
        output=output,
        settings=settings,
        encoder=encoder,
        revision=revision,
        dev_file=dev_file,
        labels=parse_labels_arg(labels) if labels else load_labels_file(labels_file) if labels_file else None,
        offline=offline,
        resume=resume,
        overwrite=overwrite,
        lora_flags=tuple(flag for name, flag in LORA_ONLY.items() if given(ctx, name)),
    )
    progress = Progress(
        TextColumn("epoch {task.fields[epoch]}"), BarColumn(), TextColumn("{task.completed}/{task.total} steps"),
        TextColumn("loss {task.fields[loss]:.4f}"), TimeRemainingColumn(),
        console=err, disable=quiet or not err.is_terminal, transient=True,
    )  # fmt: skip
    with progress:
        bar = progress.add_task("train", total=None, epoch=0, loss=0.0)

        def on_step(p: dict[str, Any]) -> None:
            progress.update(bar, total=p["total_steps"], completed=p["step"], epoch=p["epoch"], loss=p["loss"])

        def on_epoch(m: dict[str, Any]) -> None:
            if quiet:
                return
            dev = f"dev strict F1 {100 * m['dev_f1']:.2f}" if "dev_f1" in m else "no dev set"
            progress.console.print(f"epoch {m['epoch']}/{settings.epochs}: loss {m['loss']:.4f}, {dev}", markup=False)

        result = train_tagger_job(spec, note=note, on_step=on_step, on_epoch=on_epoch)
    if not quiet:
        score = f"dev strict F1 {100 * result.best_dev_f1:.2f}" if result.best_dev_f1 is not None else "no dev set"
        stop = ", stopped early" if result.stopped_early else ""
        err.print(f"Tagger saved to {output} (epoch {result.best_epoch}, {score}{stop}).", markup=False)
