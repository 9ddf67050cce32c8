"""Extraction throughput of b2ner's pipeline against a one-document-at-a-time generate loop.

Both sides use the same small random Llama, the same B2NER prompts and greedy decoding, measured
in the same run on a fixed synthetic corpus. The baseline calls ``model.generate`` once per
document, as upstream's demo does; b2ner sorts prompts by length and generates them in
token-budgeted, left-padded batches. Prints documents/s, generated tokens/s and the ratio.

    python benchmarks/bench_extract.py                 # 2,000 documents (a few minutes on 2 cores)
    python benchmarks/bench_extract.py --docs 300      # a quick look
"""

from __future__ import annotations

import argparse
import time

import torch

from b2ner_cli.api import Extractor
from b2ner_cli.benchmark import synthetic_corpus
from b2ner_cli.engine.hf import HFGenerator
from b2ner_cli.pipeline import ExtractSettings, RunStats
from b2ner_cli.prompts import LabelSet, build_instruction
from b2ner_cli.testing import build_model, build_tokenizer, encode_prompt

LABELS = LabelSet(("person", "organization", "location"))


def corpus(n: int, seed: int = 0) -> list[str]:
    return [d.text for d in synthetic_corpus(n, seed)]


def baseline(model, tokenizer, docs: list[str], max_new_tokens: int) -> tuple[float, int, list[str]]:
    eos = tokenizer.eos_token_id
    answers, tokens = [], 0
    start = time.perf_counter()
    with torch.inference_mode():
        for doc in docs:
            ids = torch.tensor([encode_prompt(tokenizer, build_instruction(doc, LABELS, "en"))])
            out = model.generate(
                input_ids=ids,
                attention_mask=torch.ones_like(ids),
                max_new_tokens=max_new_tokens,
                do_sample=False,
                num_beams=1,
                eos_token_id=eos,
                pad_token_id=eos,
            )[0, ids.shape[1] :].tolist()
            if eos in out:
                out = out[: out.index(eos)]
            tokens += len(out)
            answers.append(tokenizer.decode(out, skip_special_tokens=True))
    return time.perf_counter() - start, tokens, answers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=2000)
    parser.add_argument("--baseline-docs", type=int, default=None, help="documents for the baseline (default: all)")
    parser.add_argument("--max-new-tokens", type=int, default=24)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--hidden-size", type=int, default=64)
    args = parser.parse_args()

    torch.manual_seed(0)
    tokenizer = build_tokenizer(corpus(200, seed=1))
    model = build_model(len(tokenizer), hidden_size=args.hidden_size)
    docs = corpus(args.docs)
    base_docs = docs[: args.baseline_docs or args.docs]
    print(
        f"corpus: {len(docs)} documents, model: random Llama hidden {args.hidden_size}, "
        f"{sum(p.numel() for p in model.parameters()):,} parameters, torch threads {torch.get_num_threads()}"
    )

    generator = HFGenerator(model, tokenizer, max_new_tokens=args.max_new_tokens)
    extractor = Extractor(generator, ExtractSettings(batch_size=args.batch_size))
    extractor.extract(docs[:8], LABELS)  # warm-up, both paths share it
    stats = RunStats()
    start = time.perf_counter()
    records = extractor.extract(docs, LABELS, stats=stats)
    ours_s = time.perf_counter() - start

    base_s, base_tokens, base_answers = baseline(model, tokenizer, base_docs, args.max_new_tokens)

    agree = sum(r.raw == a for r, a in zip(records, base_answers, strict=False))
    ours_dps, base_dps = len(docs) / ours_s, len(base_docs) / base_s
    print(
        f"baseline (generate per document): {len(base_docs)} docs in {base_s:.1f} s = {base_dps:.1f} docs/s, "
        f"{base_tokens / base_s:.0f} generated tokens/s"
    )
    print(
        f"b2ner extract pipeline:            {len(docs)} docs in {ours_s:.1f} s = {ours_dps:.1f} docs/s, "
        f"{stats.new_tokens / ours_s:.0f} generated tokens/s (batch size {args.batch_size})"
    )
    print(f"same answers as the baseline: {agree}/{len(base_docs)}")
    print(f"speed-up: {ours_dps / base_dps:.1f}x documents/s (target: >= 10x)")


if __name__ == "__main__":
    main()
