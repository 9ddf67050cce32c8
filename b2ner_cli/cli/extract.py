"""``b2ner extract``: entities with character offsets from text files, JSONL or stdin.

A thin command: flags -> a :class:`RunSpec` -> :func:`b2ner_cli.runs.run.execute` -> rendering.
"""

from __future__ import annotations

import sys
from dataclasses import replace
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from ..cascade.spec import cascade_summary
from ..engine.base import DEFAULT_MAX_NEW_TOKENS
from ..errors import UsageError
from ..io.examples import load_examples
from ..io.readers import ReadOptions
from ..io.writers import JsonlWriter
from ..models.placement import parse_max_memory
from ..models.spec import build_model_spec
from ..retrieval.demos import DemoSpec
from ..runs.labels import LabelSources, resolve_labels
from ..runs.recognizer import recognizer_kind
from ..runs.run import OutputSpec, RaySpec, RecordSink, RunResult, RunSpec, check, execute, preview
from ..runs.settings import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_BATCH_TOKENS,
    DEFAULT_CHUNK_TOKENS,
    DEFAULT_WINDOW,
    ExtractSettings,
    Task,
)
from .common import (
    AdapterOption,
    AdapterRevisionOption,
    BatchSizeOption,
    BatchTokensOption,
    CascadeAdapterOption,
    CascadeModeOption,
    CascadeOption,
    DemosOption,
    Device,
    DeviceOption,
    Dtype,
    DtypeOption,
    EngineOption,
    FlatOption,
    KeepRawOption,
    KnnKOption,
    KnnLambdaOption,
    KnnOption,
    KnnTemperatureOption,
    LabelsFileOption,
    LabelsOption,
    Lang,
    LangOption,
    MaxChunkTokensOption,
    MaxMemoryOption,
    MaxNewTokensOption,
    McSamplesOption,
    MergeOption,
    MinScoreOption,
    ModelOption,
    NoAdapterOption,
    OfflineOption,
    OutputOption,
    Quantize,
    QuantizeOption,
    QuietOption,
    RevisionOption,
    ShotsOption,
    ThresholdOption,
    TrustRemoteCodeOption,
    Uncertainty,
    UncertaintyOption,
    WindowOption,
    boundary,
    knn_spec,
    note_printer,
    stderr_console,
)
from .render import RunView, TableRenderer, count


class OutputFormat(str, Enum):
    jsonl = "jsonl"
    table = "table"
    html = "html"
    spacy = "spacy"


class InputFormat(str, Enum):
    auto = "auto"
    txt = "txt"
    jsonl = "jsonl"
    json = "json"
    conll = "conll"


EPILOG = """[bold]Examples[/]

  b2ner extract notes.txt -l "person,organization,location" -o notes.jsonl

  b2ner extract docs.jsonl -m b2ner-20b --labels-file labels.json --format table

  b2ner extract notes.txt -l "person,organization,location" --format html -o notes.html   # open in a browser

  b2ner extract notes.txt -l "person,organization,location" --format spacy -o notes.spacy   # a spaCy DocBin

  echo "Barack Obama visited Paris." | b2ner extract - -m ./my-model --adapter ./my-lora -l "person,location"

  b2ner extract examples/en.txt -l "person,location" --dry-run

  b2ner extract test.conll --labels-from-dataset conll2003 -o test.predictions.jsonl   # then: b2ner eval test.conll ...

  b2ner extract test.txt -l "person,location" --demos ./train-store --shots 3   # store from b2ner index

  b2ner extract notes.txt -m ./my-tagger --uncertainty entropy -o notes.jsonl   # a tagger from finetune --head

  b2ner extract notes.txt -m ./my-tagger --cascade b2ner-7b --threshold 0.4 -o notes.jsonl   # LinkNER cascade

  b2ner extract notes.txt -m ./my-tagger --knn ./train-store -o notes.jsonl   # kNN-NER: store from b2ner index

  b2ner extract corpus.jsonl -l "person,location" --ray --ray-address auto --data-parallel auto -o out.jsonl   # Ray
"""


