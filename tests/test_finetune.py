"""`b2ner finetune`: the training format, the loss mask, an end-to-end run on a tiny model, resume, and errors."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from helpers import cli, scored, write_jsonl

from b2ner_cli.training.data import MAX_LABELS, Sample, TrainExample, augment, encode, epoch_samples, target_text

NAMES = ["Ada Lovelace", "Alan Turing", "Grace Hopper", "Marie Curie", "Niels Bohr", "Emmy Noether", "Carl Sagan",
         "Rosa Parks", "Linus Pauling", "Ada Byron"]  # fmt: skip
ORGS = ["Acme", "Globex", "Initech", "Umbrella", "Hooli", "Vandelay", "Stark", "Wayne"]
CITIES = ["Paris", "Berlin", "Lima", "Oslo", "Cairo", "Tokyo", "Quito", "Dakar"]
LABELS = ["person", "organization", "location"]



def synthetic(count: int = 30) -> list[dict]:
    records = []
    for i in range(count):
        person, org, city = NAMES[i % len(NAMES)], ORGS[i % len(ORGS)], CITIES[(i * 3) % len(CITIES)]
        text = f"{person} works at {org} in {city} ."
        # "<person> works at " adds 10 characters, " in " 4
        spans = [(0, len(person), "person"), (len(person) + 10, len(person) + 10 + len(org), "organization")]
        city_start = spans[1][1] + 4
        spans.append((city_start, city_start + len(city), "location"))
        entities = [{"start": s, "end": e, "text": text[s:e], "label": label} for s, e, label in spans]
        records.append({"id": f"s{i}", "text": text, "entities": entities, "labels": LABELS, "dataset": "synthetic"})
    return records



# --- the training format ----------------------------------------------------------------------------------------


def test_target_text() -> None:
    assert target_text([("person", "Ada"), ("person", "Ada"), ("location", "Paris")]) == (
        " person: Ada; person: Ada; location: Paris"
    )  # data order, duplicates kept, leading space
    assert target_text([]) == " None"


def test_augment_without_dropout_keeps_every_label_and_entity() -> None:
    example = TrainExample("Ada met Bob in Paris", (("person", "Ada"), ("person", "Bob"), ("location", "Paris")),
                           ("person", "location", "organization"))  # fmt: skip
    sample = augment(example, random.Random(0), label_dropout=0.0)
    assert sorted(sample.labels) == ["location", "organization", "person"]
    assert sample.target == " person: Ada; person: Bob; location: Paris"
    assert f"Label Set: {', '.join(sample.labels)} \n" in sample.instruction
    assert sample.instruction.endswith("Text: Ada met Bob in Paris \nAnswer:")


def test_dropped_labels_take_their_entities_with_them() -> None:
    example = TrainExample("Ada met Bob in Paris", (("person", "Ada"), ("location", "Paris")),
                           ("person", "location", "organization"))  # fmt: skip
    outcomes = {augment(example, random.Random(seed), label_dropout=0.5) for seed in range(200)}
    for sample in outcomes:
        assert sample.labels  # never empty
        assert ("person: Ada" in sample.target) == ("person" in sample.labels)
        assert ("location: Paris" in sample.target) == ("location" in sample.labels)
    assert any("location" not in s.labels for s in outcomes) and any(s.target == " None" for s in outcomes)


def test_more_than_18_labels_keep_the_own_types_and_fill_up_to_18() -> None:
    labels = tuple(f"type {i}" for i in range(25))
    example = TrainExample("x y", (("type 20", "x"), ("type 3", "y")), labels)
    for seed in range(50):
        sample = augment(example, random.Random(seed), label_dropout=0.0)
        assert len(sample.labels) == MAX_LABELS == 18
        assert {"type 20", "type 3"} <= set(sample.labels)
        assert sample.target == " type 20: x; type 3: y"


def test_epochs_resample_but_are_reproducible() -> None:
    examples = [TrainExample(f"text {i}", (("person", f"p{i}"),), tuple(LABELS)) for i in range(20)]
    first, again = epoch_samples(examples, 7, 0), epoch_samples(examples, 7, 0)
    assert first == again
    second = epoch_samples(examples, 7, 1)
    assert [s.instruction for s in second] != [s.instruction for s in first]  # new order and label shuffles


def test_loss_mask_covers_the_target_and_eos_only(tiny) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(tiny.base))
    sample = Sample("Text: Ada \nAnswer:", " person: Ada", ("person",))
    ids, labels = encode(sample, tokenizer, 4096)
    prompt = [1, *tokenizer.encode(sample.instruction, add_special_tokens=False)]
    target = [*tokenizer.encode(sample.target, add_special_tokens=False), tokenizer.eos_token_id]
    assert ids == prompt + target
    assert labels == [-100] * len(prompt) + target
    assert encode(sample, tokenizer, len(ids) - 1) is None  # too long: skipped, never truncated


# --- end to end -------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def learnable(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A tiny random Llama whose tokenizer knows the synthetic names (so it can learn them in seconds)."""
    from b2ner_cli.testing import build_model, build_tokenizer, save

    root = tmp_path_factory.mktemp("learnable")
    records = synthetic()
    corpus = [r["text"] for r in records] + [" ".join(LABELS) + " : ; None"]
    tokenizer = build_tokenizer(corpus)
    base = save(build_model(len(tokenizer)), tokenizer, root / "base")
    return base, write_jsonl(root / "train.jsonl", records)


