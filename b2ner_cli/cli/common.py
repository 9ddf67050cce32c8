"""What every command shares: the error boundary, stderr console, and shared options."""

from __future__ import annotations

import functools
import os
import signal
import sys
from collections.abc import Callable
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from ..engine.registry import ENGINE_CHOICES
from ..errors import EXIT_INTERRUPTED, EXIT_OK, B2nerError, Terminated, UsageError
from ..runs.settings import DEFAULT_BATCH_TOKENS

if TYPE_CHECKING:
    from ..retrieval.knn import KnnSpec

F = TypeVar("F", bound=Callable[..., Any])


def stderr_console() -> Console:
    return Console(stderr=True, highlight=False, soft_wrap=True)


def debug_enabled() -> bool:
    return os.environ.get("B2NER_DEBUG", "") not in ("", "0", "false", "no")


def report(error: B2nerError) -> None:
    console = stderr_console()
    console.print(f"[bold red]Error:[/] {escape(error.message)}", markup=True, emoji=False)
    if error.hint:
        console.print(f"[bold]Hint:[/] {escape(error.hint)}", markup=True, emoji=False)


def boundary(func: F) -> F:
    """The one error boundary: known errors become ``Error:``/``Hint:`` and an exit code.

    Unknown exceptions keep their traceback (they are bugs); ``B2NER_DEBUG=1`` shows it for all.
    """

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except B2nerError as error:
            if debug_enabled():
                raise
            report(error)
            raise typer.Exit(error.exit_code) from None
        except KeyboardInterrupt as stop:
            if debug_enabled():
                raise
            if isinstance(stop, Terminated):
                stderr_console().print(f"Stopped by {signal.Signals(stop.signum).name}.", markup=False)
                raise typer.Exit(stop.exit_code) from None
            stderr_console().print("Interrupted.", markup=False)
            raise typer.Exit(EXIT_INTERRUPTED) from None
        except BrokenPipeError:
            # The reader went away (`b2ner extract ... | head`): stop quietly.
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            raise typer.Exit(EXIT_OK) from None

    return wrapper  # type: ignore[return-value]


def stop_on_signals() -> None:
    """SIGTERM and SIGHUP take the Ctrl-C path: the run stops where it is, its output stays valid, and the metadata
    says "interrupted" (exit 143 / 129)."""

    def handler(signum: int, _frame: object) -> None:
        raise Terminated(signum)

    for name in ("SIGTERM", "SIGHUP"):
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), handler)


def note_printer(console: Console, quiet: bool = False) -> Callable[[str], None]:
    """``Note: ...`` lines on stderr (nothing with --quiet)."""
    if quiet:
        return lambda _: None
    return lambda line: console.print(f"Note: {line}", markup=False)


# Shared choices: one enum per option, the same values in every command.
class Lang(str, Enum):
    auto = "auto"
    en = "en"
    zh = "zh"


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