@boundary
def extract(
    inputs: Annotated[
        list[str],
        typer.Argument(
            help="Text (.txt: a document per line), JSONL (.jsonl), JSON arrays (.json, B2NERD split files included) "
            "or CoNLL columns (.conll/.bio/.bmes/.iob: a document per sentence); - reads stdin."
        ),
    ],
    labels: LabelsOption = None,
    labels_file: LabelsFileOption = None,
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
    demos: DemosOption = None,
    shots: ShotsOption = 3,
    lang: LangOption = Lang.auto,
    model: ModelOption = None,
    adapter: AdapterOption = None,
    output: OutputOption = None,
    output_format: Annotated[
        OutputFormat,
        typer.Option(
            "--format",
            "-f",
            help="jsonl (data), table (highlighted in the terminal), html (a self-contained page to open in a "
            "browser; with -o FILE.html, or stdout redirected to a file) or spacy (a spaCy DocBin; with -o "
            "FILE.spacy; needs pip install 'b2ner\\[spacy]').",
        ),
    ] = OutputFormat.jsonl,
    meta: Annotated[
        Path | None,
        typer.Option("--meta", help="Write run metadata here (default with -o: OUTPUT.meta.json)."),
    ] = None,
    keep_raw: KeepRawOption = False,
    flat: FlatOption = False,
    whole_file: Annotated[
        bool, typer.Option("--whole-file", help="A .txt input is one document, not one per line.")
    ] = False,
    input_format: Annotated[
        InputFormat,
        typer.Option(
            "--input-format",
            help="auto: by suffix (.jsonl/.ndjson, .json, .conll/.bio/.bmes/.iob, else text), stdin by its first "
            "line; json: one array of objects; conll: token-per-line columns.",
        ),
    ] = InputFormat.auto,
    text_field: Annotated[
        str, typer.Option("--text-field", help="JSONL/JSON field holding the text (B2NERD's sentence is read too).")
    ] = "text",
    id_field: Annotated[str, typer.Option("--id-field", help="JSONL field holding the id.")] = "id",
    labels_field: Annotated[
        str, typer.Option("--labels-field", help="JSONL field holding per-record labels.")
    ] = "labels",
    batch_size: BatchSizeOption = DEFAULT_BATCH_SIZE,
    batch_tokens: BatchTokensOption = None,
    max_new_tokens: MaxNewTokensOption = DEFAULT_MAX_NEW_TOKENS,
    max_chunk_tokens: MaxChunkTokensOption = DEFAULT_CHUNK_TOKENS,
    revision: RevisionOption = None,
    adapter_revision: AdapterRevisionOption = None,
    no_adapter: NoAdapterOption = False,
    offline: OfflineOption = False,
    device: DeviceOption = Device.auto,
    dtype: DtypeOption = Dtype.auto,
    quantize: QuantizeOption = Quantize.auto,
    max_memory: MaxMemoryOption = None,
    merge: MergeOption = None,
    engine: EngineOption = "auto",
    min_score: MinScoreOption = None,
    trust_remote_code: TrustRemoteCodeOption = False,
    data_parallel: Annotated[
        str,
        typer.Option(
            "--data-parallel",
            help="Model replicas in separate processes, one per GPU (auto: one per visible GPU when there are "
            "several); inputs are sharded and the output stays in input order. With --ray: the number of actors.",
        ),
    ] = "1",
    ray: Annotated[
        bool,
        typer.Option(
            "--ray",
            help="Extract on Ray (pip install 'b2ner\\[ray]'): the input as a Ray Dataset, one model replica per actor "
            "(one GPU each when the cluster has GPUs); --data-parallel sets the number of actors (auto: one per "
            "GPU). Joins RAY_ADDRESS when set, else starts a local Ray.",
        ),
    ] = False,
    ray_address: Annotated[
        str | None,
        typer.Option(
            "--ray-address",
            help="With --ray (implies it): the cluster to join, e.g. auto (the running one) or ray://HOST:10001.",
        ),
    ] = None,
    uncertainty: UncertaintyOption = Uncertainty.confidence,
    mc_samples: McSamplesOption = 8,
    window: WindowOption = DEFAULT_WINDOW,
    resume: Annotated[
        bool,
        typer.Option(
            "--resume",
            help="Continue an interrupted run: keep the records already in -o FILE (checked against the input) "
            "and extract the rest.",
        ),
    ] = False,
    cascade: CascadeOption = None,
    cascade_adapter: CascadeAdapterOption = None,
    threshold: ThresholdOption = None,
    cascade_mode: CascadeModeOption = None,
    knn: KnnOption = None,
    knn_k: KnnKOption = None,
    knn_lambda: KnnLambdaOption = None,
    knn_temperature: KnnTemperatureOption = None,
    dry_run_: Annotated[
        bool,
        typer.Option("--dry-run", help="Print each input's prompt as JSON; loads no model (texts are not chunked)."),
    ] = False,
    quiet: QuietOption = False,
) -> None:
    """Extract entities with character offsets from text files, JSONL or stdin."""
    err = stderr_console()
    read_options = ReadOptions(
        text_field=text_field,
        id_field=id_field,
        labels_field=labels_field,
        whole_file=whole_file,
        input_format=input_format.value,
    )
    settings = ExtractSettings(
        lang=lang.value,
        flat=flat,
        max_chunk_tokens=max_chunk_tokens,
        batch_size=batch_size,
        batch_tokens=batch_tokens or DEFAULT_BATCH_TOKENS,
        min_score=min_score,
        uncertainty=uncertainty.value,
        mc_samples=mc_samples,
        window=window,
    )
    model_spec = build_model_spec(
        model, adapter, revision=revision, adapter_revision=adapter_revision, no_adapter=no_adapter, offline=offline,
        device=device.value, dtype=dtype.value, quantize=quantize.value,
        max_memory=parse_max_memory(max_memory) if max_memory else None, merge=merge,
        trust_remote_code=trust_remote_code, max_new_tokens=max_new_tokens, engine=engine, cascade=cascade,
        cascade_adapter=cascade_adapter, threshold=threshold, cascade_mode=cascade_mode.value if cascade_mode else None,
        knn=knn_spec(knn, knn_k, knn_lambda, knn_temperature),
    )  # fmt: skip
    cascade_spec = model_spec.cascade
    on_ray = ray or ray_address is not None
    kind = recognizer_kind(replace(model_spec, cascade=None))
    tagger = kind == "tagger" or cascade_spec is not None
    if kind == "tagger":  # the flags a RunSpec does not carry; run.check refuses the rest
        from ..taggers.recognizer import check_tagger_options

        check_tagger_options(model_spec, Task.of(None, (), settings), map_labels=map_labels, dry_run=dry_run_,
                             examples=examples is not None,
                             data_parallel="1" if on_ray else data_parallel)  # fmt: skip
    sources = LabelSources(labels, labels_file, labels_from_dataset, map_labels)
    advice = None if tagger else note_printer(err, quiet)  # raw-tag advice is about prompting
    resolved = resolve_labels(sources, lang.value, model=model_spec, note=advice)
    task = Task.of(resolved.labels, load_examples(examples) if examples is not None else (), settings)
    spec = RunSpec(
        model=model_spec,
        task=task,
        inputs=tuple(inputs),
        read=read_options,
        output=OutputSpec(output, meta, keep_raw),
        label_map=tuple(resolved.back.items()),
        auto_batch_tokens=batch_tokens is None,
        quiet=quiet,
        input_files=tuple(str(p) for p in (labels_file, examples) if p is not None),
        resume=resume,
        demos=DemoSpec(demos, shots) if demos is not None else None,
    )
    check(spec)
    if dry_run_:
        with JsonlWriter(output) as writer:
            for item in preview(spec):
                writer.write(item)  # type: ignore[arg-type]
        return
    if output_format is OutputFormat.table and output not in (None, "-"):
        raise UsageError(
            "--format table prints to the terminal; it cannot be combined with --output.",
            "Drop -o, or use --format jsonl to write a file.",
        )

    from ..runs.parallel import replica_count

    if on_ray:  # the pool size; auto: one actor per GPU of the cluster, known once joined
        actors = None if data_parallel == "auto" else replica_count(data_parallel, "cpu")
        spec = replace(spec, ray=RaySpec(ray_address, actors))
    elif not tagger:
        spec = replace(spec, data_parallel=replica_count(data_parallel, device.value))
    sink: RecordSink | None = None
    if output_format is OutputFormat.table:
        sink = TableRenderer(Console(file=sys.stdout, highlight=False))
    elif output_format is OutputFormat.html:
        if output in (None, "-") and sys.stdout.isatty():
            raise UsageError(
                "--format html writes a page for a browser, not for the terminal.",
                "Add -o FILE.html (then open it), or redirect stdout to a file.",
            )
        from ..view.html import HtmlSink

        title = ", ".join("stdin" if path == "-" else Path(path).name for path in inputs)
        sink = HtmlSink(output, keep_raw=keep_raw, title=title)
    elif output_format is OutputFormat.spacy:
        if output in (None, "-"):
            raise UsageError("--format spacy writes a binary spaCy DocBin file, not to stdout.", "Add -o FILE.spacy.")
        from ..integrations import require

        require("spacy", "spacy", "--format spacy")
        from ..integrations.spacy import DocBinSink

        sink = DocBinSink(output, keep_raw=keep_raw)
    to_terminal = output in (None, "-") and sys.stdout.isatty()
    with RunView(err, quiet=quiet, records_to_terminal=to_terminal) as view:
        result = execute(spec, sink=sink, events=view)
    if not quiet and result.primary:
        _summary(err, result, output, max_new_tokens, "window" if kind == "tagger" else "prompt")
        if cascade_spec is not None:
            err.print(cascade_summary(result.stats.cascade), markup=False)