ALL_LINEAR = "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj"
FAST = ["--lora-r", "64", "--lora-alpha", "128", "--lora-dropout", "0", "--target-modules", ALL_LINEAR,
        "--lr", "3e-3", "--train-batch-size", "30", "--micro-batch-size", "15", "-q"]  # fmt: skip


def test_finetune_then_extract_and_eval(learnable, tmp_path: Path) -> None:
    base, train_file = learnable
    out = tmp_path / "adapter"
    result = cli("finetune", str(train_file), "--dev", str(train_file), "-o", str(out), "-m", str(base),
                 "--epochs", "200", "--eval-every", "50", *FAST)  # fmt: skip
    assert result.exit_code == 0, result.output
    meta = json.loads((out / "b2ner_adapter.json").read_text(encoding="utf-8"))
    assert meta["backbone"] == str(base.resolve()) and meta["labels"] == LABELS
    assert meta["dev_metrics"]["b2ner"]["f1"] >= 0.95
    history = [json.loads(line) for line in (out / "metrics.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(history) == 200 and [h["epoch"] for h in history if h["dev"]] == [50, 100, 150, 200]
    assert meta["epoch"] == max((h for h in history if h["dev"]), key=lambda h: h["dev"]["b2ner"]["f1"])["epoch"]

    # extract picks the backbone and the labels from the adapter
    texts = tmp_path / "in.txt"
    texts.write_text("Grace Hopper works at Initech in Quito .\n", encoding="utf-8")
    extracted = cli("extract", str(texts), "--adapter", str(out), "-q")
    assert extracted.exit_code == 0, extracted.output
    assert scored(json.loads(extracted.stdout))["entities"] == [
        {"start": 0, "end": 12, "text": "Grace Hopper", "label": "person"},
        {"start": 22, "end": 29, "text": "Initech", "label": "organization"},
        {"start": 33, "end": 38, "text": "Quito", "label": "location"},
    ]
    evaluated = cli("eval", str(train_file), "--adapter", str(out), "--predictions-out", str(tmp_path / "pred.jsonl"),
                    "--json", "-q")  # fmt: skip
    assert evaluated.exit_code == 0, evaluated.output
    [dataset] = json.loads(evaluated.stdout)["datasets"]
    assert dataset["b2ner"]["f1"] >= 0.95 and dataset["strict"]["f1"] >= 0.95


def test_resume_gives_the_same_adapter(learnable, tmp_path: Path) -> None:
    from safetensors.torch import load_file

    base, train_file = learnable
    # lora dropout 0.05 stays on: the RNG state must resume too
    settings = ["-m", str(base), "--lora-r", "8", "--lora-alpha", "16", "--train-batch-size", "10",
                "--micro-batch-size", "5", "--lr", "1e-3", "-q"]  # fmt: skip
    whole = tmp_path / "whole"
    assert cli("finetune", str(train_file), "-o", str(whole), "--epochs", "3", *settings).exit_code == 0
    parts = tmp_path / "parts"
    assert cli("finetune", str(train_file), "-o", str(parts), "--epochs", "2", *settings).exit_code == 0
    resumed = cli("finetune", str(train_file), "-o", str(parts), "--epochs", "3", "--resume", *settings)
    assert resumed.exit_code == 0, resumed.output
    a = load_file(str(whole / "adapter_model.safetensors"))
    b = load_file(str(parts / "adapter_model.safetensors"))
    assert a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a)
    initial = cli("finetune", str(train_file), "-o", str(tmp_path / "one"), "--epochs", "1", *settings)
    assert initial.exit_code == 0
    c = load_file(str(tmp_path / "one" / "adapter_model.safetensors"))
    assert any(not (a[k] == c[k]).all() for k in a)  # training did move the weights between epochs


def test_dry_run_reports_and_trains_nothing(learnable, tmp_path: Path) -> None:
    base, train_file = learnable
    out = tmp_path / "adapter"
    result = cli("finetune", str(train_file), "-o", str(out), "-m", str(base), "--lora-r", "4", "--dry-run", "-q")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["examples"] == 30 and report["labels"] == LABELS
    # LoRA r 4 on q, k, v of 2 layers: q 4*(64+64), k and v 4*(64+32) each (2 kv heads of 16) -> 1,280 per layer
    assert report["parameters"]["trainable"] == 2 * (4 * (64 + 64) + 2 * 4 * (64 + 32))
    assert report["tokens_per_epoch"] > 30 * 20
    assert not out.exists()


# --- errors -----------------------------------------------------------------------------------------------------


def test_empty_training_set(tmp_path: Path) -> None:
    empty = tmp_path / "train.jsonl"
    empty.write_text("\n", encoding="utf-8")
    result = cli("finetune", str(empty), "-o", str(tmp_path / "out"))
    assert result.exit_code == 1
    assert result.stderr.startswith(f"Error: {empty} holds no training examples.")


def test_offsets_that_do_not_match_the_text(tmp_path: Path) -> None:
    record = {"id": "x", "text": "Ada met Bob", "entities": [{"start": 0, "end": 3, "text": "Bob", "label": "person"}]}
    bad = write_jsonl(tmp_path / "train.jsonl", [record])
    result = cli("finetune", str(bad), "-o", str(tmp_path / "out"))
    assert result.exit_code == 1
    assert result.stderr.startswith(f'Error: {bad}, line 1: entity 0-3 says "Bob" but the text there is "Ada".')


def test_non_empty_output_needs_overwrite(learnable, tmp_path: Path) -> None:
    base, train_file = learnable
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    result = cli("finetune", str(train_file), "-o", str(out), "-m", str(base))
    assert result.exit_code == 2
    assert result.stderr.startswith(f"Error: Output directory {out} is not empty.")
    assert (out / "keep.txt").exists()


def test_warnings_for_unused_and_unknown_labels(learnable, tmp_path: Path) -> None:
    base, train_file = learnable
    dev = write_jsonl(tmp_path / "dev.jsonl", [{"id": "d", "text": "Ada sings", "dataset": "synthetic",
                                               "entities": [{"start": 0, "end": 3, "label": "singer"}]}])  # fmt: skip
    result = cli("finetune", str(train_file), "--dev", str(dev), "-o", str(tmp_path / "out"), "-m", str(base),
                 "-l", "person,organization,location,date", "--dry-run")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "Note: labels with no training example: date" in result.stderr
    assert "Note: dev labels unknown to training: singer" in result.stderr


def test_qlora_on_a_4bit_base(learnable, tmp_path: Path) -> None:
    from safetensors.torch import load_file

    base, train_file = learnable
    out = tmp_path / "q4"
    result = cli("finetune", str(train_file), "-o", str(out), "-m", str(base), "--quantize", "4bit", "--epochs", "2",
                 "--train-batch-size", "10", "-q")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert json.loads((out / "b2ner_adapter.json").read_text(encoding="utf-8"))["quantization"] == "4bit"
    weights = load_file(str(out / "adapter_model.safetensors"))
    # LoRA B starts at zero: a trained adapter has moved it
    assert any(k.endswith("lora_B.weight") and weights[k].abs().sum() > 0 for k in weights)
