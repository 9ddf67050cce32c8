"""Runs under ``torchrun`` / ``accelerate launch``: every rank extracts its share of the windows, rank 0 merges.

A launch is detected from the environment both launchers set (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``MASTER_ADDR``, ``MASTER_PORT``), on one node or several. Every rank reads the whole input (cheap next to the
model) and takes window ``i`` when ``i % world_size == rank``; it loads its replica on GPU ``LOCAL_RANK`` (CPU with
``--device cpu`` or without one) and writes ``.OUT.rank-R-of-N.jsonl`` beside ``-o``: one line per record,
``{"window": i, "record": {...}}``. The ranks then meet (``torch.distributed``, gloo) and rank 0 merges the parts
window by window into ``-o`` (atomically, byte for byte what one process writes) with one ``OUT.meta.json``
holding the summed stats and ``"distributed": {"world_size": N, "records_per_rank": [...]}``; the parts are then
removed.

A part file is a journal, not an atomic output: each line is flushed as it is written, so a rank killed outright
(SIGKILL, a lost node) still leaves its complete lines. ``--resume`` keeps, on each rank, the leading windows of its
part that are complete (as many records as the window has documents, each the input's document) and redoes the
rest; the merge then has no duplicates and no gaps.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from itertools import chain, islice
from pathlib import Path
from typing import IO, Any, Protocol

from ..errors import InputError, UsageError
from ..io.output import AtomicFile
from ..io.readers import Document, read_documents
from ..io.writers import dumps, write_json_atomic
from ..records import Record
from .recognizer import LoadOptions, Recognizer, load_recognizer
from .run import (
    Events,
    Loaded,
    Loading,
    Note,
    Progress,
    RecordSink,
    RunResult,
    RunSpec,
    Stopped,
    count_documents,
    manifest_of,
    now,
    prepare,
)
from .settings import RunStats, Task

#: numbered windows of documents.
Windows = Iterator[tuple[int, list[Document]]]
#: how long a rank waits for the others at the meeting point (a rank may finish its share hours before the last).
MEET_TIMEOUT = timedelta(days=7)


@dataclass(frozen=True)
class Launch:
    """This process's place in a ``torchrun`` / ``accelerate launch`` group."""

    rank: int
    world_size: int
    local_rank: int

    @property
    def primary(self) -> bool:
        return self.rank == 0