def _summary(err: Console, result: RunResult, output: str | None, max_new_tokens: int, unit: str = "prompt") -> None:
    stats, seconds = result.stats, result.seconds
    where = f" -> {output}" if output and output != "-" else ""
    err.print(
        f"{count(stats.entities, 'entity', 'entities')} in {count(stats.documents, 'document')} "
        f"({count(stats.chunks, unit)}, {stats.documents / max(seconds, 1e-9):.1f} documents/s){where}",
        markup=False,
    )
    if stats.unmatched:
        err.print(
            f'{count(stats.unmatched, "mention")} not found in their text (listed under "unmatched").',
            markup=False,
        )
    if stats.unknown_labels:
        names = ", ".join(f"{k} ({v})" for k, v in sorted(stats.unknown_label_names.items()))
        err.print(
            f"Dropped {count(stats.unknown_labels, 'mention')} with labels that were not asked for: {names}.",
            markup=False,
        )
    capped = stats.truncated - stats.runaways
    if capped:
        err.print(
            f"Warning: {count(capped, 'answer')} reached the new-token cap (--max-new-tokens {max_new_tokens}, "
            "or 4 tokens per prompt token) before ending; their last mention was dropped.",
            markup=False,
        )
    if stats.runaways:
        err.print(
            f"Warning: {count(stats.runaways, 'answer')} started repeating and were stopped; "
            "their last mention was dropped.",
            markup=False,
        )
