"""``b2ner view``: an extract output as a self-contained HTML page, entities highlighted in their text.

A thin command: flags -> :func:`b2ner_cli.view.job.render_view` -> a one-line summary on stderr.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .common import QuietOption, boundary, stderr_console
from .render import count

EPILOG = """[bold]Examples[/]

  b2ner view out.jsonl   # writes out.html beside it (with out.jsonl.meta.json in the header)

  b2ner view out.jsonl -o report.html

  b2ner extract notes.txt -l "person,location" --format html -o notes.html   # the same page, straight from a run
"""


@boundary
def view(
    predictions: Annotated[
        Path, typer.Argument(help="The JSONL that `b2ner extract` wrote (its PRED.jsonl.meta.json is read too).")
    ],
    output: Annotated[
        str | None,
        typer.Option(
            "--output",
            "-o",
            help="The page to write (atomically; - for stdout). \\[default: PRED.html beside the input, "
            "never replaced without --overwrite]",
            show_default=False,
        ),
    ] = None,
    meta: Annotated[
        Path | None,
        typer.Option("--meta", help="The run metadata to show \\[default: PRED.jsonl.meta.json when it exists]."),
    ] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing default output.")] = False,
    quiet: QuietOption = False,
) -> None:
    """Render extract results as one HTML page: entities highlighted, a label filter, paging, the run's metadata."""
    from ..view.job import render_view

    result = render_view(predictions, output, meta=meta, overwrite=overwrite)
    if not quiet and result.output is not None:
        stderr_console().print(
            f"{count(result.documents, 'document')}, {count(result.entities, 'entity', 'entities')} -> {result.output}",
            markup=False,
        )
