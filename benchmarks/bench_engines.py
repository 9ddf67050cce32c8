"""The two engines on the same CPU workload as bench_throughput.py: hf (shared-prefix cache) against continuous
(transformers' continuous batching), through the real pipeline, with the same answers.

    python benchmarks/bench_engines.py [--docs 300]
"""

from __future__ import annotations

import argparse
import time

import torch
from bench_extract import corpus
from bench_throughput import LABELS

from b2ner_cli.api import Extractor
from b2ner_cli.engine.continuous import ContinuousGenerator
from b2ner_cli.engine.hf import HFGenerator
from b2ner_cli.pipeline import ExtractSettings
from b2ner_cli.testing import build_model, build_tokenizer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=300)
    parser.add_argument("--max-new-tokens", type=int, default=24)
    args = parser.parse_args()
    if not ContinuousGenerator.available():
        raise SystemExit("this transformers has no continuous batching")
    torch.manual_seed(0)
    tokenizer = build_tokenizer(corpus(200, seed=1))
    model = build_model(len(tokenizer))
    docs = corpus(args.docs)
    hf = HFGenerator(model, tokenizer, max_new_tokens=args.max_new_tokens)
    cb = ContinuousGenerator(model, tokenizer, max_new_tokens=args.max_new_tokens)
    print(f"{len(docs)} documents, {len(LABELS.names)} labels, {torch.get_num_threads()} threads")
    Extractor(hf).extract(docs[:8], LABELS)
    Extractor(cb).extract(docs[:8], LABELS)  # warm-up (starts the manager)
    rates, raws = {}, {}
    for name, generator, batch in (("hf, batches of 32", hf, 32), ("continuous, batches of 32", cb, 32),
                                   ("continuous, batches of 256", cb, 256)):  # fmt: skip
        settings = ExtractSettings(batch_size=batch, batch_tokens=10**9)
        start = time.perf_counter()
        records = Extractor(generator, settings).extract(docs, LABELS)
        rates[name] = len(docs) / (time.perf_counter() - start)
        raws[name] = [r.raw for r in records]
        print(f"{name:28s} {rates[name]:8.1f} docs/s")
    cb.close()
    first = next(iter(raws.values()))
    same = {name: sum(a == b for a, b in zip(first, got, strict=True)) for name, got in raws.items()}
    print(f"same answers as hf: {same}")
    best = max(v for k, v in rates.items() if k.startswith("continuous"))
    print(f"best continuous / hf = {best / rates['hf, batches of 32']:.2f}x")


if __name__ == "__main__":
    main()
