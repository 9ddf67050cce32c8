"""``--data-parallel N`` on one machine: N local processes run the ``torchrun`` rank path.

This process (the launcher) starts N processes (``torch.multiprocessing``, spawn) that each join a gloo group on
localhost as rank R of N and run :func:`b2ner_cli.runs.distributed.execute_rank`: the same windows (``i % N ==
R``), part journals, merge by rank 0 and ``distributed`` metadata block as under ``torchrun --nproc-per-node N``,
``--resume`` included. One GPU per process when there are enough GPUs, else every process on CPU with its share of
the cores.

The launcher keeps what a single-process run does for its user: it shows loading and progress (counting the
records in the parts as they grow), writes to stdout or ``--format table`` when there is no ``-o`` (rank 0 then
merges into a private temporary folder, and the launcher streams the merged records to the sink), reads stdin
(spooled once to a JSONL file the processes read), and stops on Ctrl-C, SIGTERM or SIGHUP: the processes are
stopped with it and, with ``-o``, the metadata says ``interrupted`` and the parts stay for ``--resume``. The
processes never outlive it (killed, crashed): on Linux the kernel kills them when it dies, elsewhere a watchdog
thread does.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ..errors import B2nerError, ModelError, UsageError
from ..io.readers import STDIN, ReadOptions, read_documents
from ..io.writers import dumps, write_json_atomic
from ..records import Record
from .distributed import Launch, execute_rank, other_parts, part_path
from .run import (
    Events,
    Loaded,
    Loading,
    Note,
    OutputSpec,
    Progress,
    RecordSink,
    RunResult,
    RunSpec,
    Status,
    Stopped,
    manifest_of,
    now,
)
from .settings import RunStats

#: how often the launcher looks at the processes and the parts.
POLL_SECONDS = 0.25


def _die_with(parent: int) -> None:
    """A process never outlives its parent (killed, crashed): on Linux the kernel sends it SIGKILL when the parent
    dies; elsewhere a watchdog thread notices that it was re-parented. Its memory (and GPU) is then released."""
    if sys.platform.startswith("linux"):
        import ctypes

        try:
            libc = ctypes.CDLL("libc.so.6", use_errno=True)
            libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except OSError:
            pass

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    if os.getppid() != parent:
        os._exit(1)
    threading.Thread(target=watch, daemon=True, name="b2ner-parent-watch").start()


def gpu_count() -> int:
    import torch

    return torch.cuda.device_count()


def replica_count(choice: str, device: str) -> int:
    """``--data-parallel``: a number of replicas, or auto (one per visible GPU when there are several)."""
    if choice == "auto":
        return gpu_count() if device != "cpu" and gpu_count() > 1 else 1
    if not choice.isdigit() or int(choice) < 1:
        raise UsageError(f"--data-parallel {choice}: expected a positive number or auto.")
    return int(choice)


def devices_for(workers: int, gpus: int) -> list[str]:
    """One GPU per worker when there are enough GPUs, else CPU workers."""
    return [f"cuda:{i}" for i in range(workers)] if gpus >= workers else ["cpu"] * workers


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# -- one process: rank R of N -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Place:
    """Where the processes meet and how they share the machine."""

    world_size: int
    port: int
    parent: int
    #: torch threads per process (CPU processes split the cores).
    threads: int


def _rank(index: int, spec: RunSpec, place: Place, messages: Any) -> None:
    """The body of process ``index`` (started by ``torch.multiprocessing``): rank ``index`` of the group."""
    _die_with(place.parent)
    for name in ("SIGTERM", "SIGHUP"):  # stopped by the launcher: stop at once (the part journal is line-flushed)
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), signal.SIG_DFL)
    os.environ.update(RANK=str(index), LOCAL_RANK=str(index), WORLD_SIZE=str(place.world_size),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(place.port))  # fmt: skip
    try:
        import torch

        torch.set_num_threads(place.threads)

        def forward(event: Any) -> None:  # rank 0's notes and Loaded; the launcher shows loading, progress, stops
            if not isinstance(event, (Loading, Progress, Stopped)):
                messages.put(("event", event))

        result = execute_rank(spec, Launch(index, place.world_size, index), forward, local=True)
        if result.primary:
            messages.put(("done", result.manifest, result.stats.to_dict(), result.records, result.seconds))
    except B2nerError as error:  # the launcher reports it as its own (one line, no traceback)
        messages.put(("error", type(error).__module__, type(error).__name__, error.message, error.hint))
        raise SystemExit(1) from None
    except KeyboardInterrupt:  # Ctrl-C reaches the whole process group: the launcher reports it
        raise SystemExit(130) from None
    except Exception:  # a bug: the launcher raises it with this traceback
        import traceback

        messages.put(("crash", traceback.format_exc()))
        raise SystemExit(1) from None


# -- the launcher -----------------------------------------------------------------------------------------------------


class PartCounter:
    """Records and entities in the parts so far (complete lines only), read as they grow. A part that was replaced
    (``--resume`` rewrites it with its kept lines) is counted again from its start."""

    def __init__(self, paths: list[Path]) -> None:
        self.paths = paths
        self.seen: list[tuple[int, int]] = [(0, 0)] * len(paths)  # (inode, bytes counted)
        self.records = [0] * len(paths)
        self.entities = [0] * len(paths)

    @property
    def stats(self) -> RunStats:
        return RunStats(documents=sum(self.records), entities=sum(self.entities))

    def update(self) -> None:
        for index, path in enumerate(self.paths):
            try:
                with open(path, "rb") as stream:
                    inode, offset = self.seen[index]
                    size = os.fstat(stream.fileno())
                    if size.st_ino != inode or size.st_size < offset:
                        inode, offset, self.records[index], self.entities[index] = size.st_ino, 0, 0, 0
                    stream.seek(offset)
                    data = stream.read()
            except FileNotFoundError:  # not yet, or merged and removed
                continue
            complete = data[: data.rfind(b"\n") + 1]
            self.seen[index] = (inode, offset + len(complete))
            for line in complete.splitlines():
                try:
                    record = json.loads(line)["record"]
                except (ValueError, KeyError, TypeError):
                    continue
                self.records[index] += 1
                self.entities[index] += len(record.get("entities", ()))


def _raise_reported(item: tuple[Any, ...]) -> None:
    if item[0] == "crash":
        raise RuntimeError(f"A data-parallel process failed:\n{item[1]}")
    _, module, name, message, hint = item
    kind = getattr(sys.modules.get(module), name, None)
    if not (isinstance(kind, type) and issubclass(kind, B2nerError)):
        kind = B2nerError
    raise kind(message, hint)


def _spool_stdin(spec: RunSpec, folder: Path) -> RunSpec:
    """The processes cannot share this process's stdin: its documents go to a JSONL file they read (same ids,
    texts and per-record labels)."""
    if STDIN not in spec.inputs:
        return spec
    if len(spec.inputs) > 1:
        raise UsageError("--data-parallel reads stdin alone, not with files.", "Give the files, or only -.")
    spooled = folder / "stdin.jsonl"
    with open(spooled, "w", encoding="utf-8") as out:
        for document in read_documents([STDIN], spec.read):
            labels: object = None
            if document.labels is not None:
                names, descriptions = document.labels.names, document.labels.descriptions
                labels = list(names) if descriptions is None else dict(zip(names, descriptions, strict=True))
            out.write(dumps({"id": document.id, "text": document.text, "labels": labels}) + "\n")
    return replace(spec, inputs=(str(spooled),), read=ReadOptions())


def _resume_parts(output: str, workers: int, window: int) -> None:
    """Before ``--resume``: the parts of an interrupted run with ``workers`` processes are resumed as they are; an
    output that one process wrote (``-o`` or its ``.partial``) is cut into the parts such a run would have written
    (its whole windows), so that a run continues whichever way it was started."""
    from ..io.output import AtomicFile
    from .resume import read_done, resume_source

    ours = [part_path(output, rank, workers) for rank in range(workers)]
    if any(p.exists() for p in ours):
        return
    others = other_parts(output, workers)
    if others:
        raise UsageError(f"{others[0]} belongs to a run with another number of processes than {workers}.",
                         "Resume with the same --data-parallel as the interrupted run.")  # fmt: skip
    if resume_source(Path(output)) is None:
        raise UsageError(f"Nothing to resume: neither {output} nor its parts exist.", "Drop --resume to start the run.")
    done = read_done(output)
    writers = [AtomicFile(p) for p in ours]
    try:
        for number in range(len(done.records) // window):
            for record in done.records[number * window : (number + 1) * window]:
                writers[number % workers].write(dumps({"window": number, "record": record}) + "\n")
        for writer in writers:
            writer.commit()
    except BaseException:
        for writer in writers:
            writer.discard()
        raise


def execute_parallel(spec: RunSpec, sink: RecordSink | None, events: Events) -> RunResult:
    """Run ``spec`` in ``spec.data_parallel`` local processes (see the module docstring)."""
    import torch.multiprocessing as mp

    from ..models.resolve import resolve_spec

    workers = spec.data_parallel
    to_file = sink is None and spec.output.path not in (None, "-")
    if spec.resume and not to_file:
        raise UsageError("--resume continues an output file.", "Give the interrupted run's -o FILE.")
    if spec.resume:
        assert spec.output.path is not None
        _resume_parts(spec.output.path, workers, spec.task.settings.window)
    events(Loading(spec.model))
    resolve_spec(spec.model, quiet=spec.quiet)  # fetch once here, so that the replicas only read the cache
    model = replace(spec.model, offline=True)
    if devices_for(workers, gpu_count() if spec.model.device != "cpu" else 0)[0] == "cpu":
        model = replace(model, device="cpu")
    folder = Path(tempfile.mkdtemp(prefix="b2ner-data-parallel-"))
    try:
        ranked = _spool_stdin(replace(spec, model=model), folder)
        if not to_file:  # rank 0 merges into a private file; this process streams it to the sink
            ranked = replace(ranked, output=OutputSpec(str(folder / "records.jsonl"), folder / "records.meta.json",
                                                       spec.output.keep_raw))  # fmt: skip
        output = ranked.output.path
        assert output is not None
        parts = [part_path(output, rank, workers) for rank in range(workers)]
        place = Place(workers, free_port(), os.getpid(), max(1, (os.cpu_count() or 1) // workers))
        return _launch(spec, ranked, place, parts, sink, events, mp)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _launch(spec: RunSpec, ranked: RunSpec, place: Place, parts: list[Path], sink: RecordSink | None,
            events: Events, mp: Any) -> RunResult:  # fmt: skip
    messages = mp.get_context("spawn").SimpleQueue()
    counter = PartCounter(parts)
    total = _total(ranked)
    status: Status = "failed"
    done: tuple[Any, ...] | None = None
    context = mp.start_processes(_rank, args=(ranked, place, messages), nprocs=place.world_size, join=False,
                                 start_method="spawn")  # fmt: skip
    loaded: list[float] = []  # when rank 0 said its model is loaded: progress shows from then on

    def forward(event: Any) -> None:
        if isinstance(event, Loaded) and not loaded:
            loaded.append(time.time())
        events(event)

    try:
        finished = False
        while not finished:
            try:
                finished = context.join(timeout=POLL_SECONDS)
            except mp.ProcessExitedException as stop:
                _drain(messages, forward)  # a process reported why it stopped: that is the error
                how = f"signal {stop.signal_name}" if stop.signal_name else f"exit code {stop.exit_code}"
                raise ModelError(f"A data-parallel process stopped unexpectedly ({how}).") from None
            done = _drain(messages, forward) or done
            counter.update()
            if loaded:
                events(Progress(counter.stats, time.time() - loaded[0], total))
        if done is None:
            raise RuntimeError("The data-parallel processes ended without rank 0's result.")
        status = "complete"
    except KeyboardInterrupt:
        status = "interrupted"
        raise
    finally:
        for process in context.processes:
            if process.is_alive():
                process.terminate()
        for process in context.processes:
            process.join(timeout=10)
        if status != "complete":
            _stopped(spec, ranked, counter, status, events)
    _, manifest, stats, records, seconds = done
    result = RunResult("complete", RunStats(**stats), records, seconds, manifest, None)
    if ranked.output.path == spec.output.path:
        result.output = Path(str(spec.output.path))
    else:  # stdout or a table
        if sink is None:
            from .run import JsonlSink

            sink = JsonlSink(None, spec.output.keep_raw)
        result.output = _stream(ranked.output.path, sink)
    manifest.update(inputs=list(spec.inputs), output=spec.output.path or "-")  # not the spooled stdin or temp file
    meta = spec.output.meta_path()
    if meta is not None:
        write_json_atomic(meta, manifest)
    return result


def _total(spec: RunSpec) -> int | None:
    from .run import count_documents

    return count_documents(spec.inputs, spec.read)


def _drain(messages: Any, events: Events) -> tuple[Any, ...] | None:
    """Re-emit rank 0's events; raise a process's reported error; rank 0's result when it came."""
    done = None
    while True:
        try:
            if messages.empty():
                return done
            item = messages.get()
        except (OSError, EOFError, queue.Empty):
            return done
        if item[0] == "event":
            events(item[1])
        elif item[0] in ("error", "crash"):
            _raise_reported(item)
        elif item[0] == "done":
            done = item


