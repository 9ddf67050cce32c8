"""``b2ner finetune``: teach the model new labels with LoRA (or QLoRA), keeping the best adapter by dev F1."""

from __future__ import annotations

import json
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from .. import __version__
from ..labels import load_labels_file, parse_labels_arg
from .common import AdapterOption, ModelOption, OfflineOption, QuietOption, boundary, stderr_console

EPILOG = """[bold]Examples[/]

  b2ner finetune train.jsonl --dev dev.jsonl -o my-adapter

  b2ner finetune train.jsonl -o my-adapter -m ./llama-dir --lora-r 16 --epochs 3 --dry-run

  b2ner extract notes.txt --adapter my-adapter        # backbone and labels come from the adapter
"""


class Select(str, Enum):
    b2ner = "b2ner"
    strict = "strict"


class Quantize(str, Enum):
    auto = "auto"
    none = "none"
    q4 = "4bit"


@boundary
def finetune(
    train_file: Annotated[Path, typer.Argument(help="Training data: JSONL like eval's gold, or B2NERD JSON.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Directory for the adapter, metrics and checkpoints.")],
    dev_file: Annotated[Path | None, typer.Option("--dev", help="Dev data; the best epoch by dev F1 is kept.")] = None,
    labels: Annotated[str | None, typer.Option("--labels", "-l", help="Label set (default: from the data).")] = None,
    labels_file: Annotated[
        Path | None, typer.Option("--labels-file", help="Labels, or a JSON object label -> description.")
    ] = None,
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
    batch_size: Annotated[int, typer.Option("--batch-size", "-b", min=1, help="Global batch (examples).")] = 128,
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
    quantize: Annotated[
        Quantize, typer.Option("--quantize", help="auto: QLoRA (4-bit base) when bf16 does not fit.")
    ] = Quantize.auto,
    gradient_checkpointing: Annotated[bool, typer.Option("--gradient-checkpointing")] = False,
    seed: Annotated[int, typer.Option("--seed")] = 42,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the interrupted run in --output.")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace a non-empty --output.")] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the config, parameter counts, examples and tokens; train nothing.")
    ] = False,
    quiet: QuietOption = False,
) -> None:
    """Finetune a LoRA adapter on annotated data; keeps the best adapter by dev F1, usable by extract and eval."""
    from ..evaluation.readers import read_gold
    from ..training.data import epoch_samples, from_gold
    from ..training.setup import LoraSettings, parameter_counts, prepare
    from ..training.trainer import TrainSettings, check_examples, check_output, train

    err = stderr_console()
    note = (lambda line: None) if quiet else (lambda line: err.print(f"Note: {line}", markup=False))
    label_set = parse_labels_arg(labels) if labels else load_labels_file(labels_file) if labels_file else None
    descriptions = (
        dict(zip(label_set.names, label_set.descriptions, strict=True))
        if label_set and label_set.descriptions
        else None
    )
    gold = read_gold(train_file)
    examples = from_gold(gold, label_set.names if label_set else None, descriptions)
    check_examples(examples, str(train_file))
    _warn_labels(examples, note)
    dev = read_gold(dev_file) if dev_file else []
    if dev:
        known = {label for e in examples for label in e.labels}
        unknown = sorted({s.label for r in dev for s in r.spans} - known)
        if unknown:
            note(f"dev labels unknown to training: {', '.join(unknown)}")
    replay_examples = from_gold(read_gold(replay)) if replay else []
    settings = TrainSettings(
        epochs=epochs, lr=lr, batch_size=batch_size, micro_batch_size=micro_batch_size, warmup_ratio=warmup_ratio,
        max_length=max_length, seed=seed, label_dropout=label_dropout, replay_ratio=replay_ratio if replay else 0.0,
        select=select.value, eval_every=eval_every, gradient_checkpointing=gradient_checkpointing,
    )  # fmt: skip
    lora = LoraSettings(lora_r, lora_alpha, lora_dropout, target_modules.split(",") if target_modules else None)
    plan = check_output(output, overwrite, resume, [train_file, dev_file, replay, labels_file]) if not dry_run else None
    trainable, loaded, metadata = prepare(
        model, adapter, lora, no_adapter=no_adapter,
        load_options={"offline": offline, "quantize": quantize.value, "quiet": quiet}, note=note, seed=seed,
    )  # fmt: skip
    all_labels = list(dict.fromkeys(label for e in examples for label in e.labels))
    metadata.update(
        labels=all_labels,
        label_descriptions=descriptions,
        train=str(train_file),
        dev=str(dev_file) if dev_file else None,
        settings={**settings.__dict__, "lora": lora.__dict__},
    )
    if dry_run:
        samples = epoch_samples(examples, seed, 0, label_dropout)
        tokenizer = loaded.tokenizer
        lengths = [len(tokenizer.encode(s.instruction + s.target, add_special_tokens=False)) + 2 for s in samples]
        report: dict[str, Any] = {
            "b2ner_version": __version__, **metadata, "parameters": parameter_counts(trainable),
            "examples": len(examples), "dev_examples": len(dev), "replay_examples": len(replay_examples),
            "tokens_per_epoch": sum(lengths), "longest_example_tokens": max(lengths),
            "optimizer_steps_per_epoch": -(-len(examples) // batch_size),
        }  # fmt: skip
        typer.echo(json.dumps(report, ensure_ascii=False, indent=2, default=str))
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

        assert plan is not None
        try:
            result = train(trainable, loaded.tokenizer, examples, plan.work, settings, dev=dev, replay=replay_examples,
                           metadata=metadata, resume=resume, on_step=on_step, note=note)  # fmt: skip
            summary = {"best_epoch": result.best_epoch, "best_dev_metrics": result.best_metrics,
                       "skipped_too_long": result.skipped_too_long, "epochs": result.history}  # fmt: skip
            report_text = json.dumps(summary, ensure_ascii=False, indent=2)
            (plan.work / "report.json").write_text(report_text, encoding="utf-8")
            plan.publish()
        except BaseException:
            plan.discard()
            raise
    if result.skipped_too_long:
        note(f"{result.skipped_too_long} examples longer than --max-length {max_length} tokens were skipped.")
    if not quiet:
        best = result.best_metrics
        score = f"dev {select.value} F1 {100 * best[select.value]['f1']:.2f}" if best else "no dev set"
        err.print(f"Adapter saved to {output} (epoch {result.best_epoch}, {score}).", markup=False)


def _warn_labels(examples: Any, note: Any) -> None:
    from ..training.data import labels_without_examples

    missing = labels_without_examples(examples)
    if missing:
        note(f"labels with no training example: {', '.join(missing)}")
