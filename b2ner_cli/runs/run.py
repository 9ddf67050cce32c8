"""A run: read documents, drive a recognizer window by window, write records and the manifest, report progress.

Commands build a :class:`RunSpec` and call :func:`execute`; the Python API, ``eval -m``, ``bench`` and the trainer's
dev scoring drive the same code. The core reports through ``events`` and never prints.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping, Sized
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Protocol, runtime_checkable

from .. import __version__
from ..errors import B2nerError, UsageError
from ..io.output import check_outputs
from ..io.readers import Document, ReadOptions, check_inputs, input_format, read_documents
from ..io.writers import JsonlWriter, write_json_atomic
from ..models.spec import ModelSpec
from ..prompts import PROMPT_ID, check_prompt_kind
from ..records import Record
from ..retrieval.demos import DemoSpec
from .labels import model_labels
from .recognizer import LoadOptions, Recognizer, load_recognizer, recognizer_kind, run_report, stream
from .settings import DEFAULT_BATCH_TOKENS, RunStats, Task

Status = str  # "complete" | "interrupted" | "failed"


# -- events -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Loading:
    """A model is being loaded."""

    model: ModelSpec


@dataclass(frozen=True)
class Loaded:
    description: dict[str, object]


@dataclass(frozen=True)
class Note:
    """A line worth showing on stderr (placement decisions, label advice)."""

    text: str


@dataclass(frozen=True)
class Progress:
    stats: RunStats
    #: seconds since the extraction loop started.
    seconds: float
    #: documents in the input, when known before the run (files, not stdin).
    total: int | None = None


@dataclass(frozen=True)
class Stopped:
    """The run did not complete; ``path`` holds the records written before it stopped."""

    path: Path
    records: int


Event = Loading | Loaded | Note | Progress | Stopped
Events = Callable[[Event], None]


def _ignore(_: Event) -> None:
    pass


# -- output -----------------------------------------------------------------------------------------------------


class RecordSink(Protocol):
    """Where a run's records go: a JSONL file or stdout by default; the CLI brings others (a terminal table)."""

    path: Path | None

    @property
    def count(self) -> int:
        """Records written so far."""
        ...

    def write(self, record: Record) -> None: ...

    def close(self, complete: bool) -> Path | None:
        """Finish: ``complete`` is False when the run failed or was interrupted; then, the file that holds the
        records written before the stop (None when there is none, e.g. stdout)."""
        ...


@runtime_checkable
class DescribedSink(Protocol):
    """A sink that shows how its records were made (the HTML page): ``execute`` gives it the run metadata, complete
    with status and counts, just before ``close``."""

    def describe_run(self, manifest: Mapping[str, object]) -> None: ...


class JsonlSink:
    """Records as JSON lines, to stdout or (atomically) to a file."""

    def __init__(self, target: str | Path | None, keep_raw: bool = False) -> None:
        self._writer = JsonlWriter(target)
        self.keep_raw = keep_raw
        self.path = self._writer.path

    @property
    def count(self) -> int:
        return self._writer.count

    def write(self, record: Record) -> None:
        self._writer.write(record.to_dict(self.keep_raw))

    def write_dict(self, record: dict[str, object]) -> None:
        """A record as read back from an earlier output (``--resume``), written unchanged."""
        self._writer.write(record)

    def close(self, complete: bool) -> Path | None:
        if complete:
            self._writer.close()
            return None
        return self._writer.abort()


@dataclass(frozen=True)
class OutputSpec:
    #: a file, or None/"-" for stdout.
    path: str | None = None
    #: run metadata; with a file output it defaults to ``OUTPUT.meta.json``.
    meta: Path | None = None
    keep_raw: bool = False

    def meta_path(self) -> Path | None:
        if self.meta is not None:
            return self.meta
        if self.path and self.path != "-":
            return Path(self.path).with_name(Path(self.path).name + ".meta.json")
        return None


@dataclass(frozen=True)
class RaySpec:
    """``extract --ray``: where and how wide (see :mod:`b2ner_cli.runs.ray_pool`). ``address`` as ``ray.init``
    takes it (None: ``RAY_ADDRESS`` when set, else a new local Ray for this run; ``auto``: the running cluster;
    ``ray://HOST:10001``: Ray Client); ``actors``: the pool size (None: one per GPU of the cluster, one without)."""

    address: str | None = None
    actors: int | None = None