def _stream(path: str | None, sink: RecordSink) -> Path | None:
    """The merged records, in input order, to the sink (already relabeled by the ranks)."""
    from .run import JsonlSink

    assert path is not None
    complete = False
    try:
        with open(path, encoding="utf-8") as stream:
            for line in stream:
                record = json.loads(line)
                if isinstance(sink, JsonlSink):
                    sink.write_dict(record)
                else:
                    sink.write(Record.from_dict(record))
        complete = True
    finally:
        sink.close(complete)
    return sink.path


def _stopped(spec: RunSpec, ranked: RunSpec, counter: PartCounter, status: Status, events: Events) -> None:
    """After a stop: with -o, the metadata says so and the parts stay for --resume."""
    counter.update()
    if ranked.output.path != spec.output.path:  # stdout or a table: the parts go with the temporary folder
        return
    kept = counter.stats.documents
    events(Note(f"{spec.output.path} was not written; the parts beside it (.{Path(str(spec.output.path)).name}"
                f".rank-R-of-{spec.data_parallel}.jsonl) hold {kept} records: the same command with --resume "
                "continues from them."))  # fmt: skip
    meta = spec.output.meta_path()
    if meta is not None:
        manifest = manifest_of(spec, spec.task)
        shared = {"world_size": spec.data_parallel, "records_per_rank": counter.records}
        manifest.update(status=status, finished_at=now(), records_written=0, stats=counter.stats.to_dict(),
                        distributed=shared)  # fmt: skip
        write_json_atomic(meta, manifest)
