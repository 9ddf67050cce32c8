"""How fast `b2ner taxonomy search` answers: start-up, loading, and per-query latency.

Baseline, measured in the same run: difflib.get_close_matches over every name and alias (a plain fuzzy
lookup without ranking by field). Target: a search answers in well under 100 ms after start-up.

    python benchmarks/bench_taxonomy.py
"""

from __future__ import annotations

import difflib
import statistics
import subprocess
import sys
import time

QUERIES = [
    "company",
    "compnay",
    "PER",
    "B-ORG",
    "公司",
    "疾病",
    "movie genre",
    "date",
    "programming language",
    "cities",
    "GPE",
    "地址",
    "drug",
    "sports team",
    "musical instrument",
    "xyzzy",
]


def per_query_ms(fn, rounds: int = 20) -> list[float]:
    times = []
    for _ in range(rounds):
        for query in QUERIES:
            start = time.perf_counter()
            fn(query)
            times.append((time.perf_counter() - start) * 1000)
    return times


def main() -> None:
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "b2ner_cli", "taxonomy", "search", "company", "--json"],
        capture_output=True,
        text=True,
        check=True,
    )
    cli_ms = (time.perf_counter() - start) * 1000
    assert '"company"' in done.stdout

    from b2ner_cli.taxonomy.data import load
    from b2ner_cli.taxonomy.search import search

    start = time.perf_counter()
    taxonomy = load()
    load_ms = (time.perf_counter() - start) * 1000
    start = time.perf_counter()
    search("warm-up")  # builds the index
    index_ms = (time.perf_counter() - start) * 1000

    ours = per_query_ms(lambda q: search(q, limit=10))
    vocabulary = [n for t in taxonomy.types.values() for n in (t.en, t.zh, *t.aliases)]
    base = per_query_ms(lambda q: difflib.get_close_matches(q, vocabulary, n=10, cutoff=0.6))

    def p95(values: list[float]) -> float:
        return statistics.quantiles(values, n=20)[-1]

    print(f"taxonomy: {len(taxonomy.types)} types, {len(taxonomy.datasets)} datasets")
    print(f"whole command (python -m b2ner_cli taxonomy search company --json): {cli_ms:.0f} ms")
    print(f"load data: {load_ms:.1f} ms, build search index: {index_ms:.1f} ms")
    print(f"search: mean {statistics.mean(ours):.2f} ms, p95 {p95(ours):.2f} ms per query (target: well under 100 ms)")
    print(f"baseline difflib.get_close_matches: mean {statistics.mean(base):.2f} ms, p95 {p95(base):.2f} ms")
    print(f"ratio: search takes {statistics.mean(ours) / statistics.mean(base):.2f}x the baseline's time")


if __name__ == "__main__":
    main()
