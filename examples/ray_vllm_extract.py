"""B2NER at cluster scale: Ray Data reads the corpus, vLLM generates, b2ner prompts, parses and grounds.

A recipe, not part of the b2ner package: it needs GPUs and vLLM, and it has never run in b2ner's tests or CI
(there is neither a GPU nor vLLM there). It was written against vLLM's ``LLM`` / ``SamplingParams`` /
``TokensPrompt`` API and Ray Data's ``read_json`` / ``map_batches`` / ``ActorPoolStrategy``; check it on one node
with a small input before a large job.

What comes from b2ner, unchanged: the prompts (``b2ner_cli.prompts.build_instruction``, through
``LLMRecognizer``), BOS handling (``encode_prompt``), chunking of long texts, answer parsing
(``b2ner_cli.answers.parse_answer``), grounding to character offsets (``b2ner_cli.grounding.ground``), mention
scores, the per-answer new-token cap and the record shape of ``b2ner extract``. What vLLM replaces is the model
work: :class:`VllmGenerator` implements b2ner's ``Generator`` protocol (greedy answers for token-id prompts), and
:class:`LLMRecognizer` drives it exactly as it drives b2ner's own engine. Answers can differ from ``b2ner extract``
in a few places, as any two bf16 engines' can (other kernels; no runaway detection).

Setup, once (B2NER_HOME and HF_HOME on a filesystem that every node mounts)::

    pip install 'b2ner[ray]' vllm                       # on every node
    export B2NER_HOME=/shared/b2ner HF_HOME=/shared/hf  # on every node, and for the driver
    ray start --head                                    # then `ray start --address HEAD:6379` on the others
    b2ner models download b2ner-7b                      # InternLM2 -> Llama conversion, once
    python examples/ray_vllm_extract.py prepare -m b2ner-7b --merged /shared/b2ner-7b-merged

Run (input: JSONL files of {"id", "text"} with an optional per-record "labels" list)::

    python examples/ray_vllm_extract.py extract /shared/corpus/part-*.jsonl -m b2ner-7b \\
        --merged /shared/b2ner-7b-merged -l "person,organization,location" -o out.jsonl --replicas 16

``--replicas`` vLLM engines run, one per GPU; the driver writes ``out.jsonl`` in input order (files in the order
given, lines in file order), one ``b2ner extract`` record per line.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from b2ner_cli.engine.base import Generation, encode_prompt
from b2ner_cli.engine.scores import token_texts
from b2ner_cli.io.readers import Document
from b2ner_cli.pipeline import LLMRecognizer
from b2ner_cli.prompts import LabelSet
from b2ner_cli.runs.settings import DEFAULT_CHUNK_TOKENS, ExtractSettings, RunStats, Task

MAX_NEW_TOKENS = 512  # b2ner's default --max-new-tokens


def new_token_cap(prompt_tokens: int, limit: int) -> int:
    """b2ner's cap on one answer (``b2ner_cli.engine.hf.new_token_cap``, which imports torch at module load)."""
    return min(limit, max(64, 32 + 4 * prompt_tokens))


# -- step 1: a plain Llama checkpoint with the adapter merged in (what vLLM loads) ---------------------------------