# -- the run ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunSpec:
    """Everything a run needs, typed: inputs, labels and settings (the task), the model, the output."""

    model: ModelSpec
    task: Task
    inputs: tuple[str, ...] = ()
    read: ReadOptions = field(default_factory=ReadOptions)
    output: OutputSpec = field(default_factory=OutputSpec)
    #: prompt label -> the user's own label, applied to every record written.
    label_map: tuple[tuple[str, str], ...] = ()
    #: model replicas in worker processes (one per GPU).
    data_parallel: int = 1
    #: ask the recognizer for a batch token budget (from free GPU memory) instead of ``task.settings.batch_tokens``.
    auto_batch_tokens: bool = False
    #: hide download progress while loading.
    quiet: bool = False
    #: other files the run reads (labels, examples): never to be overwritten by an output.
    input_files: tuple[str, ...] = ()
    #: continue an interrupted run from the records already in ``output.path`` (see :mod:`b2ner_cli.runs.resume`).
    resume: bool = False
    #: ``--demos STORE``: each document's nearest training sentences are its few-shot examples.
    demos: DemoSpec | None = None
    #: ``--ray``: extract in a pool of Ray actors (one replica each) instead of this process.
    ray: RaySpec | None = None


@dataclass
class RunResult:
    status: Status
    stats: RunStats
    records: int
    #: seconds of the extraction loop (loading excluded).
    seconds: float
    manifest: dict[str, object]
    output: Path | None
    #: False on the ranks of a distributed run other than rank 0 (they report nothing).
    primary: bool = True


def is_text_input(path: str, options: ReadOptions) -> bool:
    """Whether an input carries no per-record labels (text lines and CoNLL sentences; not JSONL or JSON records)."""
    return input_format(path, options) in ("txt", "conll")


def check(spec: RunSpec, extra_outputs: Mapping[str, str | Path | None] | None = None) -> None:
    """Fail before any model loads: missing inputs, outputs that would overwrite an input (or each other) or cannot
    be written, no labels where none can come, an impossible prompt."""
    check_inputs(spec.inputs, spec.read)
    outputs = {"-o": spec.output.path, "--meta": spec.output.meta_path(), **(extra_outputs or {})}
    check_outputs(outputs, [*spec.inputs, *spec.input_files])
    labels = spec.task.labels
    kind = recognizer_kind(spec.model)
    if kind == "cascade":
        from ..cascade.spec import check_cascade

        check_cascade(spec.model)
    if kind == "tagger" or (kind == "cascade" and recognizer_kind(replace(spec.model, cascade=None)) == "tagger"):
        from ..taggers.recognizer import check_tagger_options

        check_tagger_options(replace(spec.model, cascade=None), spec.task, map_labels=bool(spec.label_map))
    if (
        labels is None
        and recognizer_kind(spec.model) == "llm"
        and all(is_text_input(p, spec.read) for p in spec.inputs)
        and model_labels(spec.model) is None
    ):
        raise UsageError(
            "No labels given.",
            'Pass --labels "person,organization,location", --labels-file FILE or --labels-from-dataset NAME.',
        )
    if labels is not None:
        check_prompt_kind(labels, spec.task.examples)
    if spec.demos is not None:
        check_demos(spec, kind)
    if spec.model.knn is not None:
        check_knn(spec.model, spec.task)


def check_knn(model: ModelSpec, task: Task) -> None:
    """``--knn STORE`` mixes a tagger's datastore into its predictions: a tagger (alone or in a cascade), the store
    it made, and an uncertainty method the mixed distribution gives."""
    assert model.knn is not None
    tagger = replace(model, cascade=None, knn=None)
    if model.model is None or recognizer_kind(tagger) != "tagger":
        raise UsageError("--knn mixes a tagger's nearest training examples into its predictions; -m here is not a "
                         "tagger.", "Use -m TAGGER_DIR (a tagger from `b2ner finetune --head`).")  # fmt: skip
    from ..retrieval.store import check_knn_store
    from ..taggers.card import read_card
    from ..taggers.tagger import check_knn_uncertainty

    check_knn_store(model.knn.store, model.model)
    check_knn_uncertainty(str(read_card(model.model)["head"]), task.settings.uncertainty)


