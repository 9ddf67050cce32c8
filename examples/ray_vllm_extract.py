"""B2NER at cluster scale: Ray Data reads the corpus, vLLM generates (b2ner's ``--engine vllm``), b2ner prompts,
parses and grounds.

A recipe, not part of the b2ner package: it needs a Ray cluster with GPUs and vLLM, and it has not run in b2ner's
tests or CI (there is no GPU there). What it runs is tested: each actor is ``LLMRecognizer.load`` with
``engine="vllm"`` (``b2ner_cli/engine/vllm.py``, whose greedy answers equal b2ner's own engine's in
``tests/test_engine_vllm.py``, checked with vLLM's CPU build), so prompts, chunking, answer parsing, grounding,
scores and the record shape are those of ``b2ner extract``. What is not tested here is the Ray Data plumbing
(``read_json`` / ``map_batches`` / ``ActorPoolStrategy``): check it on one node with a small input before a large job.

Setup, once (B2NER_HOME and HF_HOME on a filesystem every node mounts)::

    pip install 'b2ner[ray,vllm]'                       # on every node
    export B2NER_HOME=/shared/b2ner HF_HOME=/shared/hf  # on every node, and for the driver
    ray start --head                                    # then `ray start --address HEAD:6379` on the others
    b2ner models download b2ner-7b                      # the first load converts it to the Llama layout, once

Run (input: JSONL files of {"id", "text"} with an optional per-record "labels" list)::

    python examples/ray_vllm_extract.py /shared/corpus/part-*.jsonl -m b2ner-7b -l "person,organization,location" \\
        -o out.jsonl --replicas 16

``--replicas`` vLLM engines run, one per GPU; the driver writes ``out.jsonl`` in input order (files in the order
given, lines in file order), one ``b2ner extract`` record per line, renamed into place when complete.
"""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

from b2ner_cli.engine.base import DEFAULT_MAX_NEW_TOKENS
from b2ner_cli.io.readers import Document
from b2ner_cli.models.spec import ModelSpec
from b2ner_cli.pipeline import LLMRecognizer
from b2ner_cli.prompts import LabelSet
from b2ner_cli.runs.settings import DEFAULT_CHUNK_TOKENS, ExtractSettings, RunStats, Task


class Extractor:
    """A Ray Data actor: one b2ner LLM recognizer on vLLM (on the actor's GPU), batches of rows -> records."""

    def __init__(self, model: str, adapter: str | None, labels: list[str], settings: ExtractSettings,
                 max_new_tokens: int, keep_raw: bool) -> None:  # fmt: skip
        spec = ModelSpec(model, adapter, engine="vllm", max_new_tokens=max_new_tokens, offline=True)
        self.recognizer = LLMRecognizer.load(spec, quiet=True)
        self.task = Task.of(LabelSet(tuple(labels)) if labels else None, (), settings)
        self.keep_raw = keep_raw

    def __call__(self, batch: dict[str, Any]) -> dict[str, list[str]]:
        own = batch.get("labels")
        documents = [
            Document(str(i), str(t), LabelSet(tuple(own[k])) if own is not None and own[k] is not None else None)
            for k, (i, t) in enumerate(zip(batch["id"], batch["text"], strict=True))
        ]
        records = self.recognizer.recognize(documents, self.task, RunStats())
        return {"record": [json.dumps(r.to_dict(self.keep_raw), ensure_ascii=False) for r in records]}


def extract(args: argparse.Namespace) -> None:
    import ray

    labels = [name.strip() for name in args.labels.split(",") if name.strip()] if args.labels else []
    ray.init(address=args.address)
    ray.data.DataContext.get_current().execution_options.preserve_order = True  # output in input order
    settings = ExtractSettings(
        max_chunk_tokens=args.max_chunk_tokens,
        flat=args.flat,
        min_score=args.min_score,
        batch_size=args.batch_size,  # a whole Ray batch goes to vLLM at once: vLLM batches continuously
        batch_tokens=10**9,
    )
    dataset = ray.data.read_json(args.inputs).map_batches(
        Extractor,
        fn_constructor_kwargs={
            "model": args.model,
            "adapter": args.adapter,
            "labels": labels,
            "settings": settings,
            "max_new_tokens": args.max_new_tokens,
            "keep_raw": args.keep_raw,
        },
        batch_size=args.batch_size,
        compute=ray.data.ActorPoolStrategy(size=args.replicas),
        num_gpus=1,
    )
    partial = f"{args.output}.{os.getpid()}.tmp"
    count = 0
    with open(partial, "w", encoding="utf-8") as out:
        for row in dataset.iter_rows():
            out.write(row["record"] + "\n")
            count += 1
    os.replace(partial, args.output)  # complete output only
    print(f"{count} records -> {args.output}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("inputs", nargs="+", help='JSONL files (paths every node sees, or s3://...): "id", "text"')
    parser.add_argument("-m", "--model", default="b2ner-7b", help="alias, Hub id or directory, as for b2ner extract")
    parser.add_argument("--adapter", help="as for b2ner extract (default: the model's own)")
    parser.add_argument("-l", "--labels", help='e.g. "person,location"; records may bring their own "labels"')
    parser.add_argument("-o", "--output", required=True)
    parser.add_argument("--replicas", type=int, default=1, help="vLLM engines, one GPU each")
    parser.add_argument("--address", default="auto", help="the Ray cluster (default: the running one)")
    parser.add_argument("--batch-size", type=int, default=256, help="rows per call to an engine")
    parser.add_argument("--max-new-tokens", type=int, default=DEFAULT_MAX_NEW_TOKENS)
    parser.add_argument("--max-chunk-tokens", type=int, default=DEFAULT_CHUNK_TOKENS)
    parser.add_argument("--min-score", type=float)
    parser.add_argument("--flat", action="store_true")
    parser.add_argument("--keep-raw", action="store_true")
    extract(parser.parse_args())


if __name__ == "__main__":
    main()