def prepare(model: str, merged: Path) -> None:
    """Resolve ``model`` from the cache, convert InternLM2 to Llama (b2ner's converter), merge the LoRA adapter in
    bf16 and save the result at ``merged``. Needs CPU memory for the model in bf16 (about 15 GB for b2ner-7b)."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from b2ner_cli.models.prepare import prepare as to_llama
    from b2ner_cli.models.resolve import resolve

    resolved = resolve(model, offline=True)
    config = json.loads((resolved.backbone.path / "config.json").read_text(encoding="utf-8"))
    if config.get("model_type") != "internlm2":
        raise SystemExit("This recipe serves the InternLM2-based B2NER models (b2ner-7b, b2ner-20b, their finetunes).")
    weights, adapter = to_llama(resolved.backbone, resolved.adapter, note=print)
    backbone = AutoModelForCausalLM.from_pretrained(weights, torch_dtype=torch.bfloat16)
    if adapter is not None:
        backbone = PeftModel.from_pretrained(backbone, adapter).merge_and_unload()
    backbone.save_pretrained(merged)  # config.json, generation_config.json (the EOS ids), safetensors
    print(f"{merged}: ready for vLLM; tokenizer: {resolved.backbone.path}")


# -- step 2: vLLM behind b2ner's Generator protocol ------------------------------------------------------------------


class VllmGenerator:
    """Greedy answers from vLLM for prompts that b2ner encoded (BOS + instruction), decoded as b2ner decodes."""

    def __init__(self, merged: str, tokenizer_dir: str, max_new_tokens: int, max_model_len: int) -> None:
        from vllm import LLM

        from b2ner_cli.models.internlm2 import load_internlm2_tokenizer

        self.tokenizer = load_internlm2_tokenizer(Path(tokenizer_dir))  # b2ner's own, from tokenizer.model
        eos = json.loads((Path(merged) / "generation_config.json").read_text(encoding="utf-8"))["eos_token_id"]
        self.eos_ids = [int(e) for e in (eos if isinstance(eos, list) else [eos])]
        self.max_new_tokens = max_new_tokens
        # b2ner tokenizes and detokenizes; vLLM sees token ids only
        self.llm = LLM(model=merged, skip_tokenizer_init=True, dtype="bfloat16", max_model_len=max_model_len)

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer.encode(text, add_special_tokens=False))

    def encode(self, instruction: str) -> list[int]:
        return encode_prompt(self.tokenizer, instruction)

    def generate(self, batch: Sequence[list[int]]) -> list[Generation]:
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        params = [
            SamplingParams(
                temperature=0.0,  # greedy
                max_tokens=new_token_cap(len(ids), self.max_new_tokens),
                stop_token_ids=self.eos_ids,
                logprobs=1,  # the chosen token's log-probability: b2ner's mention scores
                detokenize=False,  # required with skip_tokenizer_init
            )
            for ids in batch
        ]
        outputs = self.llm.generate([TokensPrompt(prompt_token_ids=ids) for ids in batch], params, use_tqdm=False)
        generations = []
        for output in outputs:  # in the order of the prompts
            completion = output.outputs[0]
            tokens = [int(t) for t in completion.token_ids]
            steps = completion.logprobs or []
            logprobs = [float(step[t].logprob) for t, step in zip(tokens, steps, strict=False)]
            if tokens and tokens[-1] in self.eos_ids:  # b2ner's answers exclude the EOS
                tokens, logprobs = tokens[:-1], logprobs[: len(tokens) - 1]
            answer = self.tokenizer.decode(tokens, skip_special_tokens=True, clean_up_tokenization_spaces=False)
            finished = completion.finish_reason == "stop"  # "length": the cap cut it, its last piece is dropped
            generations.append(Generation(answer, len(tokens), finished, False, tuple(tokens), tuple(logprobs)))
        return generations

    def token_texts(self, tokens: Sequence[int]) -> list[str]:
        return token_texts(self.tokenizer, tokens)

    def suggest_batch_tokens(self) -> int | None:
        return None

    def describe(self) -> dict[str, object]:
        return {"generation": {"engine": "vllm", "decoding": "greedy", "max_new_tokens": self.max_new_tokens}}


# -- step 3: Ray Data, one vLLM replica per actor ---------------------------------------------------------------------


class Extractor:
    """A Ray Data actor: loads one vLLM engine (on its GPU), turns batches of rows into b2ner records."""

    def __init__(self, merged: str, tokenizer_dir: str, labels: list[str], settings: ExtractSettings,
                 max_new_tokens: int, max_model_len: int, keep_raw: bool) -> None:  # fmt: skip
        generator = VllmGenerator(merged, tokenizer_dir, max_new_tokens, max_model_len)
        self.recognizer = LLMRecognizer(generator)
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

    from b2ner_cli.models.resolve import resolve

    labels = [name.strip() for name in args.labels.split(",") if name.strip()] if args.labels else []
    tokenizer_dir = str(resolve(args.model, offline=True).backbone.path)
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
            "merged": str(args.merged),
            "tokenizer_dir": tokenizer_dir,
            "labels": labels,
            "settings": settings,
            "max_new_tokens": args.max_new_tokens,
            "max_model_len": args.max_model_len,
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
    steps = parser.add_subparsers(dest="step", required=True)
    step = steps.add_parser("prepare", help="convert and merge the model once, for vLLM")
    step.add_argument("-m", "--model", default="b2ner-7b")
    step.add_argument("--merged", type=Path, required=True, help="where to write the merged checkpoint (shared)")
    step = steps.add_parser("extract", help="extract from JSONL files on the cluster")
    step.add_argument("inputs", nargs="+", help='JSONL files (local paths every node sees, or s3://...): "id", "text"')
    step.add_argument("-m", "--model", default="b2ner-7b", help="the model given to `prepare` (for its tokenizer)")
    step.add_argument("--merged", type=Path, required=True)
    step.add_argument("-l", "--labels", help='e.g. "person,location"; records may bring their own "labels"')
    step.add_argument("-o", "--output", required=True)
    step.add_argument("--replicas", type=int, default=1, help="vLLM engines, one GPU each")
    step.add_argument("--address", default="auto", help="the Ray cluster (default: the running one)")
    step.add_argument("--batch-size", type=int, default=256, help="rows per call to an engine")
    step.add_argument("--max-new-tokens", type=int, default=MAX_NEW_TOKENS)
    step.add_argument("--max-chunk-tokens", type=int, default=DEFAULT_CHUNK_TOKENS)
    step.add_argument("--max-model-len", type=int, default=4096, help="vLLM context (prompt + answer)")
    step.add_argument("--min-score", type=float)
    step.add_argument("--flat", action="store_true")
    step.add_argument("--keep-raw", action="store_true")
    args = parser.parse_args()
    if args.step == "prepare":
        prepare(args.model, args.merged)
    else:
        extract(args)


if __name__ == "__main__":
    main()
