"""B2NER training examples: the zero-shot prompt with label-set augmentation, the target, and the loss mask.

Per example and epoch (re-sampled every epoch from ``seed`` and the epoch number):
- a dataset with more than 18 labels gives the example its own types (at most 18) plus random others up to 18;
- each label is dropped with probability ``label_dropout`` (at least one kept), and the dropped labels' entities
  leave the target;
- the labels are shuffled.
The target is ``" " + "; ".join(f"{label}: {mention}")`` in data order (duplicates kept), or ``" None"``.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from ..errors import UsageError
from ..evaluation.records import GoldRecord, label_sets
from ..prompts import LabelSet, build_instruction, detect_lang

MAX_LABELS = 18


@dataclass(frozen=True)
class TrainExample:
    text: str
    #: (label, mention) in data order, duplicates kept.
    entities: tuple[tuple[str, str], ...]
    #: the dataset's full label set, in order.
    labels: tuple[str, ...]
    descriptions: dict[str, str] | None = None
    lang: str | None = None


@dataclass(frozen=True)
class Sample:
    """One augmented example, ready to tokenize."""

    instruction: str
    target: str
    labels: tuple[str, ...]


def from_gold(records: Sequence[GoldRecord], labels: Sequence[str] | None = None,
              descriptions: dict[str, str] | None = None) -> list[TrainExample]:  # fmt: skip
    """Training examples from gold records; the label set is ``labels`` or, per dataset, the data's own."""
    sets = label_sets(records)
    examples = []
    for record in records:
        label_set = tuple(labels) if labels else sets[record.id]
        examples.append(
            TrainExample(
                text=record.text,
                entities=tuple((s.label, s.text) for s in sorted(record.entities, key=lambda s: (s.start, s.end))),
                labels=label_set,
                descriptions=descriptions,
                lang=record.language,
            )
        )
    return examples


def labels_without_examples(examples: Sequence[TrainExample]) -> list[str]:
    """The labels of the label sets that no training entity carries (a warning); raises UsageError when no
    entity at all carries a label of its example's label set (the adapter would learn to answer None)."""
    seen = {label for e in examples for label, _ in e.entities if label in e.labels}
    if not seen:
        if not any(e.entities for e in examples):
            raise UsageError("The training data has no entities at all.", "Annotate some entities before finetuning.")
        asked = ", ".join(dict.fromkeys(label for e in examples for label in e.labels))
        found = ", ".join(dict.fromkeys(label for e in examples for label, _ in e.entities))
        raise UsageError(
            f"No training entity has a label in the label set ({asked}); the data's entities are: {found}.",
            "Give --labels from the data's entity labels, or drop --labels to train on all of them.",
        )
    return [label for label in dict.fromkeys(label for e in examples for label in e.labels) if label not in seen]


def target_text(entities: Sequence[tuple[str, str]]) -> str:
    return " " + ("; ".join(f"{label}: {mention}" for label, mention in entities) or "None")


def augment(example: TrainExample, rng: random.Random, label_dropout: float = 0.1) -> Sample:
    labels = list(example.labels)
    if len(labels) > MAX_LABELS:
        own = list(dict.fromkeys(label for label, _ in example.entities if label in labels))[:MAX_LABELS]
        others = [label for label in labels if label not in own]
        labels = own + rng.sample(others, MAX_LABELS - len(own))
    kept = [label for label in labels if rng.random() >= label_dropout]
    if not kept:
        kept = [rng.choice(labels)]
    rng.shuffle(kept)
    chosen = set(kept)
    entities = [(label, mention) for label, mention in example.entities if label in chosen]
    descriptions = None
    if example.descriptions:
        descriptions = tuple(example.descriptions.get(label, label) for label in kept)
    label_set = LabelSet(tuple(kept), descriptions)
    lang = example.lang if example.lang in ("en", "zh") else detect_lang(kept)
    return Sample(build_instruction(example.text, label_set, lang), target_text(entities), tuple(kept))  # type: ignore[arg-type]


def epoch_samples(examples: Sequence[TrainExample], seed: int, epoch: int, label_dropout: float = 0.1) -> list[Sample]:
    """The augmented samples of one epoch, in a shuffled order; the same (seed, epoch) gives the same list."""
    rng = random.Random(f"{seed}:{epoch}")
    samples = [augment(example, rng, label_dropout) for example in examples]
    rng.shuffle(samples)
    return samples


def encode(sample: Sample, tokenizer: object, max_length: int) -> tuple[list[int], list[int]] | None:
    """Token ids (BOS + instruction + target + EOS) and labels (-100 on the prompt): the loss covers the target and
    EOS only. None when the example is longer than ``max_length`` (it is skipped and counted, never truncated)."""
    from ..engine.base import encode_prompt

    eos = getattr(tokenizer, "eos_token_id", None)
    prompt = encode_prompt(tokenizer, sample.instruction)
    target = [*tokenizer.encode(sample.target, add_special_tokens=False), eos]  # type: ignore[attr-defined]
    if len(prompt) + len(target) > max_length:
        return None
    return prompt + target, [-100] * len(prompt) + target