def check_demos(spec: RunSpec, kind: str) -> None:
    """``--demos`` prompts the LLM with retrieved examples: not with --examples, label descriptions or taggers."""
    assert spec.demos is not None
    if spec.task.examples:
        raise UsageError("--demos and --examples both give few-shot examples.", "Use one of them.")
    labels = spec.task.labels
    if labels is not None and labels.descriptions is not None:
        raise UsageError(
            "--demos gives few-shot examples, which cannot be combined with label descriptions.",
            "Use labels without descriptions, or drop --demos.",
        )
    if kind != "llm":
        raise UsageError("--demos adds demonstrations to the B2NER LLM's prompt; -m here is not an LLM.",
                         "Use -m with a B2NER model (e.g. b2ner-7b).")  # fmt: skip
    from ..retrieval.store import STORE_JSON

    if not (Path(spec.demos.store).expanduser() / STORE_JSON).is_file():
        raise UsageError(f"--demos {spec.demos.store} is not a b2ner store (it has no {STORE_JSON}).",
                         "Build one with `b2ner index TRAIN -m TAGGER -o STORE`.")  # fmt: skip


def with_demos(spec: RunSpec, documents: Iterable[Document]) -> Iterable[Document]:
    """The documents with their retrieved demonstrations when the run asks for them (loads the store's tagger)."""
    if spec.demos is None:
        return documents
    from ..retrieval.demos import Demonstrations

    return Demonstrations.load(spec.demos, device=spec.model.device).attach(documents)


def preview(spec: RunSpec) -> Iterator[dict[str, str]]:
    """``--dry-run``: the prompt of every input document, without loading a model."""
    from ..pipeline import dry_run

    settings = spec.task.settings
    documents = with_demos(spec, read_documents(spec.inputs, spec.read))
    yield from dry_run(documents, spec.task.labels, spec.task.examples, settings.lang)


def execute(
    spec: RunSpec,
    *,
    documents: Iterable[Document] | None = None,
    sink: RecordSink | None = None,
    recognizer: Recognizer | None = None,
    events: Events | None = None,
) -> RunResult:
    """Run ``spec`` (on ``documents`` instead of its inputs when given; with an already loaded ``recognizer``)."""
    emit = events or _ignore
    if recognizer is None:  # a loaded recognizer (the trainer's dev scoring) is this process's own business
        from .distributed import detect_launch

        launch = detect_launch()
        if launch is not None and spec.ray is not None:
            raise UsageError("--ray does not run under torchrun or accelerate launch.",
                             "Start b2ner once, without the launcher: Ray places the replicas.")  # fmt: skip
        if launch is not None:  # torchrun / accelerate launch: this rank's share, merged by rank 0
            from .distributed import execute_rank, execute_shared

            if documents is not None and sink is not None:  # eval -m: gold texts in, predictions gathered
                return execute_shared(spec, launch, documents, sink, emit)
            if sink is not None or documents is not None:
                raise UsageError("A distributed run writes JSONL to a file.", "Use --format jsonl with -o FILE.")
            return execute_rank(spec, launch, emit)
    if recognizer is None and spec.data_parallel > 1 and spec.ray is None:
        if documents is not None:
            raise UsageError("--data-parallel extracts from input files, not from documents given in memory.")
        from .parallel import execute_parallel  # local processes on the torchrun path

        return execute_parallel(spec, sink, emit)
    if spec.ray is not None and recognizer is None:  # before anything is read or written
        from .ray_pool import import_ray

        import_ray()
    source = documents if documents is not None else read_documents(spec.inputs, spec.read)
    done = None
    if spec.resume:  # before any model loads: a wrong file fails fast
        from .resume import read_done, skip_done

        if sink is not None:
            raise UsageError("--resume continues a JSONL output file.", "Use --format jsonl with -o FILE.")
        done = read_done(spec.output.path)
        source = skip_done(source, done)
    source = with_demos(spec, source)
    task = spec.task
    on_ray = recognizer is None and spec.ray is not None
    described: dict[str, object] = {}
    if not on_ray:
        if recognizer is None:
            emit(Loading(spec.model))
            recognizer = load_recognizer(spec.model, LoadOptions(spec.quiet, lambda line: emit(Note(line))))
        task = prepare(spec, recognizer)
        described.update(recognizer.describe())
        emit(Loaded(described))
    manifest = manifest_of(spec, task)
    stats = RunStats()
    pool: dict[str, object] = {}  # the metadata's ``ray`` block
    out: RecordSink
    if sink is None:
        jsonl = JsonlSink(spec.output.path, spec.output.keep_raw)
        if done is not None:
            for earlier in done.records:
                jsonl.write_dict(earlier)
            manifest.update(resumed_records=len(done.records), resumed_from=str(done.source))
        out = jsonl
    else:
        out = sink
    back = dict(spec.label_map)
    status: Status = "failed"
    start = time.time()

    total = count_documents(spec.inputs, spec.read) if documents is None else _length(documents)
    if total is not None and done is not None:
        total -= len(done.records)

    def progress() -> None:
        emit(Progress(stats, time.time() - start, total))

    records: Iterator[Record] = iter(())
    try:
        if recognizer is not None:
            records = stream(recognizer, source, task, stats, progress)
        else:
            from .ray_pool import ray_records

            records = ray_records(spec, source, stats, described, pool)
        for record in records:
            out.write(record.relabeled(back))
            progress()
        status = "complete"
    except KeyboardInterrupt:
        status = "interrupted"
        raise
    finally:
        if isinstance(records, Generator):  # its workers (processes, a Ray it started) stop now, not at collection
            records.close()
        seconds = time.time() - start
        meta_path = spec.output.meta_path()
        manifest.update(
            described,
            status=status,
            finished_at=now(),
            records_written=out.count,
            stats=stats.to_dict(),
        )
        if recognizer is not None:  # what it loaded during the run shows too (a cascade's LLM, once routed to)
            manifest.update(recognizer.describe())
        manifest.update(run_report(spec.model, task, stats))
        if pool:
            manifest.update(data_parallel=pool["actors"], ray=pool)
        if isinstance(out, DescribedSink):
            out.describe_run(manifest)
        partial = out.close(status == "complete")
        if meta_path is not None:
            write_json_atomic(meta_path, manifest)
        if partial is not None:
            emit(Stopped(partial, out.count))
    return RunResult(status, stats, out.count, seconds, manifest, out.path)


