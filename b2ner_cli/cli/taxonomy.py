"""``b2ner taxonomy``: find label names that work well with B2NER, in English and Chinese."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Annotated

import typer
from rich.cells import cell_len
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.tree import Tree

from ..errors import UsageError
from ..prompts import detect_lang, has_han
from ..taxonomy.data import EntityType, Taxonomy, load
from ..taxonomy.search import search as run_search
from ..taxonomy.suggest import dataset_labels, drop_outside, suggested_labels
from ..taxonomy.suggest import suggest as run_suggest
from .common import JsonOption, Lang, boundary, stderr_console

app = typer.Typer(
    help="Find label names that work well with B2NER: search, browse and map raw tags to canonical names.",
    no_args_is_help=True,
    rich_markup_mode="rich",
)


LangOption = Annotated[Lang, typer.Option("--lang", help="Names in en or zh; auto follows the query.")]


def _lang(choice: Lang, text: str = "") -> str:
    return ("zh" if has_han(text) else "en") if choice is Lang.auto else choice.value


def names_table(
    headers: Sequence[str], rows: Sequence[Sequence[str]], *, whole: Sequence[int], title: str | None = None
) -> Table:
    """A table whose ``whole`` columns (names users copy into --labels) are never wrapped or cut, at any width and
    when piped; the other columns wrap around them. Every cell is printed as is (no markup)."""
    table = Table(title=escape(title) if title else None)
    for index, header in enumerate(headers):
        if index in whole:
            widest = max([cell_len(header)] + [cell_len(row[index]) for row in rows])
            table.add_column(header, no_wrap=True, min_width=widest)
        else:
            table.add_column(header, overflow="fold")
    for row in rows:
        table.add_row(*(escape(cell) for cell in row))
    return table


def _out() -> Console:
    return Console(highlight=False, soft_wrap=True)


def entry_dict(entry: EntityType, taxonomy: Taxonomy) -> dict[str, object]:
    return {
        "en": entry.en,
        "zh": entry.zh,
        "parent": entry.parent,
        "description": {"en": entry.description_en, "zh": entry.description_zh},
        "aliases": list(entry.aliases),
        "examples": list(entry.examples),
        "datasets": taxonomy.used_by.get(entry.en, []),
    }


def _find(name: str, taxonomy: Taxonomy) -> EntityType:
    entry = taxonomy.get(name)
    if entry is None:
        hits = run_search(name, limit=3, taxonomy=taxonomy)
        close = ", ".join(f'"{h.entry.en}"' for h in hits)
        raise UsageError(
            f'"{name}" is not a taxonomy entry.',
            f"Did you mean {close}?" if close else 'Try `b2ner taxonomy search "..."`.',
        )
    return entry


@app.command(
    "search",
    epilog="[bold]Examples[/]\n\n  b2ner taxonomy search company\n\n  b2ner taxonomy search 公司\n\n"
    "  b2ner taxonomy search PER --json",
)
@boundary
def search(
    query: Annotated[str, typer.Argument(help="Words, a raw tag (PER, B-ORG) or a Chinese name.")],
    lang: LangOption = Lang.auto,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, help="Most results.")] = 10,
    as_json: JsonOption = False,
) -> None:
    """Search entity types by name, alias and description, in English or Chinese."""
    taxonomy = load()
    language = _lang(lang, query)
    hits = run_search(query, limit=limit, taxonomy=taxonomy)
    if as_json:
        typer.echo(json.dumps(
            [{**entry_dict(h.entry, taxonomy), "score": round(h.score, 1), "match": h.why} for h in hits],
            ensure_ascii=False, indent=2,
        ))  # fmt: skip
        return
    if not hits:
        stderr_console().print(f'No entity type matches "{query}".', markup=False)
        raise typer.Exit(1)
    other = "zh" if language == "en" else "en"
    rows = [(h.entry.name(language), h.entry.name(other), h.entry.description(language), h.why) for h in hits]
    table = names_table(("name", "other language", "description", "match"), rows, whole=(0, 1))
    _out().print(table)


@app.command("show", epilog="[bold]Examples[/]\n\n  b2ner taxonomy show company\n\n  b2ner taxonomy show 人名 --json")
@boundary
def show(
    name: Annotated[str, typer.Argument(help="An English or Chinese canonical name.")],
    as_json: JsonOption = False,
) -> None:
    """Show one entity type: names, path from the root, children, aliases, examples and datasets."""
    taxonomy = load()
    entry = _find(name, taxonomy)
    data = entry_dict(entry, taxonomy)
    data["path"] = [t.en for t in taxonomy.path(entry)]
    data["children"] = sorted(taxonomy.children.get(entry.en, []))
    if as_json:
        typer.echo(json.dumps(data, ensure_ascii=False, indent=2))
        return
    table = Table(show_header=False, box=None)
    table.add_row("[bold]name[/]", escape(f"{entry.en}   {entry.zh}"))
    table.add_row("[bold]path[/]", escape(" > ".join(data["path"])))  # type: ignore[arg-type]
    table.add_row("[bold]description[/]", escape(f"{entry.description_en}\n{entry.description_zh}"))
    for key in ("children", "aliases", "examples", "datasets"):
        table.add_row(f"[bold]{key}[/]", escape(", ".join(data[key]) or "-"))  # type: ignore[arg-type]
    _out().print(table)


@app.command(
    "list",
    epilog="[bold]Examples[/]\n\n  b2ner taxonomy list --tree --under organization\n\n"
    "  b2ner taxonomy list --dataset conll2003\n\n  b2ner taxonomy list --dataset cluener --json",
)
@boundary
def list_(
    tree: Annotated[bool, typer.Option("--tree", help="Show the hierarchy.")] = False,
    under: Annotated[str | None, typer.Option("--under", help="Only this type and what is below it.")] = None,
    dataset: Annotated[
        str | None, typer.Option("--dataset", help="A dataset's label set: raw tags and canonical names.")
    ] = None,
    lang: LangOption = Lang.auto,
    as_json: JsonOption = False,
) -> None:
    """List entity types (all, a subtree, or a dataset's label set in canonical names)."""
    taxonomy = load()
    if dataset is not None:
        _list_dataset(taxonomy, dataset, lang, as_json)
        return
    language = _lang(lang)
    root = _find(under, taxonomy) if under else None
    names = _subtree(taxonomy, root.en if root else None)
    if as_json:
        typer.echo(json.dumps([entry_dict(taxonomy.types[n], taxonomy) for n in names], ensure_ascii=False, indent=2))
        return
    if tree:
        top = Tree(
            escape(root.name(language)) if root else f"taxonomy {taxonomy.version} ({len(taxonomy.types)} types)"
        )
        _grow(top, taxonomy, root.en if root else None, language)
        _out().print(top)
        return
    for name in names:
        typer.echo(taxonomy.types[name].name(language))


def _subtree(taxonomy: Taxonomy, top: str | None) -> list[str]:
    order: list[str] = [top] if top else []
    stack = sorted(taxonomy.children.get(top, []), reverse=True)
    while stack:
        name = stack.pop()
        order.append(name)
        stack.extend(sorted(taxonomy.children.get(name, []), reverse=True))
    return order


def _grow(node: Tree, taxonomy: Taxonomy, parent: str | None, language: str) -> None:
    for name in sorted(taxonomy.children.get(parent, [])):
        _grow(node.add(escape(taxonomy.types[name].name(language))), taxonomy, name, language)


def _list_dataset(taxonomy: Taxonomy, name: str, lang: Lang, as_json: bool) -> None:
    found = taxonomy.dataset(name)
    if found is None:
        known = ", ".join(sorted(taxonomy.datasets))
        raise UsageError(f'No dataset "{name}" in the taxonomy.', f"Known datasets: {known}.")
    language = found.language if lang is Lang.auto else lang.value
    labels = dataset_labels(found.name, language, taxonomy) or []
    if as_json:
        mapping = {raw: [taxonomy.types[n].name(language) for n in names] for raw, names in found.labels.items()}
        typer.echo(json.dumps(
            {"name": found.name, "title": found.title, "language": found.language, "domain": found.domain,
             "description": found.description, "labels": labels, "mapping": mapping},
            ensure_ascii=False, indent=2,
        ))  # fmt: skip
        return
    rows = [(raw, ", ".join(taxonomy.types[n].name(language) for n in names)) for raw, names in found.labels.items()]
    title = f"{found.title} ({found.language}, {found.domain})"
    table = names_table(("tag", "canonical name"), rows, whole=(0, 1), title=title)
    stderr_console().print(table)
    typer.echo(",".join(labels))


@app.command(
    "suggest",
    epilog='[bold]Examples[/]\n\n  b2ner taxonomy suggest "PER,ORG,LOC,MISC"\n\n'
    '  b2ner taxonomy suggest "公司,人名,地名" --lang zh\n\n'
    '  b2ner extract in.txt -l "$(b2ner taxonomy suggest PER,ORG,LOC)"',
)
@boundary
def suggest(
    labels: Annotated[str, typer.Argument(help='Raw labels, comma-separated, e.g. "PER,ORG,LOC".')],
    lang: LangOption = Lang.auto,
    as_json: JsonOption = False,
) -> None:
    """Map raw labels to canonical names, with a reason per label; prints a line usable as --labels."""
    given = [part.strip() for part in labels.replace("，", ",").split(",") if part.strip()]
    raw, dropped = drop_outside(given)
    if dropped:
        stderr_console().print(f"Note: dropped {', '.join(dict.fromkeys(dropped))}: the outside tag marks no entity.",
                               markup=False)  # fmt: skip
    if not raw:
        raise UsageError("No labels given.", 'e.g. b2ner taxonomy suggest "PER,ORG,LOC"')
    language = detect_lang(raw) if lang is Lang.auto else lang.value
    suggestions = run_suggest(raw)
    line = ",".join(suggested_labels(suggestions, language))
    if as_json:
        typer.echo(json.dumps(
            {"labels": line, "language": language, "suggestions": [s.to_dict(language) for s in suggestions],
             "dropped": dropped},
            ensure_ascii=False, indent=2,
        ))  # fmt: skip
        return
    rows = [(s.raw, s.name(language), s.reason) for s in suggestions]
    table = names_table(("given", "use", "why"), rows, whole=(0, 1))
    stderr_console().print(table)
    typer.echo(line)
