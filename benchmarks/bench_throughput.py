"""Extraction throughput, one process, same model and inputs: three ways of running B2NER prompts.

(a) one document at a time through transformers' generate (upstream's demo);
(b) fixed batches of 4 in input order, no prefix sharing (upstream's evaluation setting);
(c) b2ner: length-sorted token-budget batches with the shared-prefix KV cache;
and (c) without the prefix cache, to show what the cache alone buys. A label set of 16 labels, so the shared
prefix (instruction + labels) is long, as in real B2NER use. Checks that all give the same answers.

    python benchmarks/bench_throughput.py [--docs 1000] [--baseline-docs 200]
"""

from __future__ import annotations

import argparse
import time

import torch
from bench_extract import corpus

from b2ner_cli.api import Extractor
from b2ner_cli.engine.hf import HFGenerator
from b2ner_cli.pipeline import ExtractSettings, RunStats
from b2ner_cli.prompts import LabelSet, build_instruction
from b2ner_cli.testing import build_model, build_tokenizer

LABELS = LabelSet((
    "person", "organization", "location", "date or period", "event", "product", "work of art", "law",
    "language", "nationality", "money", "percentage", "quantity", "facility", "award", "disease",
))  # fmt: skip


def timed(fn) -> tuple[float, object]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=1000)
    parser.add_argument("--baseline-docs", type=int, default=200, help="documents for (a), the slowest")
    parser.add_argument("--max-new-tokens", type=int, default=24)
    args = parser.parse_args()

    torch.manual_seed(0)
    tokenizer = build_tokenizer(corpus(200, seed=1))
    model = build_model(len(tokenizer))
    docs = corpus(args.docs)
    cached = HFGenerator(model, tokenizer, max_new_tokens=args.max_new_tokens)
    plain = HFGenerator(model, tokenizer, max_new_tokens=args.max_new_tokens, prefix_cache=False)
    prompt_tokens = len(cached.encode(build_instruction(docs[0], LABELS, "en")))
    print(
        f"{len(docs)} documents, {len(LABELS.names)} labels ({prompt_tokens} prompt tokens for the first), "
        f"random Llama {sum(p.numel() for p in model.parameters()):,} parameters, {torch.get_num_threads()} threads"
    )

    def encode_all(subset: list[str]) -> list[list[int]]:
        return [cached.encode(build_instruction(d, LABELS, "en")) for d in subset]

    Extractor(cached).extract(docs[:8], LABELS)  # warm-up

    subset = docs[: args.baseline_docs]
    encoded = encode_all(subset)
    a_s, a_out = timed(lambda: [plain.generate([ids])[0].answer for ids in encoded])
    b_s, b_out = timed(
        lambda: [g.answer for i in range(0, len(encoded), 4) for g in plain.generate(encoded[i : i + 4])]
    )
    stats = RunStats()
    c_s, c_records = timed(lambda: Extractor(cached).extract(docs, LABELS, stats=stats))
    d_s, d_records = timed(lambda: Extractor(plain, ExtractSettings()).extract(docs, LABELS))

    c_raw = [r.raw for r in c_records]
    same = sum(x == y == z for x, y, z in zip(a_out, b_out, c_raw[: len(subset)], strict=True))
    same_d = sum(x == y for x, y in zip(c_raw, [r.raw for r in d_records], strict=True))
    rate = {"a": len(subset) / a_s, "b": len(subset) / b_s, "c": len(docs) / c_s, "d": len(docs) / d_s}
    print(f"(a) one at a time (generate):          {rate['a']:8.1f} docs/s")
    print(f"(b) batches of 4, no prefix sharing:   {rate['b']:8.1f} docs/s")
    print(f"(c) b2ner (sorted batches + prefix):   {rate['c']:8.1f} docs/s, {stats.new_tokens / c_s:,.0f} new tokens/s")
    print(f"    b2ner without the prefix cache:    {rate['d']:8.1f} docs/s")
    print(f"same answers: (a)=(b)=(c) on {same}/{len(subset)}; (c)=(c without cache) on {same_d}/{len(docs)}")
    print(
        f"(c)/(a) = {rate['c'] / rate['a']:.1f}x (target >= 15x); (c)/(b) = {rate['c'] / rate['b']:.1f}x "
        f"(target >= 2.5x); prefix cache alone = {rate['c'] / rate['d']:.2f}x (target >= 1.3x)"
    )


if __name__ == "__main__":
    main()
