"""``b2ner bench``: how fast extraction runs on this machine, for a sweep of batch sizes."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from ..errors import UsageError
from ..io.readers import ReadOptions, read_documents
from ..labels import parse_labels_arg
from ..wording import count
from .common import AdapterOption, JsonOption, ModelOption, OfflineOption, QuietOption, boundary, stderr_console

EPILOG = """[bold]Examples[/]

  b2ner bench

  b2ner bench notes.txt -l "person,organization,location" --batch-sizes 1,8,32 --json

  b2ner bench -m ./my-model --docs 500
"""


@boundary
def bench(
    inputs: Annotated[
        list[str] | None, typer.Argument(help="Text or JSONL inputs (default: a synthetic corpus).")
    ] = None,
    labels: Annotated[
        str, typer.Option("--labels", "-l", help="Comma-separated labels.")
    ] = "person,organization,location",
    docs: Annotated[
        int, typer.Option("--docs", min=1, help="Documents of the synthetic corpus, or the most to read.")
    ] = 200,
    batch_sizes: Annotated[str, typer.Option("--batch-sizes", help="Comma-separated batch sizes to sweep.")] = "1,8,32",
    max_new_tokens: Annotated[int, typer.Option("--max-new-tokens", min=1)] = 64,
    model: ModelOption = None,
    adapter: AdapterOption = None,
    offline: OfflineOption = False,
    as_json: JsonOption = False,
    quiet: QuietOption = False,
) -> None:
    """Measure extraction: documents/s, prompt and generated tokens/s, batch latency, peak memory per batch size.

    Memory is measured for each batch size on its own: the peak RSS sampled during its pass and its growth over the
    pass's start, and on GPU the allocator's peak (reset between sizes).
    """
    from itertools import islice

    from ..api import Extractor
    from ..benchmark import run, synthetic_corpus

    try:
        sizes = [int(s) for s in batch_sizes.split(",") if s.strip()]
    except ValueError:
        raise UsageError(f"--batch-sizes {batch_sizes}: expected comma-separated integers such as 1,8,32.") from None
    if not sizes or min(sizes) < 1:
        raise UsageError(f"--batch-sizes {batch_sizes}: expected positive integers such as 1,8,32.")
    label_set = parse_labels_arg(labels)
    documents = list(islice(read_documents(inputs, ReadOptions()), docs)) if inputs else synthetic_corpus(docs)
    err = stderr_console()
    extractor = Extractor.load(model, adapter, max_new_tokens=max_new_tokens, offline=offline, quiet=quiet,
                               note=lambda line: err.print(f"Note: {line}", markup=False))  # fmt: skip
    extractor.extract(documents[:4], label_set)  # warm-up
    report = run(extractor.generator, documents, label_set, sizes)
    if as_json:
        typer.echo(json.dumps(report, ensure_ascii=False, indent=2, default=str))
        return
    environment = report["environment"]
    gpu = any(r["peak_gpu_bytes"] is not None for r in report["runs"])
    table = Table("batch size", "docs/s", "prompt tok/s", "new tok/s", "p50 batch s", "p95 batch s", "peak RSS",
                  "RSS growth", *(["peak GPU"] if gpu else []),
                  title=f"{count(len(documents), 'document')}, {environment['model'].get('model')} on "
                  f"{environment['model'].get('device')}")  # fmt: skip
    for r in report["runs"]:
        table.add_row(str(r["batch_size"]), f"{r['documents_per_second']:.1f}", f"{r['prompt_tokens_per_second']:.0f}",
                      f"{r['generated_tokens_per_second']:.0f}", f"{r['batch_latency_p50_s']:.3f}",
                      f"{r['batch_latency_p95_s']:.3f}", _mib(r["peak_rss_bytes"]), _mib(r["rss_growth_bytes"]),
                      *([_mib(r["peak_gpu_bytes"])] if gpu else []))  # fmt: skip
    Console(highlight=False).print(table)


def _mib(n: int | None) -> str:
    return f"{n / 2**20:.0f} MiB" if n is not None else "-"
