"""``b2ner extract``: entities with character offsets from text files, JSONL or stdin."""

from __future__ import annotations

import time
from contextlib import nullcontext
from dataclasses import replace
from datetime import datetime, timezone
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from .. import __version__
from ..engine.base import DEFAULT_MAX_NEW_TOKENS
from ..errors import UsageError
from ..io.examples import load_examples
from ..io.readers import ReadOptions, check_inputs, read_documents
from ..io.writers import JsonlWriter, write_json_atomic
from ..labels import load_labels_file, parse_labels_arg
from ..models.placement import parse_max_memory
from ..models.registry import DEFAULT_MODEL
from ..pipeline import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_BATCH_TOKENS,
    DEFAULT_CHUNK_TOKENS,
    ExtractSettings,
    RunStats,
    dry_run,
    resolve_lang,
)
from ..pipeline import extract as run_pipeline
from ..prompts import PROMPT_ID, LabelSet
from .common import (
    AdapterOption,
    AdapterRevisionOption,
    BatchSizeOption,
    ModelOption,
    OfflineOption,
    OutputOption,
    QuietOption,
    RevisionOption,
    boundary,
    stderr_console,
)
from .render import TableRenderer


class Lang(str, Enum):
    auto = "auto"
    en = "en"
    zh = "zh"


class OutputFormat(str, Enum):
    jsonl = "jsonl"
    table = "table"


class InputFormat(str, Enum):
    auto = "auto"
    txt = "txt"
    jsonl = "jsonl"


