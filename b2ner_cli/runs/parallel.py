"""Data-parallel runs: one recognizer replica per worker process (one per GPU), inputs sharded by window,
records merged back in input order. Memory stays bounded: at most two windows per worker are in flight."""

from __future__ import annotations

import multiprocessing
import os
import queue
import signal
import sys
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import replace
from itertools import islice
from typing import Any

from ..errors import B2nerError, ModelError, UsageError
from ..io.readers import Document
from ..models.spec import ModelSpec
from ..records import Record
from .settings import RunStats, Task


def _die_with(parent: int) -> None:
    """A worker never outlives its parent (killed, crashed): on Linux the kernel sends it SIGKILL when the parent
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


def _worker(index: int, device: str, threads: int, spec: ModelSpec, task: Task, tasks: Any, results: Any,
            parent: int) -> None:  # fmt: skip
    _die_with(parent)
    if device.startswith("cuda:"):
        os.environ["CUDA_VISIBLE_DEVICES"] = device.split(":", 1)[1]  # this replica sees its own GPU as cuda:0
    try:
        import torch

        torch.set_num_threads(threads)
        from .recognizer import LoadOptions, load_recognizer

        recognizer = load_recognizer(
            replace(spec, device="cpu" if device == "cpu" else "cuda"), LoadOptions(quiet=True)
        )
        results.put(("ready", index, recognizer.describe()))
        while (work := tasks.get()) is not None:
            number, documents = work
            stats = RunStats()
            records = list(recognizer.recognize(documents, task, stats))
            results.put(("done", number, (records, stats)))
    except BaseException as exc:  # report everything, including user errors, to the parent
        results.put(("error", index, exc if isinstance(exc, B2nerError) else RuntimeError(repr(exc))))


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


def parallel_stream(
    documents: Iterable[Document],
    spec: ModelSpec,
    task: Task,
    devices: Sequence[str],
    stats: RunStats,
    *,
    window: int = 256,
    described: dict[str, object] | None = None,
) -> Iterator[Record]:
    """Records in input order, computed by ``len(devices)`` worker processes, each with its own replica of ``spec``."""
    context = multiprocessing.get_context("spawn")
    workers = len(devices)
    threads = max(1, (os.cpu_count() or 1) // workers)
    tasks = [context.Queue() for _ in range(workers)]
    results = context.Queue()
    processes = [
        context.Process(
            target=_worker, args=(i, devices[i], threads, spec, task, tasks[i], results, os.getpid()), daemon=True
        )
        for i in range(workers)
    ]
    for process in processes:
        process.start()
    try:
        yield from _run(iter(documents), tasks, results, processes, stats, window, described)
    finally:
        for process in processes:
            if process.is_alive():
                process.terminate()
            process.join(timeout=5)


def _run(documents: Iterator[Document], tasks: list[Any], results: Any, processes: list[Any], stats: RunStats,
         window: int, described: dict[str, object] | None) -> Iterator[Record]:  # fmt: skip
    workers = len(tasks)
    sent = emitted = 0
    finished: dict[int, list[Record]] = {}
    exhausted = False
    while True:
        while not exhausted and sent - emitted < 2 * workers:
            chunk = list(islice(documents, window))
            if not chunk:
                exhausted = True
                for task_queue in tasks:
                    task_queue.put(None)
                break
            tasks[sent % workers].put((sent, chunk))
            sent += 1
        if exhausted and emitted == sent:
            return
        try:
            kind, number, payload = results.get(timeout=1.0)
        except queue.Empty:
            dead = [p for p in processes if not p.is_alive() and p.exitcode not in (0, None)]
            if dead:
                raise ModelError(
                    f"A data-parallel worker stopped unexpectedly (exit code {dead[0].exitcode})."
                ) from None
            continue
        if kind == "error":
            raise payload
        if kind == "ready":
            if described is not None and not described:
                described.update(payload)
            continue
        records, part = payload
        stats.add(part)
        finished[number] = records
        while emitted in finished:
            yield from finished.pop(emitted)
            emitted += 1
