"""``b2ner eval``: score predictions against gold with the published B2NER metric and strict spans."""

from __future__ import annotations

import json
from dataclasses import replace
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ..cascade.spec import cascade_from_flags, check_cascade
from ..errors import UsageError
from ..evaluation.job import EvalSpec, run_eval
from ..evaluation.report import Report
from ..evaluation.sweep import parse_thresholds
from ..io.writers import JsonlWriter, write_json_atomic
from ..models.spec import ModelSpec
from ..retrieval.demos import DemoSpec
from ..runs.settings import DEFAULT_BATCH_SIZE, DEFAULT_WINDOW, ExtractSettings
from .common import (
    AdapterOption,
    BatchSizeOption,
    CascadeAdapterOption,
    CascadeModeOption,
    CascadeOption,
    DemosOption,
    JsonOption,
    KnnKOption,
    KnnLambdaOption,
    KnnOption,
    KnnTemperatureOption,
    ModelOption,
    OfflineOption,
    QuietOption,
    ShotsOption,
    ThresholdOption,
    Uncertainty,
    UncertaintyOption,
    WindowOption,
    boundary,
    knn_spec,
    stderr_console,
)
from .render import RunView

EPILOG = """[bold]Examples[/]

  b2ner eval gold.jsonl predictions.jsonl --by-label -o scores.json

  b2ner eval data/NER_en/mit-movie/test.json -m b2ner-7b --predictions-out mit-movie.predictions.jsonl

  b2ner eval test.bio -m b2ner-7b --map-labels   # PER/LOC prompted as person/location, scored as PER/LOC

  b2ner eval dev.jsonl -m ./my-tagger --cascade b2ner-7b --sweep-threshold 0:1:0.1   # pick the cascade threshold

  b2ner eval dev.jsonl -m ./my-tagger --knn ./train-store   # the tagger with its kNN datastore

  b2ner eval dev.jsonl -m b2ner-7b --demos ./train-store --shots 3   # nearest training sentences as examples
"""


class GoldFormat(str, Enum):
    auto = "auto"
    jsonl = "jsonl"
    b2nerd = "b2nerd"
    conll = "conll"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}"


def _with_ci(f1: float | None, ci: tuple[float, float] | None) -> str:
    text = _pct(f1)
    return f"{text} [{_pct(ci[0])}, {_pct(ci[1])}]" if ci else text