class Device(str, Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


class Quantize(str, Enum):
    auto = "auto"
    none = "none"
    q8 = "8bit"
    q4 = "4bit"


class Dtype(str, Enum):
    auto = "auto"
    bfloat16 = "bfloat16"
    float16 = "float16"
    float32 = "float32"


EPILOG = """[bold]Examples[/]

  b2ner extract notes.txt -l "person,organization,location" -o notes.jsonl

  b2ner extract docs.jsonl -m b2ner-20b --labels-file labels.json --format table

  echo "Barack Obama visited Paris." | b2ner extract - -m ./my-model --adapter ./my-lora -l "person,location"

  b2ner extract examples/en.txt -l "person,location" --dry-run
"""


def _label_set(labels: str | None, labels_file: Path | None, from_dataset: str | None, lang: Lang) -> LabelSet | None:
    if sum(x is not None for x in (labels, labels_file, from_dataset)) > 1:
        raise UsageError("Give only one of --labels, --labels-file and --labels-from-dataset.")
    if labels is not None:
        return parse_labels_arg(labels)
    if labels_file is not None:
        return load_labels_file(labels_file)
    if from_dataset is not None:
        from ..taxonomy.data import load
        from ..taxonomy.suggest import dataset_labels

        names = dataset_labels(from_dataset, None if lang is Lang.auto else lang.value)
        if names is None:
            known = ", ".join(sorted(load().datasets))
            raise UsageError(f'No dataset "{from_dataset}" in the taxonomy.', f"Known datasets: {known}.")
        return LabelSet(tuple(names))
    return None


def _adapter_labels(adapter: str) -> LabelSet | None:
    """The labels an adapter from `b2ner finetune` was trained on (with their descriptions, if any)."""
    from ..models.resolve import adapter_metadata

    meta = adapter_metadata(adapter)
    names = meta.get("labels") if meta else None
    if not isinstance(names, list) or not names:
        return None
    descriptions = meta.get("label_descriptions") if meta else None
    if isinstance(descriptions, dict) and all(isinstance(descriptions.get(n), str) for n in names):
        return LabelSet(tuple(names), tuple(descriptions[n] for n in names))
    return LabelSet(tuple(names))


def _advise(label_set: LabelSet, lang: Lang, map_labels: bool, quiet: bool) -> tuple[LabelSet, dict[str, str]]:
    """Flag raw tags (PER, B-ORG) with the canonical names B2NER works better with; apply them with --map-labels."""
    if label_set.descriptions is not None:
        return label_set, {}
    from ..taxonomy.suggest import advise

    language = resolve_lang(lang.value, label_set)  # type: ignore[arg-type]
    advice = advise(label_set.names, language)
    if not advice.flagged:
        return label_set, {}
    err = stderr_console()
    pairs = ", ".join(f"{s.raw} -> {s.name(language)}" for s in advice.flagged)
    if map_labels:
        if not quiet:
            err.print(
                f"Note: prompting with canonical names ({pairs}); your labels are kept in the output.", markup=False
            )
        return LabelSet(tuple(advice.names)), advice.back
    if not quiet:
        err.print(
            f"Note: some labels look like raw dataset tags ({pairs}). B2NER works better with descriptive names: "
            f'--labels "{",".join(advice.names)}", or add --map-labels to prompt with them and keep your tags '
            "in the output.",
            markup=False,
        )
    return label_set, {}


@boundary
def extract(
    inputs: Annotated[list[str], typer.Argument(help="Text (.txt) or JSONL (.jsonl) files; - reads stdin.")],
    labels: Annotated[
        str | None, typer.Option("--labels", "-l", help='Comma-separated labels, e.g. "person,organization,location".')
    ] = None,
    labels_file: Annotated[
        Path | None,
        typer.Option(
            "--labels-file",
            help="Labels as a JSON list, one per line, or a JSON object label -> description "
            "(selects the with-description prompt).",
        ),
    ] = None,
    labels_from_dataset: Annotated[
        str | None,
        typer.Option(
            "--labels-from-dataset",
            help="Use a public dataset's label set in canonical names (see `b2ner taxonomy list --dataset`).",
        ),
    ] = None,
    map_labels: Annotated[
        bool,
        typer.Option(
            "--map-labels",
            help="Prompt with canonical names for raw tags such as PER or B-ORG; write your tags in the output.",
        ),
    ] = False,
    examples: Annotated[
        Path | None,
        typer.Option("--examples", help='Few-shot examples, JSONL of {"text", "answer"} or {"text", "entities"}.'),
    ] = None,
    lang: Annotated[
        Lang, typer.Option("--lang", help="Prompt language; auto: zh when the label names are Chinese, else en.")
    ] = Lang.auto,
    model: ModelOption = None,
    adapter: AdapterOption = None,
    output: OutputOption = None,
    output_format: Annotated[
        OutputFormat, typer.Option("--format", "-f", help="jsonl (data) or table (highlighted in the terminal).")
    ] = OutputFormat.jsonl,
    meta: Annotated[
        Path | None,
        typer.Option("--meta", help="Write run metadata here (default with -o: OUTPUT.meta.json)."),
    ] = None,
    keep_raw: Annotated[bool, typer.Option("--keep-raw", help='Add "raw": the model\'s answer as generated.')] = False,
    flat: Annotated[bool, typer.Option("--flat", help="Resolve overlapping entities: the longer span wins.")] = False,
    whole_file: Annotated[
        bool, typer.Option("--whole-file", help="A .txt input is one document, not one per line.")
    ] = False,
    input_format: Annotated[
        InputFormat,
        typer.Option("--input-format", help="auto: by suffix (.jsonl/.ndjson), stdin by its first line."),
    ] = InputFormat.auto,
    text_field: Annotated[str, typer.Option("--text-field", help="JSONL field holding the text.")] = "text",
    id_field: Annotated[str, typer.Option("--id-field", help="JSONL field holding the id.")] = "id",
    labels_field: Annotated[
        str, typer.Option("--labels-field", help="JSONL field holding per-record labels.")
    ] = "labels",
    batch_size: BatchSizeOption = DEFAULT_BATCH_SIZE,
    batch_tokens: Annotated[
        int | None,
        typer.Option(
            "--batch-tokens",
            min=1,
            help="Most padded prompt tokens in one batch "
            f"[default: from free GPU memory; {DEFAULT_BATCH_TOKENS} on CPU].",
        ),
    ] = None,
    max_new_tokens: Annotated[
        int, typer.Option("--max-new-tokens", min=1, help="Cap on answer tokens per prompt.")
    ] = DEFAULT_MAX_NEW_TOKENS,
    max_chunk_tokens: Annotated[
        int,
        typer.Option(
            "--max-chunk-tokens", min=16, help="Longer texts are split at sentence ends into chunks of this size."
        ),
    ] = DEFAULT_CHUNK_TOKENS,
    revision: RevisionOption = None,
    adapter_revision: AdapterRevisionOption = None,
    no_adapter: Annotated[bool, typer.Option("--no-adapter", help="Run the backbone without its adapter.")] = False,
    offline: OfflineOption = False,
    device: Annotated[Device, typer.Option("--device", help="auto: the GPUs when there are any.")] = Device.auto,
    dtype: Annotated[
        Dtype, typer.Option("--dtype", help="auto: bfloat16 on GPU (float16 where unsupported), float32 on CPU.")
    ] = Dtype.auto,
    quantize: Annotated[
        Quantize,
        typer.Option("--quantize", help="auto: 4-bit NF4 only when the model does not fit in GPU memory."),
    ] = Quantize.auto,
    max_memory: Annotated[
        list[str] | None,
        typer.Option("--max-memory", help="Memory per device for spreading over GPUs, e.g. 0=20GiB (repeatable)."),
    ] = None,
    merge: Annotated[
        bool, typer.Option("--merge", help="Merge the adapter into the backbone for speed (not with 4/8-bit).")
    ] = False,
    trust_remote_code: Annotated[
        bool,
        typer.Option("--trust-remote-code", help="Run the model repo's own Python code (off by default)."),
    ] = False,
    data_parallel: Annotated[
        str,
        typer.Option(
            "--data-parallel",
            help="Model replicas in separate processes, one per GPU (auto: one per visible GPU when there are "
            "several); inputs are sharded and the output stays in input order.",
        ),
    ] = "1",
    dry_run_: Annotated[
        bool,
        typer.Option("--dry-run", help="Print each input's prompt as JSON; loads no model (texts are not chunked)."),
    ] = False,
    quiet: QuietOption = False,
) -> None:
    """Extract entities with character offsets from text files, JSONL or stdin."""
    check_inputs(inputs)
    label_set = _label_set(labels, labels_file, labels_from_dataset, lang)
    if label_set is None and adapter is not None:
        label_set = _adapter_labels(adapter)
    back: dict[str, str] = {}
    if label_set is not None and labels_from_dataset is None:
        label_set, back = _advise(label_set, lang, map_labels, quiet)
    few_shot = load_examples(examples) if examples is not None else []
    read_options = ReadOptions(
        text_field=text_field,
        id_field=id_field,
        labels_field=labels_field,
        whole_file=whole_file,
        input_format=input_format.value,  # type: ignore[arg-type]
    )
    if label_set is None and all(_is_text_input(p, read_options) for p in inputs):
        raise UsageError(
            "No labels given.",
            'Pass --labels "person,organization,location", --labels-file FILE or --labels-from-dataset NAME.',
        )
    if label_set is not None and label_set.descriptions is not None and few_shot:
        raise UsageError(
            "Few-shot examples cannot be combined with label descriptions.",
            "Use either --examples or a labels file with descriptions.",
        )
    documents = read_documents(inputs, read_options)

    if dry_run_:
        with JsonlWriter(output) as writer:
            for item in dry_run(documents, label_set, few_shot, lang.value):  # type: ignore[arg-type]
                writer.write(item)  # type: ignore[arg-type]
        return

    if output_format is OutputFormat.table and output not in (None, "-"):
        raise UsageError(
            "--format table prints to the terminal; it cannot be combined with --output.",
            "Drop -o, or use --format jsonl to write a file.",
        )
    memory = parse_max_memory(max_memory) if max_memory else None
    settings = ExtractSettings(
        lang=lang.value,  # type: ignore[arg-type]
        flat=flat,
        max_chunk_tokens=max_chunk_tokens,
        batch_size=batch_size,
        batch_tokens=batch_tokens or DEFAULT_BATCH_TOKENS,
    )
    err = stderr_console()
    show_progress = not quiet and err.is_terminal
    from ..api import Extractor  # imports torch lazily, through the loader

    load_options: dict[str, object] = dict(
        model=model, adapter=adapter, max_new_tokens=max_new_tokens, revision=revision,
        adapter_revision=adapter_revision, no_adapter=no_adapter, offline=offline, dtype=dtype.value,
        quantize=quantize.value, max_memory=memory, merge=merge, trust_remote_code=trust_remote_code,
    )  # fmt: skip
    replicas = _replicas(data_parallel, device)
    described: dict[str, object] = {}
    extractor = None
    if replicas == 1:
        loading = f"Loading model {model or DEFAULT_MODEL}" + (f" with adapter {adapter}" if adapter else "") + " ..."
        with err.status(loading) if show_progress else nullcontext():
            extractor = Extractor.load(
                **load_options,  # type: ignore[arg-type]
                settings=settings,
                device=device.value,
                quiet=quiet,
                note=lambda line: err.print(f"Note: {line}", markup=False),
            )
        if batch_tokens is None:
            suggested = getattr(extractor.generator, "suggest_batch_tokens", lambda: None)()
            if suggested:
                extractor.settings = replace(extractor.settings, batch_tokens=suggested)
                settings = extractor.settings
        described.update(extractor.generator.describe())
    else:
        from ..models.resolve import resolve

        # fetch once here, so that the replicas only read the cache
        resolve(model, adapter, revision=revision, adapter_revision=adapter_revision, no_adapter=no_adapter,
                offline=offline, quiet=quiet, trust_remote_code=trust_remote_code)  # fmt: skip
        load_options.update(offline=True, quiet=True)
    stats = RunStats()
    meta_path = meta or (Path(output).with_name(Path(output).name + ".meta.json") if output and output != "-" else None)
    run_meta: dict[str, object] = {
        "b2ner_version": __version__,
        "prompt_id": PROMPT_ID,
        "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "data_parallel": replicas,
        "labels": list(label_set.names) if label_set else None,
        "label_descriptions": bool(label_set and label_set.descriptions),
        "few_shot_examples": len(few_shot),
        "lang": lang.value,
        "settings": {
            "flat": flat,
            "batch_size": batch_size,
            "batch_tokens": settings.batch_tokens,
            "max_chunk_tokens": max_chunk_tokens,
        },
        "inputs": list(inputs),
        "output": output or "-",
    }
    status = "failed"
    table = TableRenderer(Console(highlight=False)) if output_format is OutputFormat.table else None
    writer = JsonlWriter(output)
    progress = Progress(
        SpinnerColumn(),
        TextColumn("{task.completed} documents"),
        TextColumn("{task.fields[rate]:.1f} docs/s"),
        TextColumn("{task.fields[entities]} entities"),
        TimeElapsedColumn(),
        console=err,
        disable=not show_progress,
        transient=True,
    )
    loop_start = time.time()
    try:
        with progress:
            task = progress.add_task("extract", total=None, rate=0.0, entities=0)
            if extractor is not None:
                results = run_pipeline(documents, extractor.generator, label_set, few_shot, settings, stats)
            else:
                from ..parallel import devices_for, parallel_extract

                devices = devices_for(replicas, _gpu_count() if device is not Device.cpu else 0)
                results = parallel_extract(documents, load_options, label_set, few_shot, settings, devices, stats,
                                           window=4 * settings.batch_size, described=described)  # fmt: skip
            for result in results:
                record = result.relabeled(back)
                if table is not None:
                    table.render(record)
                else:
                    writer.write(record.to_dict(keep_raw))
                progress.update(
                    task,
                    completed=stats.documents,
                    entities=stats.entities,
                    rate=stats.documents / max(time.time() - loop_start, 1e-9),
                )
        status = "complete"
    except KeyboardInterrupt:
        status = "interrupted"
        raise
    finally:
        writer.close()
        if meta_path is not None:
            run_meta.update(
                described,
                status=status,
                finished_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
                records_written=writer.count,
                stats=stats.to_dict(),
            )
            write_json_atomic(meta_path, run_meta)
        if status != "complete" and writer.path is not None:
            err.print(f"{writer.path} holds the {writer.count} records completed before the run stopped.", markup=False)
    if not quiet:
        _summary(err, stats, time.time() - loop_start, output, max_new_tokens)


def _gpu_count() -> int:
    import torch

    return torch.cuda.device_count()


def _replicas(choice: str, device: Device) -> int:
    """``--data-parallel``: a number of replicas, or auto (one per visible GPU when there are several)."""
    if choice == "auto":
        return _gpu_count() if device is not Device.cpu and _gpu_count() > 1 else 1
    if not choice.isdigit() or int(choice) < 1:
        raise UsageError(f"--data-parallel {choice}: expected a positive number or auto.")
    return int(choice)


def _is_text_input(path: str, options: ReadOptions) -> bool:
    if options.input_format != "auto":
        return options.input_format == "txt"
    return path != "-" and not path.lower().endswith((".jsonl", ".ndjson"))


def _count(n: int, noun: str, plural: str | None = None) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {plural or noun + 's'}"


def _summary(err: Console, stats: RunStats, seconds: float, output: str | None, max_new_tokens: int) -> None:
    where = f" -> {output}" if output and output != "-" else ""
    err.print(
        f"{_count(stats.entities, 'entity', 'entities')} in {_count(stats.documents, 'document')} "
        f"({_count(stats.chunks, 'prompt')}, {stats.documents / max(seconds, 1e-9):.1f} documents/s){where}",
        markup=False,
    )
    if stats.unmatched:
        err.print(
            f'{_count(stats.unmatched, "mention")} not found in their text (listed under "unmatched").',
            markup=False,
        )
    if stats.unknown_labels:
        names = ", ".join(f"{k} ({v})" for k, v in sorted(stats.unknown_label_names.items()))
        err.print(
            f"Dropped {_count(stats.unknown_labels, 'mention')} with labels that were not asked for: {names}.",
            markup=False,
        )
    capped = stats.truncated - stats.runaways
    if capped:
        err.print(
            f"Warning: {_count(capped, 'answer')} reached the new-token cap (--max-new-tokens {max_new_tokens}, "
            "or 4 tokens per prompt token) before ending; their last mention was dropped.",
            markup=False,
        )
    if stats.runaways:
        err.print(
            f"Warning: {_count(stats.runaways, 'answer')} started repeating and were stopped; "
            "their last mention was dropped.",
            markup=False,
        )
