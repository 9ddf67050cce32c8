"""Training throughput of `b2ner finetune`'s loop against a plain transformers Trainer, same model and data.

Both train the same LoRA (r 16 on q/k/v/o and the MLP) on the same tiny random Llama for one epoch over the same
encoded B2NER examples (prompt + target, loss on the target), with the same global batch (32 = 4 x 8) and
learning rate. The Trainer pads each micro-batch to its longest example but does not group by length (its
default); b2ner sorts each global batch by length before splitting it, so micro-batches pad little.
Prints real (non-padding) tokens/s for both and the ratio. Target: >= 1.2x.

    python benchmarks/bench_finetune.py
"""

from __future__ import annotations

import random
import tempfile
import time
from pathlib import Path

import torch

NAMES = ["Ada Lovelace", "Alan Turing", "Grace Hopper", "Marie Curie", "Niels Bohr", "Emmy Noether"]
FILLER = [
    "said",
    "that",
    "the",
    "new",
    "plan",
    "for",
    "the",
    "city",
    "would",
    "be",
    "announced",
    "next",
    "week",
    "by",
    "the",
    "council",
    "and",
]


def corpus(n: int) -> list[dict]:
    rng = random.Random(0)
    records = []
    for i in range(n):
        words = [rng.choice(FILLER) for _ in range(rng.randint(3, 60))]
        name = NAMES[i % len(NAMES)]
        text = name + " " + " ".join(words) + " ."
        records.append({"text": text, "spans": [(0, len(name), "person")]})
    return records


def main() -> None:
    from peft import LoraConfig, get_peft_model
    from transformers import DataCollatorForSeq2Seq, Trainer, TrainingArguments

    from b2ner_cli.evaluation.records import GoldRecord
    from b2ner_cli.records import Entity
    from b2ner_cli.testing import build_model, build_tokenizer
    from b2ner_cli.training.data import encode, epoch_samples, from_gold
    from b2ner_cli.training.trainer import TrainSettings, train

    records = corpus(512)
    gold = [GoldRecord(str(i), r["text"], tuple(Entity(s, e, r["text"][s:e], lab) for s, e, lab in r["spans"]),
                       ("person", "location"), "bench", "en", "bench") for i, r in enumerate(records)]  # fmt: skip
    examples = from_gold(gold)
    tokenizer = build_tokenizer([r["text"] for r in records])
    targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    settings = TrainSettings(epochs=1, lr=1e-3, batch_size=32, micro_batch_size=8, label_dropout=0.0)

    def fresh_model():
        torch.manual_seed(0)
        model = build_model(len(tokenizer), hidden_size=128, layers=4)
        return get_peft_model(model, LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, target_modules=targets,
                                                task_type="CAUSAL_LM"))  # fmt: skip

    encoded = [encode(s, tokenizer, 4096) for s in epoch_samples(examples, settings.seed, 0, 0.0)]
    real_tokens = sum(len(ids) for ids, _ in encoded if ids)

    with tempfile.TemporaryDirectory() as tmp:
        model = fresh_model()
        start = time.perf_counter()
        train(model, tokenizer, examples, Path(tmp), settings)
        ours = time.perf_counter() - start

        model = fresh_model()
        dataset = [{"input_ids": ids, "attention_mask": [1] * len(ids), "labels": labels} for ids, labels in encoded]
        args = TrainingArguments(
            output_dir=str(Path(tmp) / "trainer"), per_device_train_batch_size=8, gradient_accumulation_steps=4,
            num_train_epochs=1, learning_rate=1e-3, adam_beta2=0.98, weight_decay=1e-4, max_grad_norm=1.0,
            warmup_steps=1, lr_scheduler_type="constant_with_warmup", report_to=[], save_strategy="no",
            logging_strategy="no", disable_tqdm=True, use_cpu=True, dataloader_num_workers=0, seed=settings.seed,
        )  # fmt: skip
        collator = DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=-100)
        trainer = Trainer(model=model, args=args, train_dataset=dataset, data_collator=collator)
        start = time.perf_counter()
        trainer.train()
        baseline = time.perf_counter() - start

    print(f"data: {len(encoded)} examples, {real_tokens:,} real tokens per epoch; model: random Llama hidden 128, "
          f"4 layers; LoRA r 16 on all linear layers; global batch 32 (4 x 8)")  # fmt: skip
    print(f"transformers Trainer: {baseline:.1f} s, {real_tokens / baseline:,.0f} tokens/s")
    print(f"b2ner finetune loop:  {ours:.1f} s, {real_tokens / ours:,.0f} tokens/s")
    print(f"speed-up: {baseline / ours:.2f}x (target: >= 1.2x)")


if __name__ == "__main__":
    main()
