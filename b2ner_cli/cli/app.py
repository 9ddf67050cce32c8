"""The Typer application; ``b2ner`` and ``python -m b2ner_cli`` both run :func:`main`."""

from __future__ import annotations

import typer

from .. import __version__
from . import bench as bench_cmd
from . import eval as eval_cmd
from . import extract as extract_cmd
from . import finetune as finetune_cmd
from . import index as index_cmd
from . import models as models_cmd
from . import serve as serve_cmd
from . import taxonomy as taxonomy_cmd
from . import view as view_cmd
from .common import stop_on_signals

app = typer.Typer(
    name="b2ner",
    help="Open zero-shot named entity recognition with the B2NER models, for English and Chinese text.",
    no_args_is_help=True,
    add_completion=True,
    context_settings={"help_option_names": ["-h", "--help"]},
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)
app.command(name="extract", epilog=extract_cmd.EPILOG, no_args_is_help=True)(extract_cmd.extract)
app.command(name="eval", epilog=eval_cmd.EPILOG, no_args_is_help=True)(eval_cmd.eval_)
app.command(name="finetune", epilog=finetune_cmd.EPILOG, no_args_is_help=True)(finetune_cmd.finetune)
app.command(name="index", epilog=index_cmd.EPILOG, no_args_is_help=True)(index_cmd.index)
app.command(name="bench", epilog=bench_cmd.EPILOG)(bench_cmd.bench)
app.command(name="view", epilog=view_cmd.EPILOG, no_args_is_help=True)(view_cmd.view)
app.command(name="serve", epilog=serve_cmd.EPILOG)(serve_cmd.serve)
app.add_typer(models_cmd.app, name="models")
app.add_typer(taxonomy_cmd.app, name="taxonomy")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"b2ner {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    """Open zero-shot named entity recognition with the B2NER models, for English and Chinese text."""


def main() -> None:
    stop_on_signals()
    app()