@boundary
def eval_(
    gold: Annotated[
        Path,
        typer.Argument(
            help="Gold: our JSONL, a B2NERD split file or folder, CoNLL columns, "
            "or an upstream predictions file (given alone)."
        ),
    ],
    predictions: Annotated[
        Path | None,
        typer.Argument(
            help="Predictions: the JSONL that `b2ner extract` writes (matched by id; texts must equal the gold's), "
            "or CoNLL columns (.conll/.bio/.bmes/.iob, matched by sentence order)."
        ),
    ] = None,
    gold_format: Annotated[
        GoldFormat, typer.Option("--gold-format", help="Format of the gold file.")
    ] = GoldFormat.auto,
    old_gold_format: Annotated[
        GoldFormat | None, typer.Option("--format", hidden=True, help="Old name of --gold-format.")
    ] = None,
    dataset: Annotated[
        str | None, typer.Option("--dataset", help="Dataset name for a gold file without a dataset field.")
    ] = None,
    model: ModelOption = None,
    adapter: AdapterOption = None,
    map_labels: Annotated[
        bool,
        typer.Option(
            "--map-labels",
            help="With -m: prompt with canonical names for raw gold tags (PER, B-ORG) and map the predictions "
            "(raw answers included) back to the gold's tags before scoring.",
        ),
    ] = False,
    offline: OfflineOption = False,
    batch_size: BatchSizeOption = DEFAULT_BATCH_SIZE,
    window: WindowOption = DEFAULT_WINDOW,
    predictions_out: Annotated[
        Path | None,
        typer.Option(
            "--predictions-out", help="With --model: where to write the predictions (default GOLD.predictions.jsonl)."
        ),
    ] = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Also write the report as JSON here (written atomically).")
    ] = None,
    by_label: Annotated[bool, typer.Option("--by-label", help="Also show per-label strict scores.")] = False,
    bootstrap: Annotated[
        int, typer.Option("--bootstrap", min=0, help="95% confidence intervals of F1 from N resamples of sentences.")
    ] = 0,
    seed: Annotated[int, typer.Option("--seed", help="Seed for --bootstrap.")] = 0,
    errors: Annotated[
        Path | None, typer.Option("--errors", help="Write false positives and negatives per sentence as JSONL here.")
    ] = None,
    sweep_score: Annotated[
        str | None,
        typer.Option(
            "--sweep-score",
            help="F1 when entities scoring below each threshold are dropped: 0,0.25,0.5 or start:stop:step.",
        ),
    ] = None,
    cascade: CascadeOption = None,
    cascade_adapter: CascadeAdapterOption = None,
    threshold: ThresholdOption = None,
    cascade_mode: CascadeModeOption = None,
    uncertainty: UncertaintyOption = Uncertainty.confidence,
    knn: KnnOption = None,
    knn_k: KnnKOption = None,
    knn_lambda: KnnLambdaOption = None,
    knn_temperature: KnnTemperatureOption = None,
    demos: DemosOption = None,
    shots: ShotsOption = 3,
    sweep_threshold: Annotated[
        str | None,
        typer.Option(
            "--sweep-threshold",
            help="Cascade: score every threshold (0,0.2,0.4 or start:stop:step); the tagger and the LLM run once.",
        ),
    ] = None,
    as_json: JsonOption = False,
    quiet: QuietOption = False,
) -> None:
    """Score predictions against gold: the published B2NER metric and strict span matching, side by side."""
    err = stderr_console()
    if old_gold_format is not None:
        if not quiet:
            err.print("Note: --format is now --gold-format in eval.", markup=False)
        gold_format = old_gold_format
    run_model = predictions is None and (model is not None or adapter is not None or cascade is not None)
    model_spec = ModelSpec(model, adapter, offline=offline, knn=knn_spec(knn, knn_k, knn_lambda, knn_temperature))
    if (model_spec.knn is not None or demos is not None) and not run_model:
        flag = "--knn" if model_spec.knn is not None else "--demos"
        raise UsageError(f"{flag} applies when eval runs a model (-m) on the gold texts.",
                         f"Add -m MODEL, or drop {flag}.")  # fmt: skip
    cascade_spec = cascade_from_flags(cascade, adapter=cascade_adapter, threshold=threshold, base=model_spec,
                                      mode=cascade_mode.value if cascade_mode else None)  # fmt: skip
    if cascade_spec is not None:
        model_spec = replace(model_spec, cascade=cascade_spec)
        check_cascade(model_spec)
    settings = ExtractSettings(batch_size=batch_size, uncertainty=uncertainty.value, window=window)
    if sweep_threshold is not None:
        _sweep(err, gold, gold_format.value, dataset, model_spec, sweep_threshold, settings, quiet, as_json, output)
        return
    spec = EvalSpec(
        gold=gold,
        predictions=predictions,
        gold_format=gold_format.value,
        dataset=dataset,
        model=model_spec if run_model else None,
        predictions_out=predictions_out,
        map_labels=map_labels,
        settings=settings,
        bootstrap=bootstrap,
        seed=seed,
        quiet=quiet,
        outputs=(("-o", output), ("--errors", errors)),
        sweep_scores=tuple(parse_thresholds(sweep_score)) if sweep_score else (),
        demos=DemoSpec(demos, shots) if demos is not None else None,
    )
    with RunView(err, quiet=quiet) as view:
        report = run_eval(spec, events=view)
    if report is None:  # another rank of a torchrun / accelerate launch: rank 0 reports
        return
    if run_model and not quiet:
        err.print(f"Predictions written to {report.meta['predictions']}", markup=False)
    if errors is not None:
        with JsonlWriter(errors) as writer:
            for item in report.errors:
                writer.write(item)
    if output is not None:
        write_json_atomic(output, report.to_dict())
    if as_json:
        typer.echo(json.dumps(report.to_dict(), ensure_ascii=False, indent=2))
        return
    _render(report, by_label)
    if report.sweep:
        _render_sweep(report)


def _render_sweep(report: Report) -> None:
    table = Table("min score", "entities kept", "strict F1", "b2ner F1", title="F1 by score threshold (x100)")
    for point in report.sweep:
        table.add_row(
            f"{point.threshold:g}", f"{point.kept}/{point.total}", _pct(point.strict_f1), _pct(point.b2ner_f1)
        )
    Console(highlight=False).print(table)
    best = max(report.sweep, key=lambda p: (p.strict_f1, -p.threshold))
    Console(highlight=False).print(
        f"Best strict F1 {_pct(best.strict_f1)} at --min-score {best.threshold:g}.", markup=False
    )


