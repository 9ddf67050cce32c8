"""``b2ner models``: the model aliases, the local cache, and downloads."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ..models.catalog import list_models, model_info
from .common import AdapterRevisionOption, JsonOption, QuietOption, RevisionOption, boundary, stderr_console

app = typer.Typer(
    help="Model aliases, the local cache, and downloads.",
    no_args_is_help=True,
    rich_markup_mode="rich",
)


def _size(n: int) -> str:
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB"


@app.command(
    "list",
    epilog="[bold]Examples[/]\n\n  b2ner models list\n\n  b2ner models list --json",
)
@boundary
def list_(as_json: JsonOption = False) -> None:
    """List model aliases (built in, and yours in $B2NER_HOME/models.json) and what is cached."""
    statuses = list_models()
    if as_json:
        typer.echo(json.dumps([s.to_dict() for s in statuses], ensure_ascii=False, indent=2))
        return
    table = Table("alias", "backbone", "adapter", "cached", "size", "description")
    for column in table.columns[1:3]:
        column.overflow = "fold"
    for status in statuses:
        parts = [status.backbone] + ([status.adapter] if status.adapter else [])
        cached = "yes" if all(p.present for p in parts) else ("partly" if any(p.present for p in parts) else "no")
        size = sum(p.size_bytes for p in parts)
        table.add_row(
            escape(status.entry.name),
            escape(status.entry.backbone),
            escape(status.entry.adapter or "-"),
            cached,
            _size(size) if size else "-",
            escape(status.entry.description),
        )
    Console(highlight=False).print(table)


@app.command(
    "download",
    epilog="[bold]Examples[/]\n\n  b2ner models download b2ner-7b\n\n"
    "  b2ner models download internlm/internlm2_5-7b --revision main",
)
@boundary
def download(
    name: Annotated[str, typer.Argument(help="A model alias, or a Hub repo id.")],
    revision: RevisionOption = None,
    adapter_revision: AdapterRevisionOption = None,
    quiet: QuietOption = False,
) -> None:
    """Download a model (and its adapter) into the Hugging Face cache; prints the local paths."""
    from ..models.prepare import download as fetch_all

    paths = fetch_all(
        name,
        revision=revision,
        adapter_revision=adapter_revision,
        quiet=quiet,
        note=lambda line: stderr_console().print(f"Note: {line}", markup=False),
    )
    for path in paths:
        typer.echo(str(path))


@app.command(
    "info",
    epilog="[bold]Examples[/]\n\n  b2ner models info b2ner-7b\n\n  b2ner models info ./my-model --json"
    "\n\n  b2ner models info ./my-tagger        # a tagger from finetune --head",
)
@boundary
def info(
    name: Annotated[str, typer.Argument(help="A model alias, a Hub repo id, or a directory.")],
    as_json: JsonOption = False,
) -> None:
    """Show what a model is: repos, revisions, cache paths, size, parameters and memory estimates."""
    from ..taggers.card import is_tagger_dir, tagger_info

    details = tagger_info(name) if is_tagger_dir(name) else model_info(name)
    if as_json:
        typer.echo(json.dumps(details, ensure_ascii=False, indent=2, default=str))
        return
    table = Table(show_header=False, box=None)
    for key, value in details.items():
        if isinstance(value, dict):
            value = ", ".join(f"{k}: {v}" for k, v in value.items())
        table.add_row(f"[bold]{escape(key)}[/]", escape(str(value)))
    Console(highlight=False).print(table)
