"""How long `split_text` takes on long text without whitespace (unspaced Latin and CJK), 10k to 1M characters.

Baseline, measured in the same run: the previous hard cut, a bisection over the whole remainder of the text for
every piece (quadratic: seconds for 100k characters). It is skipped at 1M characters (minutes). The token counter
is the test suite's tiny byte-level BPE tokenizer (``b2ner_cli.testing.build_tokenizer``), as the pipeline counts
with its model's tokenizer.
Target: time grows linearly (1M characters in about 10x the time of 100k).

    python benchmarks/bench_chunking.py
"""

from __future__ import annotations

import time

from b2ner_cli import chunking
from b2ner_cli.chunking import split_text

BUDGET = 512


def bisect_whole_remainder(text, start, end, count, budget):  # the previous _hard_split
    pieces = []
    while start < end:
        lo, hi = start + 1, end
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if count(text[start:mid]) <= budget:
                lo = mid
            else:
                hi = mid - 1
        pieces.append((start, lo, count(text[start:lo])))
        start = lo
    return pieces


def seconds(text: str, count) -> float:
    began = time.perf_counter()
    split_text(text, count, BUDGET)
    return time.perf_counter() - began


def main() -> None:
    from b2ner_cli.testing import build_tokenizer

    tokenizer = build_tokenizer()

    def count(text: str) -> int:
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])

    print(f"{'text':<10} {'chars':>9} {'b2ner s':>9} {'baseline s':>11} {'speed-up':>9}")
    for name, unit in (("unspaced", "abcdefghij"), ("CJK", "中文句子没有空格也很长")):
        for size in (10_000, 100_000, 1_000_000):
            text = (unit * (size // len(unit) + 1))[:size]
            ours = seconds(text, count)
            base = None
            if size <= 100_000:
                current = chunking._hard_split
                chunking._hard_split = bisect_whole_remainder
                try:
                    base = seconds(text, count)
                finally:
                    chunking._hard_split = current
            shown = f"{base:11.3f}" if base is not None else f"{'skipped':>11}"
            ratio = f"{base / ours:8.1f}x" if base is not None else f"{'':>9}"
            print(f"{name:<10} {size:>9,} {ours:9.3f} {shown} {ratio}")


if __name__ == "__main__":
    main()