def _sweep(
    err: Console,
    gold: Path,
    gold_format: str,
    dataset: str | None,
    model: ModelSpec,
    thresholds: str,
    settings: ExtractSettings,
    quiet: bool,
    as_json: bool,
    output: Path | None,
) -> None:
    from ..cascade.spec import parse_thresholds
    from ..cascade.sweep import WITHIN, sweep
    from ..evaluation.readers import read_gold
    from ..io.output import check_outputs
    from ..runs.recognizer import LoadOptions

    values = parse_thresholds(thresholds)
    if model.cascade is None:
        raise UsageError("--sweep-threshold scores a cascade.", "Add -m TAGGER_DIR --cascade LLM.")
    check_outputs({"-o": output}, [gold])
    records = read_gold(gold, gold_format, dataset)  # type: ignore[arg-type]
    note = None if quiet else (lambda line: err.print(line, markup=False))
    result = sweep(records, model, values, settings=settings, options=LoadOptions(quiet, note))
    if output is not None:
        write_json_atomic(output, result.to_dict())
    if as_json:
        typer.echo(json.dumps(result.to_dict(), ensure_ascii=False, indent=2))
        return
    table = Table(title="Cascade threshold sweep (F1 x100)",
                  caption="routed: the share sent to the LLM (documents, tagger entities)")  # fmt: skip
    for column in ("threshold", "b2ner F1", "strict F1", "routed docs", "routed spans"):
        table.add_column(column, justify="right")
    for row in result.thresholds:
        docs, spans = 100 * row.routed_document_fraction, 100 * row.routed_span_fraction
        table.add_row(f"{row.threshold:g}", _pct(row.b2ner_f1), _pct(row.strict_f1), f"{docs:.1f}%", f"{spans:.1f}%")
    console = Console(highlight=False)
    console.print(table)
    console.print(f"Best: threshold {result.best:g}; cheapest within {WITHIN:g} F1 points: "
                  f"threshold {result.cheapest_within:g}.", markup=False)  # fmt: skip


def _render(report: Report, by_label: bool) -> None:
    console = Console(highlight=False)
    table = Table(
        title="Scores (x100)",
        caption="b2ner: the published metric (normalised mention strings, as in the paper); "
        "strict: exact character spans and labels",
    )
    for column in ("dataset", "lang", "n", "metric", "P", "R", "F1", "macro F1"):
        table.add_column(column, justify="right" if column in ("n", "P", "R", "F1", "macro F1") else "left")
    for d in report.datasets:
        b, s = d.b2ner, d.strict
        table.add_row(escape(d.name), escape(d.language), str(d.sentences), "b2ner", _pct(b.precision), _pct(b.recall),
                      _with_ci(b.f1, d.b2ner_ci), "")  # fmt: skip
        strict_f1 = _with_ci(s.f1 if s else None, d.strict_ci)
        table.add_row("", "", "", "strict", _pct(s.precision if s else None), _pct(s.recall if s else None),
                      strict_f1, _pct(d.strict_macro_f1), end_section=True)  # fmt: skip
    averages = report.averages()
    for language, f1 in averages["b2ner_f1"].items():  # type: ignore[attr-defined]
        table.add_row("average", escape(language), "", "b2ner", "", "", _pct(f1), "", style="bold")
        table.add_row("", "", "", "strict", "", "", _pct(averages["strict_f1"].get(language)), "", style="bold")  # type: ignore[attr-defined]
    overall: dict[str, float | None] = averages["overall"]  # type: ignore[assignment]
    table.add_row("average", "all", "", "b2ner", "", "", _pct(overall["b2ner_f1"]), "", style="bold")
    table.add_row("", "", "", "strict", "", "", _pct(overall["strict_f1"]), "", style="bold")
    console.print(table)
    notes = [
        f"{d.name}: {d.unmatched} predicted mentions not found in the text, "
        f"{d.unknown_labels} predicted labels outside the label set (false positives under b2ner)"
        for d in report.datasets
        if d.unmatched or d.unknown_labels
    ]
    sources: dict[str, int] = report.meta.get("b2ner_from_counts") or {}  # type: ignore[assignment]
    grounded = sources.get("grounded entities", 0)
    if grounded:
        total = grounded + sources.get("raw answers", 0)
        notes.append(
            f"b2ner: {grounded} of {total} predictions carry no raw answer (`b2ner extract --keep-raw` keeps it); "
            "their b2ner scores come from the grounded entities, which can differ from the answer upstream scores."
        )
    for note in notes:
        console.print(note, markup=False, soft_wrap=True)  # one line each, whatever the terminal's width
    if by_label:
        for d in report.datasets:
            if not d.labels:
                continue
            title = escape(f"{d.name}: strict scores per label (x100)")
            labels = Table("label", "P", "R", "F1", "support", title=title)
            for label, counts in sorted(d.labels.items()):
                labels.add_row(escape(label), _pct(counts.precision), _pct(counts.recall), _pct(counts.f1),
                               str(counts.tp + counts.fn))  # fmt: skip
            console.print(labels)
