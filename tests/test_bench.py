"""`b2ner bench` on the tiny model: one run per batch size, with figures and the setup recorded."""

from __future__ import annotations

import json

from helpers import cli

from b2ner_cli.benchmark import synthetic_corpus


def test_bench_json(tiny) -> None:
    result = cli("bench", "-m", str(tiny.base), "--adapter", str(tiny.adapter), "--docs", "20", "--batch-sizes", "1,8",
                 "--max-new-tokens", "8", "--json", "-q")  # fmt: skip
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["documents"] == 20 and report["labels"] == ["person", "organization", "location"]
    one, eight = report["runs"]
    assert (one["batch_size"], one["documents"], one["batches"]) == (1, 20, 20)
    assert (eight["batch_size"], eight["batches"]) == (8, 3)  # 20 documents in batches of at most 8
    for run in report["runs"]:
        assert run["documents_per_second"] > 0 and run["generated_tokens_per_second"] > 0
        assert 0 < run["batch_latency_p50_s"] <= run["batch_latency_p95_s"]
        assert run["peak_rss_bytes"] > 0 and run["peak_gpu_bytes"] is None
    assert report["environment"]["model"]["device"] == "cpu"
    assert {"torch", "transformers", "b2ner_version", "cpu_count"} <= set(report["environment"])


def test_bench_rejects_bad_batch_sizes() -> None:
    result = cli("bench", "--batch-sizes", "1,x")
    assert result.exit_code == 2
    assert result.stderr.startswith("Error: --batch-sizes 1,x: expected comma-separated integers")


def test_synthetic_corpus_is_fixed() -> None:
    first = synthetic_corpus(5)
    assert first == synthetic_corpus(5) and len({d.text for d in first}) == 5
    assert [d.id for d in first] == [f"synthetic:{i}" for i in range(1, 6)]
