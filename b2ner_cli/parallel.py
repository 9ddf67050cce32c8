"""Data-parallel extraction: one model replica per worker process (one per GPU), inputs sharded by window,
outputs merged back in input order. Memory stays bounded: at most two windows per worker are in flight."""

from __future__ import annotations

import multiprocessing
import os
import queue
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import fields
from itertools import islice
from typing import Any

from .errors import B2nerError, ModelError
from .io.readers import Document
from .pipeline import ExtractSettings, Record, RunStats
from .prompts import Example, LabelSet


def _worker(index: int, device: str, threads: int, load: dict[str, Any], labels: LabelSet | None,
            examples: Sequence[Example], settings: ExtractSettings, tasks: Any, results: Any) -> None:  # fmt: skip
    if device.startswith("cuda:"):
        os.environ["CUDA_VISIBLE_DEVICES"] = device.split(":", 1)[1]  # this replica sees its own GPU as cuda:0
    try:
        import torch

        torch.set_num_threads(threads)
        from .api import Extractor
        from .pipeline import extract

        extractor = Extractor.load(**load, device="cpu" if device == "cpu" else "cuda", settings=settings)
        results.put(("ready", index, extractor.generator.describe()))
        while (task := tasks.get()) is not None:
            number, documents = task
            stats = RunStats()
            records = list(extract(documents, extractor.generator, labels, examples, settings, stats))
            results.put(("done", number, (records, stats)))
    except BaseException as exc:  # report everything, including user errors, to the parent
        results.put(("error", index, exc if isinstance(exc, B2nerError) else RuntimeError(repr(exc))))


def _add(total: RunStats, part: RunStats) -> None:
    for f in fields(RunStats):
        value = getattr(part, f.name)
        if isinstance(value, dict):
            merged = getattr(total, f.name)
            for key, count in value.items():
                merged[key] = merged.get(key, 0) + count
        else:
            setattr(total, f.name, getattr(total, f.name) + value)


def devices_for(workers: int, gpus: int) -> list[str]:
    """One GPU per worker when there are enough GPUs, else CPU workers."""
    return [f"cuda:{i}" for i in range(workers)] if gpus >= workers else ["cpu"] * workers


def parallel_extract(
    documents: Iterable[Document],
    load: dict[str, Any],
    labels: LabelSet | None,
    examples: Sequence[Example],
    settings: ExtractSettings,
    devices: Sequence[str],
    stats: RunStats,
    *,
    window: int = 256,
    described: dict[str, object] | None = None,
) -> Iterator[Record]:
    """Records in input order, computed by ``len(devices)`` worker processes, each with its own model replica."""
    context = multiprocessing.get_context("spawn")
    workers = len(devices)
    threads = max(1, (os.cpu_count() or 1) // workers)
    tasks = [context.Queue() for _ in range(workers)]
    results = context.Queue()
    processes = [
        context.Process(
            target=_worker,
            args=(i, devices[i], threads, load, labels, list(examples), settings, tasks[i], results),
            daemon=True,
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
        _add(stats, part)
        finished[number] = records
        while emitted in finished:
            yield from finished.pop(emitted)
            emitted += 1
