"""Extraction on one process against two torchrun ranks (CPU, a small random Llama), and the cost of rank 0's merge.

(1) The same input and model, `b2ner extract` in one process vs `torchrun --nproc-per-node 2` (each rank one
    thread, the single process two threads: the same cores), vs `--data-parallel 2` (the same rank path, started by
    b2ner itself) and, where Ray is installed, `--ray --data-parallel 2` (two actors). Prints documents/s for each,
    the ratios, and checks the outputs are byte-identical.
(2) `runs.distributed.merge` of N part records (default 1,000,000, as 2 parts of synthetic extract records): seconds
    and records/s.

    python benchmarks/bench_distributed.py [--docs 2000] [--merge-records 1000000]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_extract import corpus

from b2ner_cli.prompts import LabelSet, build_instruction
from b2ner_cli.runs.distributed import merge, part_path
from b2ner_cli.testing import build_model, build_tokenizer, save

LABELS = "person,organization,location"


def extract(command: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, env=env, check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=2000)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--merge-records", type=int, default=1_000_000)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        docs = corpus(args.docs)
        tokenizer = build_tokenizer([build_instruction(d, LabelSet(tuple(LABELS.split(","))), "en") for d in docs[:50]])
        model = save(build_model(len(tokenizer), hidden_size=args.hidden, layers=4), tokenizer, root / "model")
        source = root / "in.txt"
        source.write_text("".join(d + "\n" for d in docs), encoding="utf-8")
        common = ["extract", str(source), "-l", LABELS, "-m", str(model), "--device", "cpu", "--max-new-tokens",
                  "24", "-q", "--window", "64"]  # fmt: skip
        env = {**os.environ, "HF_HUB_OFFLINE": "1"}
        one = extract([sys.executable, "-m", "b2ner_cli", *common, "-o", str(root / "one.jsonl")],
                      {**env, "OMP_NUM_THREADS": "2"})  # fmt: skip
        two = extract([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                       "-m", "b2ner_cli", *common, "-o", str(root / "two.jsonl")],
                      {**env, "OMP_NUM_THREADS": "1"})  # fmt: skip
        local = extract([sys.executable, "-m", "b2ner_cli", *common, "-o", str(root / "local.jsonl"),
                         "--data-parallel", "2"], {**env, "OMP_NUM_THREADS": "2"})  # fmt: skip
        expected = (root / "one.jsonl").read_bytes()
        print(f"{args.docs} documents, random Llama hidden {args.hidden}, 4 layers, 2 CPU cores (wall time, loading "
              "included)")  # fmt: skip
        print(f"  one process (2 threads):        {one:6.1f} s = {args.docs / one:7.1f} docs/s")
        print(f"  torchrun, 2 ranks (1 thread):   {two:6.1f} s = {args.docs / two:7.1f} docs/s  ({one / two:.2f}x)")
        print(f"  --data-parallel 2:              {local:6.1f} s = {args.docs / local:7.1f} docs/s  "
              f"({one / local:.2f}x)")  # fmt: skip
        same = [(root / name).read_bytes() == expected for name in ("two.jsonl", "local.jsonl")]
        try:
            import ray  # noqa: F401
        except ImportError:
            print("  --ray: not installed (pip install 'b2ner[ray]')")
        else:
            on_ray = extract([sys.executable, "-m", "b2ner_cli", *common, "-o", str(root / "ray.jsonl"), "--ray",
                              "--data-parallel", "2"], {**env, "RAY_ADDRESS": ""})  # fmt: skip
            print(f"  --ray, 2 actors (1 CPU each):   {on_ray:6.1f} s = {args.docs / on_ray:7.1f} docs/s  "
                  f"({one / on_ray:.2f}x; Ray's start included)")  # fmt: skip
            same.append((root / "ray.jsonl").read_bytes() == expected)
        print(f"  outputs byte-identical to one process: {all(same)}")

        # (2) rank 0's merge: two part files of synthetic records in the journal format, windows of 256
        output = root / "merged.jsonl"
        window = 256
        parts = [part_path(output, rank, 2) for rank in range(2)]
        streams = [open(p, "w", encoding="utf-8") for p in parts]  # noqa: SIM115
        for number in range(-(-args.merge_records // window)):
            stream = streams[number % 2]
            for k in range(min(window, args.merge_records - number * window)):
                record = {"id": f"in.txt:{number * window + k + 1}", "text": docs[k % len(docs)],
                          "entities": [{"start": 0, "end": 3, "text": "Ada", "label": "person", "score": 0.9}],
                          "unmatched": []}  # fmt: skip
                stream.write(json.dumps({"window": number, "record": record}, ensure_ascii=False) + "\n")
        for stream in streams:
            stream.close()
        start = time.perf_counter()
        count = merge(parts, str(output))
        seconds = time.perf_counter() - start
        size = output.stat().st_size / 2**20
        print(f"merge of {count:,} records ({size:.0f} MiB) from 2 parts: {seconds:.1f} s = {count / seconds:,.0f} "
              "records/s")  # fmt: skip


if __name__ == "__main__":
    main()