def prepare(spec: RunSpec, recognizer: Recognizer) -> Task:
    """The task as the loaded recognizer completes it: its own labels when none were given, its batch budget."""
    task = spec.task
    if task.labels is None and recognizer.labels() is not None:
        task = replace(task, labels=recognizer.labels())
    if spec.auto_batch_tokens:
        suggested = recognizer.suggest_batch_tokens()
        task = replace(task, settings=replace(task.settings, batch_tokens=suggested or DEFAULT_BATCH_TOKENS))
    return task


def count_documents(paths: Iterable[str], options: ReadOptions) -> int | None:
    """How many documents the inputs hold (non-blank lines, or files with --whole-file); None for stdin."""
    total = 0
    for path in paths:
        if path == "-":
            return None
        if options.whole_file:
            total += 1
            continue
        if input_format(path, options) in ("json", "conll"):
            try:
                total += sum(1 for _ in read_documents([path], options))
            except (OSError, B2nerError):
                return None
            continue
        try:
            with open(path, "rb") as stream:
                total += sum(1 for line in stream if line.strip())
        except OSError:
            return None
    return total


def _length(documents: Iterable[Document]) -> int | None:
    return len(documents) if isinstance(documents, Sized) else None


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def manifest_of(spec: RunSpec, task: Task) -> dict[str, object]:
    settings = task.settings
    labels = task.labels
    return {
        "b2ner_version": __version__,
        "prompt_id": PROMPT_ID,
        "started_at": now(),
        "data_parallel": spec.data_parallel,
        "labels": list(labels.names) if labels else None,
        "label_descriptions": bool(labels and labels.descriptions),
        "few_shot_examples": len(task.examples),
        "demos": spec.demos.to_dict() if spec.demos is not None else None,
        "language": settings.lang,
        "settings": {
            "flat": settings.flat,
            "batch_size": settings.batch_size,
            "batch_tokens": settings.batch_tokens,
            "max_chunk_tokens": settings.max_chunk_tokens,
            "min_score": settings.min_score,
            "uncertainty": settings.uncertainty,
        },
        "model_spec": spec.model.to_dict(),
        "inputs": list(spec.inputs),
        "output": spec.output.path or "-",
    }