# Shared options: declared once, the same meaning in every command.
ModelOption = Annotated[
    str | None,
    typer.Option(
        "--model",
        "-m",
        envvar="B2NER_MODEL",
        show_envvar=True,
        help="A model alias (b2ner-7b, b2ner-20b, yours), a Hub repo id, or a local directory. \\[default: b2ner-7b]",
    ),
]
AdapterOption = Annotated[
    str | None,
    typer.Option(
        "--adapter",
        envvar="B2NER_ADAPTER",
        show_envvar=True,
        help="LoRA adapter: a Hub repo id or a local PEFT directory (an alias brings its own).",
    ),
]
RevisionOption = Annotated[
    str | None, typer.Option("--revision", help="Backbone revision on the Hub (branch, tag or commit).")
]
AdapterRevisionOption = Annotated[
    str | None, typer.Option("--adapter-revision", help="Adapter revision on the Hub (branch, tag or commit).")
]
OfflineOption = Annotated[
    bool,
    typer.Option(
        "--offline", envvar="HF_HUB_OFFLINE", show_envvar=True, help="Use the local cache only; never download."
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
OutputOption = Annotated[
    str | None, typer.Option("--output", "-o", help="Write to this file instead of stdout (written atomically).")
]
BatchSizeOption = Annotated[
    int,
    typer.Option(
        "--batch-size",
        "-b",
        min=1,
        envvar="B2NER_BATCH_SIZE",
        show_envvar=True,
        help="Most prompts generated together in one batch.",
    ),
]
WindowOption = Annotated[
    int,
    typer.Option(
        "--window",
        min=1,
        envvar="B2NER_WINDOW",
        show_envvar=True,
        help="Documents read ahead and batched together; the unit that distributed ranks share out.",
    ),
]
QuietOption = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar or summary on stderr.")]
LabelsOption = Annotated[
    str | None, typer.Option("--labels", "-l", help='Comma-separated labels, e.g. "person,organization,location".')
]
LabelsFileOption = Annotated[
    Path | None,
    typer.Option(
        "--labels-file",
        help="Labels as a JSON list, one per line, or a JSON object label -> description "
        "(selects the with-description prompt).",
    ),
]
LangOption = Annotated[
    Lang, typer.Option("--lang", help="Prompt language; auto: zh when the label names are Chinese, else en.")
]
DeviceOption = Annotated[Device, typer.Option("--device", help="auto: the GPUs when there are any.")]
DtypeOption = Annotated[
    Dtype, typer.Option("--dtype", help="auto: bfloat16 on GPU (float16 where unsupported), float32 on CPU.")
]
QuantizeOption = Annotated[
    Quantize, typer.Option("--quantize", help="auto: 4-bit NF4 only when the model does not fit in GPU memory.")
]
MaxNewTokensOption = Annotated[int, typer.Option("--max-new-tokens", min=1, help="Cap on answer tokens per prompt.")]
NoAdapterOption = Annotated[bool, typer.Option("--no-adapter", help="Run the backbone without its adapter.")]
MaxMemoryOption = Annotated[
    list[str] | None,
    typer.Option("--max-memory", help="Memory per device for spreading over GPUs, e.g. 0=20GiB (repeatable)."),
]
MergeOption = Annotated[
    bool | None,
    typer.Option(
        "--merge/--no-merge",
        help="Merge the adapter into the backbone \\[default: merged for bf16/fp16 without 4/8-bit].",
        show_default=False,
    ),
]
EngineOption = Annotated[
    str,
    typer.Option(
        "--engine",
        help=f"Generation engine: {', '.join(ENGINE_CHOICES)} (auto: hf unless "
        "continuous batching is measured faster on this device).",
    ),
]
TrustRemoteCodeOption = Annotated[
    bool,
    typer.Option("--trust-remote-code", help="Run the model repo's own Python code (off by default)."),
]
BatchTokensOption = Annotated[
    int | None,
    typer.Option(
        "--batch-tokens",
        min=1,
        help="Most padded prompt tokens in one batch "
        f"\\[default: from free GPU memory; {DEFAULT_BATCH_TOKENS} on CPU].",
    ),
]
MaxChunkTokensOption = Annotated[
    int,
    typer.Option(
        "--max-chunk-tokens", min=16, help="Longer texts are split at sentence ends into chunks of this size."
    ),
]
MinScoreOption = Annotated[
    float | None,
    typer.Option(
        "--min-score", min=0.0, max=1.0, help="Drop entities whose score (the model's probability) is below this."
    ),
]
FlatOption = Annotated[bool, typer.Option("--flat", help="Resolve overlapping entities: the longer span wins.")]
KeepRawOption = Annotated[bool, typer.Option("--keep-raw", help='Add "raw": the model\'s answer as generated.')]


class Uncertainty(str, Enum):
    confidence = "confidence"
    entropy = "entropy"
    evidential = "evidential"
    mc_dropout = "mc-dropout"


class CascadeMode(str, Enum):
    span = "span"
    sentence = "sentence"


# The taggers and the LinkNER cascade (extract and eval).
CascadeOption = Annotated[
    str | None,
    typer.Option(
        "--cascade",
        help="LinkNER cascade: -m is a tagger; documents with an entity whose uncertainty exceeds --threshold "
        "go to this B2NER LLM (alias, Hub id or directory), loaded only if some document is routed.",
    ),
]
CascadeAdapterOption = Annotated[
    str | None,
    typer.Option("--cascade-adapter", help="Adapter of the --cascade LLM \\[default: as for -m LLM]."),
]
ThresholdOption = Annotated[
    float | None,
    typer.Option("--threshold", help="Cascade: entities with uncertainty above this go to the LLM \\[default: 0.4]."),
]
CascadeModeOption = Annotated[
    CascadeMode | None,
    typer.Option(
        "--cascade-mode",
        help="span: an uncertain entity the LLM also finds takes its label, else it is dropped; "
        "sentence: the LLM's entities replace the routed document's \\[default: span].",
    ),
]
McSamplesOption = Annotated[
    int, typer.Option("--mc-samples", min=1, help="Taggers: stochastic passes for --uncertainty mc-dropout.")
]
UncertaintyOption = Annotated[
    Uncertainty,
    typer.Option(
        "--uncertainty",
        help="Taggers (-m TAGGER_DIR): how each entity's uncertainty is computed (crf taggers give none).",
    ),
]

# kNN-NER (extract and eval with -m TAGGER_DIR) and nearest-neighbour demonstrations (-m LLM).
KnnOption = Annotated[
    str | None,
    typer.Option(
        "--knn",
        help="kNN-NER: mix the labels of the tagger's nearest training spans/words from this store (b2ner index) "
        "into its predictions.",
    ),
]
KnnKOption = Annotated[
    int | None, typer.Option("--knn-k", min=1, help="kNN: neighbours per span or word \\[default: the store's, 64].")
]
KnnLambdaOption = Annotated[
    float | None,
    typer.Option("--knn-lambda", min=0.0, max=1.0,
                 help="kNN: weight of the neighbours, p = lambda p_kNN + (1 - lambda) p_tagger; 0 is the plain "
                 "tagger \\[default: the store's, 0.3]."),
]  # fmt: skip
KnnTemperatureOption = Annotated[
    float | None,
    typer.Option("--knn-temperature", help="kNN: softmax temperature over cosines \\[default: the store's, 0.05]."),
]
DemosOption = Annotated[
    str | None,
    typer.Option(
        "--demos",
        help="A store from `b2ner index`: each document's nearest training sentences become its few-shot examples.",
    ),
]
ShotsOption = Annotated[int, typer.Option("--shots", min=1, help="With --demos: demonstrations per document.")]


def knn_spec(store: str | None, k: int | None, lam: float | None, temperature: float | None) -> KnnSpec | None:
    """``--knn STORE`` and its overrides (a UsageError for an override without --knn)."""
    from ..retrieval.knn import KnnSpec

    if store is None:
        given = [flag for flag, value in (("--knn-k", k), ("--knn-lambda", lam), ("--knn-temperature", temperature))
                 if value is not None]  # fmt: skip
        if given:
            raise UsageError(f"{given[0]} applies with --knn STORE.", "Add --knn STORE, or drop it.")
        return None
    return KnnSpec(store, k, lam, temperature)
