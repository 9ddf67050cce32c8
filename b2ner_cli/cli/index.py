"""``b2ner index``: a datastore of training-sentence vectors made with a tagger's encoder (for ``--demos``).

A thin command: flags -> :func:`b2ner_cli.retrieval.store.build_store` -> a summary.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from .common import Device, DeviceOption, JsonOption, QuietOption, boundary, stderr_console

EPILOG = """[bold]Examples[/]

  b2ner index train.jsonl -m ./my-tagger -o ./train-store

  b2ner index train.conll -m ./my-tagger -o ./train-store --overwrite --json

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
    batch_size: Annotated[int, typer.Option("--batch-size", "-b", min=1, help="Sentences per encoder batch.")] = 32,
    device: DeviceOption = Device.auto,
    json_: JsonOption = False,
    quiet: QuietOption = False,
) -> None:
    """Index training sentences with a tagger's encoder, for nearest-neighbour demonstrations (extract --demos)."""
    from ..retrieval.store import build_store

    err = stderr_console()
    progress = Progress(TextColumn("indexing"), BarColumn(), MofNCompleteColumn(), console=err,
                        disable=quiet or not err.is_terminal, transient=True)  # fmt: skip
    with progress:
        bar = progress.add_task("index", total=None)

        def step(done: int, total: int) -> None:
            progress.update(bar, completed=done, total=total)

        summary = build_store(train, model, output, overwrite=overwrite, batch_size=batch_size,
                              device=device.value, progress=step)  # fmt: skip
    if json_:
        typer.echo(json.dumps(summary.to_dict(), ensure_ascii=False))
    elif not quiet:
        err.print(f"Indexed {summary.sentences} sentences ({summary.dimension} dimensions) -> {summary.store}",
                  markup=False)  # fmt: skip