def detect_launch(environ: dict[str, str] | None = None) -> Launch | None:
    """The launch this process runs under, or None (a plain run; a group of one is a plain run too)."""
    env = os.environ if environ is None else environ
    if not all(env.get(key) for key in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")):
        return None
    try:
        rank, world_size = int(env["RANK"]), int(env["WORLD_SIZE"])
        local_rank = int(env.get("LOCAL_RANK") or 0)
    except ValueError:
        return None
    if world_size < 2:
        return None
    return Launch(rank, world_size, local_rank)


def part_path(output: str | Path, rank: int, world_size: int) -> Path:
    """Where ``rank`` writes its records: ``.OUT.rank-R-of-N.jsonl`` beside ``OUT``."""
    path = Path(output)
    return path.with_name(f".{path.name}.rank-{rank}-of-{world_size}.jsonl")


def place_on_gpu(launch: Launch, device: str) -> None:
    """Give this rank its own GPU (``LOCAL_RANK``) before CUDA starts: the replica then sees it as ``cuda:0``."""
    if device == "cpu":
        return
    visible = [d for d in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if d.strip()]
    if os.environ.get("CUDA_VISIBLE_DEVICES") is None:
        os.environ["CUDA_VISIBLE_DEVICES"] = str(launch.local_rank)
    elif visible:
        os.environ["CUDA_VISIBLE_DEVICES"] = visible[launch.local_rank % len(visible)]


# -- windows ------------------------------------------------------------------------------------------------------


def windows(documents: Iterator[Document], size: int) -> Windows:
    number = 0
    while window := list(islice(documents, size)):
        yield number, window
        number += 1


def mine(launch: Launch, documents: Iterator[Document], size: int) -> Windows:
    """This rank's windows (``i % world_size == rank``), numbered as in the whole input."""
    for number, window in windows(documents, size):
        if number % launch.world_size == launch.rank:
            yield number, window


def share(total: int, size: int, launch: Launch) -> int:
    """Documents of ``total`` that fall in this rank's windows of ``size``."""
    count = 0
    for number in range(launch.rank, -(-total // size), launch.world_size):
        count += min(size, total - number * size)
    return count


# -- parts ----------------------------------------------------------------------------------------------------------


class Part:
    """A rank's journal: ``{"window": i, "record": {...}}`` lines, each flushed as written."""

    def __init__(self, path: Path, keep: list[str]) -> None:
        self.path = path
        self.count = len(keep)
        if keep:
            output = AtomicFile(path)  # the kept lines replace the old journal in one step
            output.write("".join(keep))
            output.commit()
        self._file: IO[str] = open(path, "a" if keep else "w", encoding="utf-8")  # noqa: SIM115

    def write(self, window: int, record: dict[str, object]) -> None:
        self._file.write(dumps({"window": window, "record": record}) + "\n")
        self._file.flush()
        self.count += 1

    def close(self) -> None:
        if not self._file.closed:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()


@dataclass(frozen=True)
class Kept:
    """What ``--resume`` keeps of a rank's part: its leading complete windows."""

    lines: list[str]
    windows: set[int]
    documents: int


def read_part(path: Path) -> dict[int, list[tuple[str, dict[str, Any]]]]:
    """The part's complete lines, by window (a cut last line is dropped: it is done again)."""
    found: dict[int, list[tuple[str, dict[str, Any]]]] = {}
    with open(path, encoding="utf-8") as stream:
        for number, line in enumerate(stream, start=1):
            if not line.endswith("\n"):
                break
            try:
                item = json.loads(line)
                window, record = int(item["window"]), item["record"]
                if not isinstance(record, dict):
                    raise TypeError
            except (ValueError, KeyError, TypeError):
                raise InputError(
                    f"{path}, line {number}: not a line that a b2ner rank wrote.",
                    "Remove the part files to start over, or drop --resume.",
                ) from None
            found.setdefault(window, []).append((line, record))
    return found


def keep_done(path: Path, ours: Windows) -> tuple[Kept, Windows]:
    """The leading windows of ``ours`` that the part at ``path`` holds whole (checked against the input), and the
    windows left to do."""
    if not path.exists():
        return Kept([], set(), 0), ours
    found = read_part(path)
    lines: list[str] = []
    kept: set[int] = set()
    documents = 0
    for number, window in ours:
        records = found.get(number, [])
        for (_, record), document in zip(records, window, strict=False):
            if str(record.get("id")) != document.id or record.get("text") != document.text:
                raise UsageError(
                    f"{path} does not continue this input: window {number} holds {record.get('id')!r} where the "
                    f"input has {document.id!r}.",
                    "Resume with the same input, options and number of ranks as the interrupted run, or drop --resume.",
                )
        if len(records) != len(window):
            return Kept(lines, kept, documents), chain([(number, window)], ours)
        lines.extend(line for line, _ in records)
        kept.add(number)
        documents += len(window)
    return Kept(lines, kept, documents), ours


def other_parts(output: str, world_size: int) -> list[Path]:
    """Part files of a run with another number of ranks (they cannot be resumed by this one)."""
    path = Path(output)
    prefix = f".{path.name}.rank-"
    return sorted(
        p
        for p in path.parent.glob(f".{path.name}.rank-*-of-*.jsonl")
        if p.name.startswith(prefix) and not p.name.endswith(f"-of-{world_size}.jsonl")
    )


# -- meeting and merging ----------------------------------------------------------------------------------------


class Group(Protocol):
    def gather(self, item: dict[str, Any]) -> list[dict[str, Any]] | None:
        """Every rank's ``item`` on rank 0 (None elsewhere); waits for all ranks."""
        ...

    def close(self) -> None: ...


class TorchGroup:
    """The launch's process group (gloo: CPU tensors only, any device per rank), joined from the environment."""

    def __init__(self, launch: Launch) -> None:
        import torch.distributed as dist

        if not dist.is_available():
            raise UsageError("This PyTorch build has no torch.distributed; distributed runs need it.")
        self.launch = launch
        self._dist = dist
        self._owned = not dist.is_initialized()
        if self._owned:
            dist.init_process_group("gloo", timeout=MEET_TIMEOUT)
            self._group = None
        else:  # embedded in a program that joined already (e.g. accelerate): a gloo group beside its own
            self._group = dist.new_group(backend="gloo", timeout=MEET_TIMEOUT)

    def gather(self, item: dict[str, Any]) -> list[dict[str, Any]] | None:
        items: list[Any] | None = [None] * self.launch.world_size if self.launch.primary else None
        self._dist.gather_object(item, items, dst=0, group=self._group)
        return items

    def close(self) -> None:
        """Leave the group. After a successful run the ranks first meet once more, so that no rank tears the group
        (and rank 0's store) down while another still talks to it: that race ended a rank with ``terminate called
        without an active exception``."""
        if not self._dist.is_initialized():
            return
        if sys.exc_info()[0] is None:  # not while an error or an interrupt is on its way out
            self._dist.barrier(group=self._group)
        if self._owned:
            self._dist.destroy_process_group()


def merge(parts: list[Path], output: str) -> int:
    """Write the parts' records into ``output`` in window order (atomically); the number of records."""
    streams = [open(p, encoding="utf-8") for p in parts]  # noqa: SIM115
    pending: list[dict[str, Any] | None] = [None] * len(parts)

    def peek(index: int) -> dict[str, Any] | None:
        if pending[index] is None:
            line = streams[index].readline()
            pending[index] = json.loads(line) if line.endswith("\n") else None
        return pending[index]

    writer = AtomicFile(output)  # a merge that fails leaves no output: the parts still hold everything
    count = 0
    try:
        number = 0
        while True:
            index = number % len(parts)
            wrote = False
            while (item := peek(index)) is not None and item["window"] == number:
                writer.write(dumps(item["record"]) + "\n")
                count += 1
                pending[index] = None
                wrote = True
            if not wrote:
                left = [parts[i] for i in range(len(parts)) if peek(i) is not None]
                if left:
                    raise InputError(f"{left[0]} does not follow window {number}: the parts have a gap.")
                break
            number += 1
        writer.commit()
    except BaseException:
        writer.discard()
        raise
    finally:
        for stream in streams:
            stream.close()
    return count


def wait_for(path: Path, seconds: float = 5.0) -> None:
    """A shared filesystem may show another node's file late."""
    deadline = time.time() + seconds
    while not path.exists() and time.time() < deadline:
        time.sleep(0.1)


def with_demos(spec: RunSpec, ours: Windows) -> Windows:
    """``--demos``: each document of this rank's windows with its retrieved demonstrations (the store's tagger loads
    in every rank, beside the model)."""
    if spec.demos is None:
        return ours
    from ..retrieval.demos import Demonstrations

    demos = Demonstrations.load(spec.demos, device=spec.model.device)
    return ((number, list(demos.attach(window))) for number, window in ours)


def stats_of(items: list[dict[str, Any]]) -> RunStats:
    total = RunStats()
    for item in items:
        total.add(RunStats(**item["stats"]))
    return total


# -- one rank's run -------------------------------------------------------------------------------------------------


def _load_replica(
    spec: RunSpec, launch: Launch, emit: Events
) -> tuple[Recognizer, Task, dict[str, object], dict[str, object]]:
    """This rank's recognizer, the task it completes, its description and the run manifest."""
    emit(Loading(spec.model))
    quiet = spec.quiet or not launch.primary
    recognizer = load_recognizer(spec.model, LoadOptions(quiet, lambda line: emit(Note(line))))
    task = prepare(spec, recognizer)
    described = dict(recognizer.describe())
    emit(Loaded(described))
    return recognizer, task, described, manifest_of(spec, task)


def execute_rank(spec: RunSpec, launch: Launch, events: Events, *, local: bool = False) -> RunResult:
    """This rank's share of ``spec``; on rank 0, the merged output and manifest (see the module docstring).
    ``local``: one of the processes that ``--data-parallel`` started (:mod:`b2ner_cli.runs.parallel`)."""
    output = spec.output.path
    if output is None or output == "-":
        raise UsageError(
            f"A distributed run (rank {launch.rank} of {launch.world_size}) writes to a file: -o is required.",
            "Add -o FILE; rank 0 merges every rank's records into it.",
        )
    if spec.data_parallel > 1 and not local:
        raise UsageError(
            "--data-parallel does not combine with torchrun or accelerate launch.",
            "Drop --data-parallel: the launcher's processes are the replicas.",
        )
    emit: Events = events if launch.primary else (lambda _: None)  # the other ranks show nothing
    size = spec.task.settings.window
    path = part_path(output, launch.rank, launch.world_size)
    ours = mine(launch, iter(read_documents(spec.inputs, spec.read)), size)
    kept = Kept([], set(), 0)
    if spec.resume:  # before any model loads: a wrong file fails fast
        others = other_parts(output, launch.world_size)
        if others and not path.exists():
            raise UsageError(
                f"{others[0]} belongs to a run with another number of ranks than {launch.world_size}.",
                "Resume with the same number of processes as the interrupted run, or drop --resume.",
            )
        kept, ours = keep_done(path, ours)
        if not path.exists():
            emit(Note(f"Rank {launch.rank}: no part file to resume ({path}); its windows are done again."))
    place_on_gpu(launch, spec.model.device)
    ours = with_demos(spec, ours)
    group = TorchGroup(launch)
    try:
        recognizer, task, described, manifest = _load_replica(spec, launch, emit)
        stats = RunStats()
        back = dict(spec.label_map)
        total = count_documents(spec.inputs, spec.read)
        left = None if total is None else share(total, size, launch) - kept.documents
        start = time.time()

        def progress() -> None:
            emit(Progress(stats, time.time() - start, left))

        part = Part(path, kept.lines)
        status = "failed"
        try:
            for number, window in ours:
                for record in recognizer.recognize(window, task, stats, progress):
                    part.write(number, record.relabeled(back).to_dict(spec.output.keep_raw))
                    progress()
            status = "complete"
        finally:
            part.close()
            if status != "complete":
                emit(Stopped(path, part.count))
        seconds = time.time() - start
        items = group.gather({"records": part.count, "stats": stats.to_dict(), "resumed": len(kept.lines)})
        if items is None:
            return RunResult("complete", stats, part.count, seconds, {}, None, primary=False)
        parts = [part_path(output, rank, launch.world_size) for rank in range(launch.world_size)]
        for other in parts:
            wait_for(other)
            if not other.exists():
                raise InputError(
                    f"{other} is missing: rank 0 cannot read another rank's part.",
                    "On several machines, write -o to a filesystem that every node shares.",
                )
        written = merge(parts, output)
        totals = stats_of(items)
        manifest.update(
            described,
            status="complete",
            finished_at=now(),
            records_written=written,
            stats=totals.to_dict(),
            distributed={"world_size": launch.world_size, "records_per_rank": [item["records"] for item in items]},
        )
        if spec.resume:
            manifest.update(resumed_records=sum(item["resumed"] for item in items))
        meta = spec.output.meta_path()
        if meta is not None:
            write_json_atomic(meta, manifest)
        for done in parts:
            done.unlink(missing_ok=True)
        return RunResult("complete", totals, written, seconds, manifest, Path(output))
    finally:
        group.close()


def execute_shared(
    spec: RunSpec, launch: Launch, documents: Iterable[Document], sink: RecordSink, events: Events
) -> RunResult:
    """``eval -m`` under a launch: the ranks share the windows of ``documents`` (the gold texts, held in memory
    already), rank 0 gathers their records and writes them in input order to ``sink``; the others write nothing."""
    emit: Events = events if launch.primary else (lambda _: None)
    if spec.data_parallel > 1:
        raise UsageError("--data-parallel does not combine with torchrun or accelerate launch.")
    place_on_gpu(launch, spec.model.device)
    group = TorchGroup(launch)
    try:
        recognizer, task, described, manifest = _load_replica(spec, launch, emit)
        stats = RunStats()
        back = dict(spec.label_map)
        start = time.time()
        done: list[tuple[int, list[Record]]] = []
        for number, window in mine(launch, iter(documents), spec.task.settings.window):
            done.append((number, [r.relabeled(back) for r in recognizer.recognize(window, task, stats)]))
            emit(Progress(stats, time.time() - start))
        seconds = time.time() - start
        items = group.gather({"windows": done, "stats": stats.to_dict()})
        if items is None:
            return RunResult("complete", stats, sum(len(r) for _, r in done), seconds, {}, None, primary=False)
        ordered = sorted((number, records) for item in items for number, records in item["windows"])
        for _, records in ordered:
            for record in records:
                sink.write(record)
        sink.close(True)
        totals = stats_of(items)
        per_rank = [sum(len(r) for _, r in item["windows"]) for item in items]
        manifest.update(
            described,
            status="complete",
            finished_at=now(),
            records_written=sink.count,
            stats=totals.to_dict(),
            distributed={"world_size": launch.world_size, "records_per_rank": per_rank},
        )
        meta = spec.output.meta_path()
        if meta is not None:
            write_json_atomic(meta, manifest)
        return RunResult("complete", totals, sink.count, seconds, manifest, sink.path)
    finally:
        group.close()
