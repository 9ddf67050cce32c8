"""``b2ner models``: the model aliases, the local cache, and downloads."""

from __future__ import annotations

import json
from datetime import datetime
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ..models.catalog import list_models, model_info
from .common import AdapterRevisionOption, JsonOption, QuietOption, RevisionOption, boundary, stderr_console
from .render import count

if TYPE_CHECKING:
    from ..models.cache import CacheItem

app = typer.Typer(
    help="Model aliases, the local cache, and downloads.",
    no_args_is_help=True,
    rich_markup_mode="rich",
)


def _size(n: int) -> str:
    if n < 2**20:
        return f"{n / 2**10:.1f} KiB"
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB"


@app.command(
    "list",
    epilog="[bold]Examples[/]\n\n  b2ner models list\n\n  b2ner models list --json\n\n"
    "  b2ner models list --cache        # every cached repo and conversion, with sizes and last use",
)
@boundary
def list_(
    as_json: JsonOption = False,
    cache: Annotated[
        bool,
        typer.Option("--cache", help="List every repo in the HF cache and every conversion in $B2NER_HOME/converted."),
    ] = False,
) -> None:
    """List model aliases (built in, and yours in $B2NER_HOME/models.json) and what is cached."""
    if cache:
        _list_cache(as_json)
        return
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
    "\n\n  b2ner models info ./my-adapter       # an adapter from finetune: backbone, labels, dev F1, LoRA"
    "\n\n  b2ner models info ./my-tagger        # a tagger from finetune --head",
)
@boundary
def info(
    name: Annotated[str, typer.Argument(help="A model alias, a Hub repo id, or a directory.")],
    as_json: JsonOption = False,
) -> None:
    """Show what a model, adapter or tagger is: repos, revisions, cache paths, size, parameters, labels, dev F1."""
    from ..models.catalog import adapter_info, is_adapter_dir
    from ..taggers.card import is_tagger_dir, tagger_info

    if is_tagger_dir(name):
        details = tagger_info(name)
    elif is_adapter_dir(name):
        details = adapter_info(name)
    else:
        details = model_info(name)
    if as_json:
        typer.echo(json.dumps(details, ensure_ascii=False, indent=2, default=str))
        return
    table = Table(show_header=False, box=None)
    for key, value in details.items():
        if isinstance(value, dict):
            value = ", ".join(f"{k}: {v}" for k, v in value.items())
        table.add_row(f"[bold]{escape(key)}[/]", escape(str(value)))
    Console(highlight=False).print(table)


def _when(timestamp: float | None) -> str:
    if timestamp is None:
        return "-"
    return datetime.fromtimestamp(timestamp).strftime("%Y-%m-%d %H:%M")


def _cache_table(items: list[CacheItem]) -> Table:
    table = Table("cache", "name", "type / source", "revisions", "size", "last used")
    table.columns[1].overflow = table.columns[2].overflow = "fold"
    for item in items:
        table.add_row(
            "hf" if item.kind == "hub" else "converted",
            escape(item.name),
            escape(item.detail or "-"),
            ", ".join(r[:12] for r in item.revisions) or "-",
            _size(item.size_bytes),
            _when(item.last_used),
        )
    return table


def _list_cache(as_json: bool) -> None:
    from ..models.cache import cache_items

    items = cache_items()
    if as_json:
        typer.echo(json.dumps([item.to_dict() for item in items], ensure_ascii=False, indent=2))
        return
    if not items:
        stderr_console().print("The caches are empty.", markup=False)
        return
    Console(highlight=False).print(_cache_table(items))


@app.command(
    "rm",
    epilog="[bold]Examples[/]\n\n  b2ner models rm b2ner-20b\n\n"
    "  b2ner models rm internlm/internlm2_5-7b --yes\n\n"
    "  b2ner models rm b2ner-7b --dry-run        # only list what would go",
)
@boundary
def rm(
    name: Annotated[
        str, typer.Argument(help="A model alias, a Hub repo id, or a path in the HF cache or $B2NER_HOME/converted.")
    ],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Remove without asking.")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="List what would be removed; remove nothing.")] = False,
) -> None:
    """Remove a model's HF cache repos and its conversion from the caches (never anything outside them)."""
    from ..models.cache import removal_plan, remove

    plan = removal_plan(name)
    for item in plan.items:  # the listing comes first, one plain line per item
        where = "hf cache" if item.kind == "hub" else "converted"
        typer.echo(f"{where}\t{item.name}\t{_size(item.size_bytes)}\t{item.path}")
    err = stderr_console()
    total = f"{count(len(plan.items), 'item')}, {_size(plan.size_bytes)}"
    if dry_run:
        err.print(f"Would remove {total}.", markup=False)
        return
    if not yes and not typer.confirm(f"Remove {total}?", err=True):
        err.print("Nothing removed.", markup=False)
        return
    freed = remove(plan)
    err.print(f"Removed {count(len(plan.items), 'item')}, freed {_size(freed)}.", markup=False)
