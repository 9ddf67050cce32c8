"""`b2ner bench`: extraction speed on a model and input, over a sweep of batch sizes, with the setup recorded."""

from __future__ import annotations

import platform
import random
import resource
import statistics
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from . import __version__
from .engine.base import Generation, Generator
from .io.readers import Document
from .pipeline import ExtractSettings, RunStats, extract
from .prompts import LabelSet

_NAMES = ["Barack Obama", "Marie Curie", "Ada Lovelace", "Angela Merkel", "Li Ming", "Pierre Curie"]
_ORGS = ["Microsoft", "the European Central Bank", "Airbus", "the United Nations", "Apple"]
_PLACES = ["Seattle", "Paris", "Frankfurt", "Berlin", "New York", "Beijing"]
_WORDS = [
    "visited", "met", "announced", "that", "in", "on", "last", "week", "with", "the", "a", "new", "plan", "for",
    "about", "and", "said", "today",
]  # fmt: skip


def synthetic_corpus(count: int, seed: int = 0) -> list[Document]:
    """Short English news-like sentences with people, organizations and places."""
    rng = random.Random(seed)
    documents = []
    for i in range(count):
        words = [rng.choice(_WORDS) for _ in range(rng.randint(4, 14))]
        for pool in (_NAMES, _ORGS, _PLACES):
            if rng.random() < 0.7:
                words.insert(rng.randrange(len(words) + 1), rng.choice(pool))
        documents.append(Document(id=f"synthetic:{i + 1}", text=" ".join(words) + " .", source="synthetic"))
    return documents


@dataclass
class _Timed:
    """Wraps a generator to time each batch and count prompt tokens."""

    inner: Generator
    latencies: list[float] = field(default_factory=list)
    prompt_tokens: int = 0
    max_new_tokens: int = 0

    def __post_init__(self) -> None:
        self.max_new_tokens = self.inner.max_new_tokens

    def count_tokens(self, text: str) -> int:
        return self.inner.count_tokens(text)

    def encode(self, instruction: str) -> list[int]:
        return self.inner.encode(instruction)

    def generate(self, batch: Sequence[list[int]]) -> list[Generation]:
        start = time.perf_counter()
        result = self.inner.generate(batch)
        self.latencies.append(time.perf_counter() - start)
        self.prompt_tokens += sum(len(ids) for ids in batch)
        return result

    def suggest_batch_tokens(self) -> int | None:
        return self.inner.suggest_batch_tokens()

    def token_texts(self, tokens: Sequence[int]) -> list[str]:
        return self.inner.token_texts(tokens)

    def describe(self) -> dict[str, object]:
        return self.inner.describe()


def _peak_rss_bytes() -> int:
    """The process's peak RSS over its whole life (ru_maxrss); only a fallback where the current RSS is unknown."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def _current_rss_bytes() -> int | None:
    """The process's RSS now (Linux ``/proc/self/statm``), or None where that file does not exist."""
    try:
        with open("/proc/self/statm", encoding="ascii") as stream:
            return int(stream.read().split()[1]) * resource.getpagesize()
    except (OSError, ValueError, IndexError):
        return None


class _RssPeak:
    """The highest RSS while a block runs, sampled every ``interval`` seconds from a thread (and at both ends).

    Each batch size is measured on its own this way: ru_maxrss would carry the peak of an earlier, larger size
    into every later one. A spike shorter than the interval can be missed.
    """

    def __init__(self, interval: float = 0.005) -> None:
        self.interval = interval
        self.start: int | None = None
        self.peak: int | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _see(self) -> None:
        now = _current_rss_bytes()
        if now is not None:
            self.peak = max(self.peak or 0, now)

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            self._see()

    def __enter__(self) -> _RssPeak:
        self.start = _current_rss_bytes()
        self._see()
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()
        self._see()


def environment(generator: Generator) -> dict[str, Any]:
    import os

    info: dict[str, Any] = {
        "b2ner_version": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "model": generator.describe(),
    }
    try:
        import torch
        import transformers

        info.update(torch=torch.__version__, transformers=transformers.__version__,
                    torch_threads=torch.get_num_threads(),
                    gpus=[torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())])  # fmt: skip
    except ImportError:  # a fake generator in tests
        pass
    return info


def run(generator: Generator, documents: Sequence[Document], labels: LabelSet, batch_sizes: Sequence[int],
        *, batch_tokens: int = 10**9) -> dict[str, Any]:  # fmt: skip
    """One extraction pass per batch size; throughput, batch latency percentiles and peak memory for each.

    Memory is measured per batch size: ``peak_rss_bytes`` is the highest RSS sampled during that size's pass (the
    process's lifetime peak where the current RSS cannot be read), ``rss_growth_bytes`` its rise over the RSS at the
    pass's start, and ``peak_gpu_bytes`` the CUDA allocator's peak, reset before each size.
    """
    runs = []
    cuda = _cuda()
    for size in batch_sizes:
        timed = _Timed(generator)
        stats = RunStats()
        if cuda:
            cuda.reset_peak_memory_stats()
        with _RssPeak() as rss:
            start = time.perf_counter()
            settings = ExtractSettings(batch_size=size, batch_tokens=batch_tokens)
            for _ in extract(documents, timed, labels, settings=settings, stats=stats):
                pass
            seconds = time.perf_counter() - start
        latencies = sorted(timed.latencies)
        runs.append({
            "batch_size": size, "documents": stats.documents, "batches": len(latencies), "seconds": seconds,
            "documents_per_second": stats.documents / seconds,
            "prompt_tokens_per_second": timed.prompt_tokens / seconds,
            "generated_tokens_per_second": stats.new_tokens / seconds,
            "batch_latency_p50_s": statistics.median(latencies) if latencies else 0.0,
            "batch_latency_p95_s": _percentile(latencies, 0.95),
            "peak_rss_bytes": rss.peak if rss.peak is not None else _peak_rss_bytes(),
            "rss_growth_bytes": rss.peak - rss.start if rss.peak is not None and rss.start is not None else None,
            "peak_gpu_bytes": int(cuda.max_memory_allocated()) if cuda else None,
        })  # fmt: skip
    return {"environment": environment(generator), "documents": len(documents), "labels": list(labels.names),
            "runs": runs}  # fmt: skip


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    position = q * (len(values) - 1)
    low = int(position)
    high = min(low + 1, len(values) - 1)
    return values[low] + (values[high] - values[low]) * (position - low)


def _cuda() -> Any:
    try:
        import torch
    except ImportError:
        return None
    return torch.cuda if torch.cuda.is_available() else None
