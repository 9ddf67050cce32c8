"""``b2ner eval`` as a function: gold (+ predictions, or a model to run first) in, a :class:`Report` out."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .. import __version__
from ..errors import UsageError
from ..io.conll import CONLL_SUFFIXES
from ..io.output import check_outputs
from ..models.spec import ModelSpec
from ..retrieval.demos import DemoSpec
from ..runs.run import Events
from ..runs.settings import ExtractSettings
from .readers import (
    GoldFormat,
    is_upstream_predictions,
    read_conll_predictions,
    read_gold,
    read_predictions,
    read_upstream,
)
from .report import Report, evaluate, evaluate_upstream

METRICS = {
    "b2ner": "upstream B2NER metric: normalised 'label:mention' strings compared as sets per sentence, micro per "
    "dataset; averages are unweighted means of dataset F1 per language (math-junior and CAIL2022 left out)",
    "strict": "exact (start, end, label) matches, micro per dataset; macro_f1 averages the per-label F1",
}


@dataclass(frozen=True)
class EvalSpec:
    gold: Path
    #: extract's JSONL; when None, ``model`` runs on the gold texts first.
    predictions: Path | None = None
    gold_format: GoldFormat = "auto"
    dataset: str | None = None
    model: ModelSpec | None = None
    #: where ``model``'s predictions are written (default: GOLD.predictions.jsonl in the working directory).
    predictions_out: Path | None = None
    settings: ExtractSettings = field(default_factory=ExtractSettings)
    #: with ``model``: prompt with canonical names for raw tags (PER, B-ORG) and map the predictions back.
    map_labels: bool = False
    bootstrap: int = 0
    seed: int = 0
    quiet: bool = False
    #: thresholds for ``--sweep-score``: F1 as entities below each score are dropped (``report.meta["score_sweep"]``).
    sweep_scores: tuple[float, ...] = ()
    #: the files the command writes besides the predictions (option -> path), checked before any model loads.
    outputs: tuple[tuple[str, Path | None], ...] = ()
    #: with ``model``: each gold text's nearest training sentences as its few-shot examples (``--demos``).
    demos: DemoSpec | None = None

    def predictions_target(self) -> Path | None:
        if self.model is None or self.predictions is not None:
            return None
        return self.predictions_out or Path(self.gold.name + ".predictions.jsonl")


def run_eval(spec: EvalSpec, events: Events | None = None) -> Report | None:
    """Score predictions against gold with both metrics (an upstream predictions file holds both); None on the ranks
    of a distributed ``eval -m`` other than rank 0."""
    meta: dict[str, object] = {"b2ner_version": __version__, "gold": str(spec.gold), "metrics": METRICS}
    gold = spec.gold
    target = spec.predictions_target()
    predictions_meta = Path(f"{target}.meta.json") if target is not None else None
    outputs = {"--predictions-out": target, "(its metadata)": predictions_meta, **dict(spec.outputs)}
    check_outputs(outputs, [p for p in (gold, spec.predictions) if p is not None])
    if spec.map_labels and (spec.model is None or spec.predictions is not None):
        raise UsageError("--map-labels applies when eval runs a model (-m) on the gold texts.",
                         "Drop --map-labels, or give -m MODEL instead of a predictions file.")  # fmt: skip
    if gold.suffix in (".jsonl", ".ndjson") and gold.is_file() and is_upstream_predictions(gold):
        if spec.predictions is not None:
            raise UsageError(
                f"{gold} is an upstream predictions file: it already holds gold and predictions.",
                "Give it alone: b2ner eval predict_eval_predictions.jsonl",
            )
        if spec.sweep_scores:
            raise UsageError(
                "--sweep-score needs entities with scores; an upstream predictions file has answer strings only."
            )
        report = evaluate_upstream(read_upstream(gold), bootstrap=spec.bootstrap, seed=spec.seed)
        meta["predictions"] = str(gold)
    else:
        records = read_gold(gold, spec.gold_format, spec.dataset)
        if spec.predictions is not None:  # a predictions file wins over --model (which B2NER_MODEL may set)
            if spec.predictions.suffix.lower() in CONLL_SUFFIXES:
                predicted = read_conll_predictions(spec.predictions, records)
            else:
                predicted = read_predictions(spec.predictions)
            meta["predictions"] = str(spec.predictions)
        elif spec.model is not None and target is not None:
            from .predict import predict_gold

            predicted = predict_gold(
                records,
                spec.model,
                settings=spec.settings,
                output=target,
                events=events,
                quiet=spec.quiet,
                map_labels=spec.map_labels,
                demos=spec.demos,
            )
            from ..runs.distributed import detect_launch

            if (launch := detect_launch()) is not None and not launch.primary:
                return None  # a rank of a torchrun / accelerate launch: rank 0 scores and reports
            meta["predictions"] = str(target)
        else:
            raise UsageError(
                "No predictions given.",
                "Pass the JSONL from `b2ner extract` as a second argument, or --model to run extraction first.",
            )
        report = evaluate(records, predicted, bootstrap=spec.bootstrap, seed=spec.seed)
        if spec.sweep_scores:
            from .sweep import score_sweep

            report.sweep = score_sweep(records, predicted, spec.sweep_scores)
    if spec.bootstrap:
        meta.update(bootstrap=spec.bootstrap, seed=spec.seed)
    report.meta = {**meta, **report.meta}
    return report
