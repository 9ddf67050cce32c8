"""Dynamic batching: requests that arrive together go through the recognizer as one window.

One worker thread owns the recognizer, so the model serves one caller at a time. The first request of a batch waits
at most ``wait`` seconds for others to join it; a batch closes early when it holds ``max_texts`` texts. Each request
brings its own documents (with their own labels: ``Document.labels``) and gets back exactly its own records, as soon
as they are complete. When a batch fails, its requests run again one by one, so that a request the recognizer
refuses fails alone.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field, replace

from ..errors import B2nerError
from ..io.readers import Document
from ..records import Record
from ..runs.recognizer import Recognizer, stream
from ..runs.settings import RunStats, Task


class Stopping(B2nerError):
    """The service is shutting down; the request was not run."""


@dataclass
class _Job:
    documents: Sequence[Document]
    future: Future[list[Record]] = field(default_factory=Future)


@dataclass
class BatchCounts:
    """What the batcher has done so far."""

    requests: int = 0
    batches: int = 0
    documents: int = 0


class Batcher:
    """Runs ``recognizer`` over the documents of requests batched together, in one worker thread."""

    def __init__(self, recognizer: Recognizer, task: Task, *, wait: float = 0.01, max_texts: int = 256) -> None:
        if max_texts < 1:
            raise ValueError("max_texts must be at least 1")
        self.recognizer = recognizer
        #: a batch is one window (a request larger than ``max_texts`` is cut into windows of that size).
        self.task = replace(task, settings=replace(task.settings, window=max_texts))
        self.wait = max(0.0, wait)
        self.max_texts = max_texts
        self.counts = BatchCounts()
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._closed = False

    def submit(self, documents: Sequence[Document]) -> Future[list[Record]]:
        """The records of ``documents``, in their order, once the batch holding them has run."""
        job = _Job(documents)
        with self._lock:
            if self._closed:
                job.future.set_exception(Stopping("The service is shutting down."))
                return job.future
            if self._thread is None:
                self._thread = threading.Thread(target=self._work, name="b2ner-batcher", daemon=True)
                self._thread.start()
            self._queue.put(job)
        return job.future

    def close(self) -> None:
        """Stop taking requests; those still waiting fail with :class:`Stopping`. The batch being run finishes
        (its thread is a daemon: it does not hold the process when the server has stopped)."""
        with self._lock:
            self._closed = True
            self._queue.put(None)

    def __enter__(self) -> Batcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the worker thread ---------------------------------------------------------------------------------------

    def _work(self) -> None:
        carried: _Job | None = None
        while True:
            first = carried if carried is not None else self._queue.get()
            carried = None
            if first is None:
                break
            batch, size, stop = [first], len(first.documents), False
            deadline = time.monotonic() + self.wait
            while size < self.max_texts:
                left = deadline - time.monotonic()
                try:
                    job = self._queue.get(timeout=left) if left > 0 else self._queue.get_nowait()
                except queue.Empty:
                    break
                if job is None:
                    stop = True
                    break
                if size + len(job.documents) > self.max_texts:
                    carried = job  # it opens the next batch
                    break
                batch.append(job)
                size += len(job.documents)
            self._run(batch)
            if stop:
                break
        self._drain(carried)

    def _drain(self, carried: _Job | None) -> None:
        pending = [carried] if carried is not None else []
        while True:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                break
            if job is not None:
                pending.append(job)
        for job in pending:
            if job.future.set_running_or_notify_cancel():
                job.future.set_exception(Stopping("The service is shutting down."))

    def _run(self, batch: list[_Job]) -> None:
        jobs = [job for job in batch if job.future.set_running_or_notify_cancel()]  # not those given up on
        if not jobs:
            return
        self.counts.requests += len(jobs)
        self.counts.batches += 1
        left = self._feed(jobs)
        if left and len(jobs) > 1:  # the batch failed: each request not yet answered runs again on its own
            for job in left:
                self.counts.batches += 1
                self._feed([job])

    def _feed(self, jobs: list[_Job]) -> list[_Job]:
        """Run ``jobs`` as one window; answer each as soon as its records are complete. On a failure, the jobs not
        answered: with several, none is failed (the caller runs them again); a single one gets the exception."""
        documents = [d for job in jobs for d in job.documents]
        waiting = list(jobs)
        done: list[Record] = []
        try:
            records = stream(self.recognizer, documents, self.task, RunStats())
            while waiting:
                if len(done) == len(waiting[0].documents):
                    waiting.pop(0).future.set_result(done)
                    done = []
                    continue
                record = next(records, None)
                if record is None:
                    raise RuntimeError(f"The recognizer returned fewer records than the {len(documents)} documents.")
                done.append(record)
                self.counts.documents += 1
            next(records, None)  # let the recognizer finish its window
        except Exception as error:  # a bad request, or a bug, must not stop the service
            if len(waiting) == 1:
                waiting[0].future.set_exception(error)
                return []
            return waiting
        return []
