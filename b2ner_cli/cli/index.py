"""``b2ner index``: a datastore of a tagger's view of the training data: kNN-NER keys (``extract --knn``) and
sentence vectors (``extract --demos``); ``--tune DEV`` picks the kNN settings.

A thin command: flags -> :func:`b2ner_cli.retrieval.store.build_store` -> a summary.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from ..retrieval.knn import DEFAULT_NEGATIVE_RATE
from ..wording import count
from .common import Device, DeviceOption, JsonOption, QuietOption, boundary, stderr_console

EPILOG = """[bold]Examples[/]

  b2ner index train.jsonl -m ./my-tagger -o ./train-store

  b2ner index train.conll -m ./my-tagger -o ./train-store --tune dev.conll --overwrite --json

  b2ner extract test.txt -m ./my-tagger --knn ./train-store -o test.jsonl

  b2ner extract test.txt -m b2ner-7b -l "person,location" --demos ./train-store --shots 3
"""


@boundary
def index(
    train: Annotated[
        Path,
        typer.Argument(help="Training data with gold entities: JSONL, B2NERD JSON or CoNLL (as `finetune` reads)."),
    ],
    model: Annotated[
        Path, typer.Option("--model", "-m", help="The tagger directory whose encoder makes the sentence vectors.")
    ],
    output: Annotated[Path, typer.Option("--output", "-o", help="The store directory to write.")],
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace a non-empty --output.")] = False,
    tune: Annotated[
        Path | None,
        typer.Option("--tune", help="A dev file with gold entities: grid-search kNN k, lambda and temperature on it "
                     "and store the best as the store's defaults."),
    ] = None,
    negative_rate: Annotated[
        float,
        typer.Option("--negative-rate", min=0.0, max=1.0,
                     help="Span heads: share of non-entity spans stored as kNN keys (all entity spans are)."),
    ] = DEFAULT_NEGATIVE_RATE,
    seed: Annotated[int, typer.Option("--seed", help="Seed for sampling the non-entity spans.")] = 0,
    batch_size: Annotated[int, typer.Option("--batch-size", "-b", min=1, help="Sentences per encoder batch.")] = 32,
    device: DeviceOption = Device.auto,
    json_: JsonOption = False,
    quiet: QuietOption = False,
) -> None:
    """Index training data with a tagger: kNN-NER keys (extract --knn) and sentence vectors (extract --demos)."""
    from ..retrieval.store import build_store

    err = stderr_console()
    progress = Progress(TextColumn("indexing"), BarColumn(), MofNCompleteColumn(), console=err,
                        disable=quiet or not err.is_terminal, transient=True)  # fmt: skip
    with progress:
        bar = progress.add_task("index", total=None)

        def step(done: int, total: int) -> None:
            progress.update(bar, completed=done, total=total)

        summary = build_store(train, model, output, overwrite=overwrite, batch_size=batch_size, device=device.value,
                              negative_rate=negative_rate, seed=seed, tune=tune, progress=step)  # fmt: skip
    if json_:
        typer.echo(json.dumps(summary.to_dict(), ensure_ascii=False))
    elif not quiet:
        err.print(f"Indexed {count(summary.sentences, 'sentence')} ({summary.dimension} dimensions) and "
                  f"{count(summary.keys, 'kNN key')} ({summary.key_dimension} dimensions) -> {summary.store}",
                  markup=False)  # fmt: skip
        if summary.tuned is not None:
            best: Any = summary.tuned["best"]
            err.print(f"Tuned on {summary.tuned['dev']}: k {best['k']}, lambda {best['lambda']}, temperature "
                      f"{best['temperature']}: dev F1 {summary.tuned['f1']:.4f} (tagger alone "
                      f"{summary.tuned['plain_f1']:.4f}).", markup=False)  # fmt: skip
