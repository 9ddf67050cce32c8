"""Taggers through the commands: ``finetune --head`` trains one (tiny BERT encoder), ``extract -m TAGGER``, ``eval -m
TAGGER``, ``models info TAGGER`` and ``Extractor.load(TAGGER)`` use it, the LLM-only flags are refused, and the
distillation recipe runs end to end (the taught tiny LLM labels a corpus, a tagger learns its JSONL output)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from helpers import cli, read_jsonl, write_jsonl
from test_taggers import TRAIN
from trained import Trained, gold_rows

from b2ner_cli.taggers import TaggerExample
from b2ner_cli.testing import build_bert, build_wordpiece_tokenizer, save

# Sentences of the training data (the tagger has learnt them); offsets worked out by counting characters:
# "Bob Stone lives in Berlin ." -> "Bob Stone" 0-9; "lives" 10-15, "in" 16-18, "Berlin" 19-25.
BOB = "Bob Stone lives in Berlin ."
BOB_GOLD = [(0, 9, "Bob Stone", "person"), (19, 25, "Berlin", "location")]
# "Carol likes Oslo ." -> "Carol" 0-5; "likes" 6-11; "Oslo" 12-16.
CAROL = "Carol likes Oslo ."
CAROL_GOLD = [(0, 5, "Carol", "person"), (12, 16, "Oslo", "location")]
assert TaggerExample(BOB, ((0, 9, "person"), (19, 25, "location"))) in TRAIN
assert TaggerExample(CAROL, ((0, 5, "person"), (12, 16, "location"))) in TRAIN


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models train several times faster on one thread than on a shared, busy multi-core machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def entities(record: dict) -> list[tuple]:
    return [(e["start"], e["end"], e["text"], e["label"]) for e in record["entities"]]


def extract(tagger: Trained, tmp_path: Path, *args: str, text: str = f"{BOB}\n{CAROL}\n") -> list[dict]:
    source = tmp_path / "in.txt"
    source.write_text(text, encoding="utf-8")
    result = cli("extract", str(source), "-m", str(tagger.path), "-q", *args)
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.stdout.splitlines()]


# -- finetune --head --------------------------------------------------------------------------------------------


def test_finetune_head_writes_a_tagger_with_card_hashes_and_one_line_per_epoch(tagger: Trained) -> None:
    import hashlib

    lines = tagger.result.stderr.splitlines()
    epochs = [line for line in lines if line.startswith("epoch ")]
    assert len(epochs) == 12
    assert epochs[0].startswith("epoch 1/12: loss ") and ", dev strict F1 " in epochs[0]
    assert lines[-1].startswith(f"Tagger saved to {tagger.path} (epoch ")
    assert tagger.result.stdout == ""
    card = json.loads((tagger.path / "b2ner_tagger.json").read_text())
    assert card["head"] == "spanner"
    assert card["labels"] == ["location", "person"]  # from the data, sorted
    assert card["settings"]["encoder_lr"] == 2e-3 and card["settings"]["head_lr"] == 5e-3
    assert card["settings"]["batch_size"] == 8 and card["settings"]["max_span_words"] == 4
    assert card["data"]["train_sha256"] == hashlib.sha256(tagger.train.read_bytes()).hexdigest()
    assert card["data"]["dev_sha256"] == hashlib.sha256(tagger.dev.read_bytes()).hexdigest()
    assert card["dev"]["best_f1"] >= 0.95
    metrics = [json.loads(x) for x in (tagger.path / "metrics.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in metrics] == list(range(1, 13))
    # the line of the best epoch shows the card's dev F1
    assert f"epoch {card['dev']['best_epoch']}/12: loss {metrics[card['dev']['best_epoch'] - 1]['loss']:.4f}, " \
           f"dev strict F1 {100 * card['dev']['best_f1']:.2f}" in epochs  # fmt: skip


@pytest.mark.parametrize(
    "flags, flag",
    [
        (["--adapter", "some/adapter"], "--adapter"),
        (["--no-adapter"], "--no-adapter"),
        (["--lora-r", "8"], "--lora-r"),
        (["--target-modules", "q_proj"], "--target-modules"),
        (["--quantize", "4bit"], "--quantize"),
        (["--replay", "replay.jsonl"], "--replay"),
        (["--select", "b2ner"], "--select"),
    ],
)
def test_finetune_head_refuses_lora_flags(tmp_path: Path, flags: list[str], flag: str) -> None:
    train = write_jsonl(tmp_path / "train.jsonl", gold_rows(TRAIN[:2]))
    result = cli("finetune", str(train), "-o", str(tmp_path / "out"), "--head", "crf", *flags)
    assert result.exit_code == 2
    first, hint = result.stderr.splitlines()[:2]
    assert first == f"Error: {flag} is a LoRA option; it cannot be used with --head (which trains a tagger)."
    assert hint == f"Hint: Drop {flag}, or drop --head to finetune a LoRA adapter."
    assert not (tmp_path / "out").exists()


def test_finetune_head_refuses_a_full_output_and_a_head_setting_it_cannot_train(tmp_path: Path) -> None:
    train = write_jsonl(tmp_path / "train.jsonl", gold_rows(TRAIN[:2]))
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("mine")
    result = cli("finetune", str(train), "-o", str(tmp_path / "out"), "--head", "crf")
    assert result.exit_code == 2
    assert result.stderr.splitlines()[0] == f"Error: Output directory {tmp_path / 'out'} is not empty."
    result = cli("finetune", str(train), "-o", str(tmp_path / "new"), "--head", "crf", "--loss", "evidential")
    assert result.exit_code == 2
    assert result.stderr.splitlines()[0] == (
        "Error: The evidential loss is implemented for the spanner head only, not `crf`."
    )


# -- extract -m TAGGER ------------------------------------------------------------------------------------------


def test_extract_gives_offsets_scores_and_confidence(tagger: Trained, tmp_path: Path) -> None:
    records = extract(tagger, tmp_path)
    assert [entities(r) for r in records] == [BOB_GOLD, CAROL_GOLD]
    for record in records:
        assert "raw" not in record and record["unmatched"] == []
        for e in record["entities"]:
            assert e["source"] == "tagger"
            assert 0.5 < e["score"] <= 1.0
            assert e["uncertainty"] == pytest.approx(1 - e["score"])  # confidence: 1 - max p


def test_extract_uncertainty_entropy_changes_uncertainty_not_entities(tagger: Trained, tmp_path: Path) -> None:
    confident = extract(tagger, tmp_path)
    entropy = extract(tagger, tmp_path, "--uncertainty", "entropy")
    assert [entities(r) for r in entropy] == [entities(r) for r in confident]
    for a, b in zip(confident, entropy, strict=True):
        for x, y in zip(a["entities"], b["entities"], strict=True):
            assert x["score"] == pytest.approx(y["score"])
            assert 0.0 < y["uncertainty"] <= 1.0
            assert y["uncertainty"] != pytest.approx(x["uncertainty"])


def test_extract_label_subset_and_unknown_label(tagger: Trained, tmp_path: Path) -> None:
    full = extract(tagger, tmp_path)
    persons = extract(tagger, tmp_path, "-l", "person")
    assert [r["entities"] for r in persons] == [
        [e for e in r["entities"] if e["label"] == "person"] for r in full
    ]  # same spans and scores, the location ones left out
    source = tmp_path / "in.txt"
    result = cli("extract", str(source), "-m", str(tagger.path), "-l", "person,city")
    assert result.exit_code == 2
    assert result.stderr.splitlines()[:2] == [
        "Error: This tagger does not know the label `city`.",
        "Hint: Its labels are: location, person.",
    ]
    assert result.stdout == ""


def test_extract_per_record_labels_and_metadata(tagger: Trained, tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", [
        {"id": "a", "text": BOB, "labels": ["location"]},
        {"id": "b", "text": CAROL},
        {"id": "c", "text": "   "},
    ])  # fmt: skip
    out = tmp_path / "out.jsonl"
    result = cli("extract", str(source), "-m", str(tagger.path), "-o", str(out))
    assert result.exit_code == 0, result.output
    rows = read_jsonl(out)
    assert [entities(r) for r in rows] == [[BOB_GOLD[1]], CAROL_GOLD, []]
    assert result.stderr.splitlines()[-1].startswith("3 entities in 3 documents (2 windows, ")
    meta = json.loads(out.with_name("out.jsonl.meta.json").read_text())
    assert meta["recognizer"] == "tagger" and meta["head"] == "spanner"
    assert meta["labels"] == ["location", "person"]
    assert meta["settings"]["uncertainty"] == "confidence"
    assert meta["stats"]["documents"] == 3 and meta["stats"]["chunks"] == 2 and meta["stats"]["entities"] == 3


def test_extract_long_text_is_windowed_with_document_offsets(tagger: Trained, tmp_path: Path) -> None:
    # The same tagger with a 12-subword window (its card's max_length): 60 copies of BOB in one document are cut
    # at sentence ends into many windows (the tiny encoder only ever saw short sentences, so windows stay short).
    import shutil

    small = Path(shutil.copytree(tagger.path, tmp_path / "small"))
    card = json.loads((small / "b2ner_tagger.json").read_text())
    card["settings"]["max_length"] = 12
    (small / "b2ner_tagger.json").write_text(json.dumps(card))
    text = " ".join([BOB] * 60)
    out = tmp_path / "out.jsonl"
    source = tmp_path / "long.txt"
    source.write_text(text, encoding="utf-8")
    result = cli("extract", str(source), "--whole-file", "-m", str(small), "-o", str(out), "-q")
    assert result.exit_code == 0, result.output
    [record] = read_jsonl(out)
    step = len(BOB) + 1
    expected = [(k * step + s, k * step + e, t, lab) for k in range(60) for s, e, t, lab in BOB_GOLD]
    assert entities(record) == expected
    meta = json.loads(out.with_name("out.jsonl.meta.json").read_text())
    assert meta["stats"]["chunks"] >= 30


def test_recognizer_reports_progress_per_batch_and_counts(tagger: Trained) -> None:
    from b2ner_cli.io.readers import Document
    from b2ner_cli.models.spec import ModelSpec
    from b2ner_cli.runs.recognizer import load_recognizer
    from b2ner_cli.runs.settings import ExtractSettings, RunStats, Task

    recognizer = load_recognizer(ModelSpec(str(tagger.path), device="cpu"))
    assert recognizer.kind == "tagger"
    calls: list[int] = []
    stats = RunStats()
    docs = [Document("1", BOB), Document("2", CAROL), Document("3", BOB)]
    task = Task.of(None, (), ExtractSettings(batch_tokens=1))  # one window per batch
    records = list(recognizer.recognize(docs, task, stats, lambda: calls.append(stats.prompts_done)))
    assert calls == [1, 2, 3]
    assert [r.id for r in records] == ["1", "2", "3"]
    assert (stats.documents, stats.chunks, stats.prompts_done, stats.entities) == (3, 3, 3, 6)


@pytest.mark.parametrize(
    "args, flag",
    [
        (["--adapter", "x/y"], "--adapter"),
        (["--examples", "ex.jsonl"], "--examples"),
        (["--lang", "en"], "--lang"),
        (["--labels-file", "DESC"], "--labels-file with descriptions"),
        (["-l", "person", "--map-labels"], "--map-labels"),
        (["--merge"], "--merge"),
        (["--quantize", "4bit"], "--quantize"),
        (["--dtype", "float32"], "--dtype"),
        (["--dry-run"], "--dry-run"),
    ],
)
def test_extract_refuses_llm_only_flags(tagger: Trained, tmp_path: Path, args: list[str], flag: str) -> None:
    descriptions = tmp_path / "labels.json"
    descriptions.write_text(json.dumps({"person": "a human being"}))
    source = tmp_path / "in.txt"
    source.write_text(BOB + "\n")
    args = [str(descriptions) if a == "DESC" else a for a in args]
    result = cli("extract", str(source), "-m", str(tagger.path), *args)
    assert result.exit_code == 2
    assert result.stderr.splitlines()[0] == f"Error: {flag} cannot be used with a tagger (`{tagger.path}` is a tagger)."
    assert result.stdout == ""


# -- eval, models info, the Python API --------------------------------------------------------------------------


def test_eval_with_a_tagger_scores_strict_f1(tagger: Trained, tmp_path: Path) -> None:
    # Gold leaves out Oslo in CAROL: predictions Bob Stone, Berlin, Carol, Oslo -> tp 3, fp 1, fn 0;
    # P = 3/4, R = 1, F1 = 2 * 3/4 / (7/4) = 6/7.
    gold = write_jsonl(tmp_path / "gold.jsonl", [
        {"id": "1", "text": BOB, "labels": ["person", "location"], "entities": [
            {"start": 0, "end": 9, "label": "person"}, {"start": 19, "end": 25, "label": "location"}]},
        {"id": "2", "text": CAROL, "labels": ["person", "location"], "entities": [
            {"start": 0, "end": 5, "label": "person"}]},
    ])  # fmt: skip
    out = tmp_path / "pred.jsonl"
    result = cli("eval", str(gold), "-m", str(tagger.path), "--predictions-out", str(out), "--json", "-q")
    assert result.exit_code == 0, result.output
    assert [entities(r) for r in read_jsonl(out)] == [BOB_GOLD, CAROL_GOLD]
    [dataset] = json.loads(result.stdout)["datasets"]
    assert dataset["strict"]["precision"] == pytest.approx(3 / 4)
    assert dataset["strict"]["recall"] == pytest.approx(1.0)
    assert dataset["strict"]["f1"] == pytest.approx(6 / 7)
    assert dataset["b2ner"]["f1"] == pytest.approx(6 / 7)  # the answer built from the entities, same counts here


def test_eval_with_a_tagger_refuses_an_adapter(tagger: Trained, tmp_path: Path) -> None:
    gold = write_jsonl(tmp_path / "gold.jsonl", [{"id": "1", "text": BOB, "entities": []}])
    out = tmp_path / "pred.jsonl"
    result = cli("eval", str(gold), "-m", str(tagger.path), "--adapter", "x/y", "--predictions-out", str(out), "-q")
    assert result.exit_code == 2
    first = result.stderr.splitlines()[0]
    assert first == f"Error: --adapter cannot be used with a tagger (`{tagger.path}` is a tagger)."


def test_models_info_on_a_tagger(tagger: Trained) -> None:
    from b2ner_cli import __version__

    result = cli("models", "info", str(tagger.path), "--json")
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    card = json.loads((tagger.path / "b2ner_tagger.json").read_text())
    assert info["kind"] == "tagger" and info["head"] == "spanner"
    assert info["encoder"] == str(tagger.encoder) and info["encoder_revision"] is None
    assert info["labels"] == ["location", "person"]
    assert info["dev_best_f1"] == card["dev"]["best_f1"] and len(info["dev_f1_per_epoch"]) == 12
    assert info["created_with"] == f"b2ner {__version__}"
    table = cli("models", "info", str(tagger.path))
    assert table.exit_code == 0 and "spanner" in table.stdout


def test_extractor_load_a_tagger(tagger: Trained) -> None:
    from b2ner_cli import Extractor

    ner = Extractor.load(str(tagger.path), device="cpu")
    assert ner.recognizer.kind == "tagger"
    [bob, carol] = ner.extract([BOB, CAROL])  # no labels: all of the tagger's
    assert [(e.start, e.end, e.text, e.label) for e in bob.entities] == BOB_GOLD
    assert [(e.start, e.end, e.text, e.label) for e in carol.entities] == CAROL_GOLD
    [only] = ner.extract([BOB], labels=["location"], uncertainty="entropy")
    assert [(e.start, e.end, e.label) for e in only.entities] == [(19, 25, "location")]
    assert only.entities[0].source == "tagger" and only.entities[0].uncertainty is not None


# -- distillation: the LLM labels, a tagger learns ------------------------------------------------------------


def test_distillation_llm_output_trains_a_tagger_that_recovers_it(tiny, tmp_path: Path) -> None:
    """extract with the taught LLM -> finetune --head spanner on its JSONL -> extract -m TAGGER recovers it."""
    from conftest import TAUGHT

    corpus = [
        {"id": f"{n}-{k}", "text": text, "labels": list(labels)}
        for n, (text, labels, _) in enumerate(TAUGHT)
        for k in range(4)
    ]
    source = write_jsonl(tmp_path / "corpus.jsonl", corpus)
    labelled = tmp_path / "llm.jsonl"
    result = cli("extract", str(source), "-m", str(tiny.base), "--adapter", str(tiny.adapter), "-o", str(labelled),
                 "-q")  # fmt: skip
    assert result.exit_code == 0, result.output
    teacher = read_jsonl(labelled)
    # the taught answers, grounded (see test_extract_cli): 3 + 0 + 2 + 2 + 2 entities per copy
    assert [len(r["entities"]) for r in teacher[::4]] == [3, 0, 2, 2, 2]

    tokenizer = build_wordpiece_tokenizer([text for text, _, _ in TAUGHT])
    encoder = save(build_bert(len(tokenizer), hidden=32), tokenizer, tmp_path / "encoder")
    student = tmp_path / "tagger"
    result = cli("finetune", str(labelled), "-o", str(student), "--head", "spanner", "--encoder", str(encoder),
                 "--epochs", "25", "--train-batch-size", "4", "--lr", "2e-3", "--head-lr", "5e-3", "-q")  # fmt: skip
    assert result.exit_code == 0, result.output
    card = json.loads((student / "b2ner_tagger.json").read_text())
    assert card["labels"] == sorted(["person", "organization", "location", "人名", "地名"])

    texts = tmp_path / "texts.jsonl"
    write_jsonl(texts, [{"id": r["id"], "text": r["text"]} for r in teacher[::4]])
    result = cli("extract", str(texts), "-m", str(student), "-q")
    assert result.exit_code == 0, result.output
    students = [json.loads(line) for line in result.stdout.splitlines()]
    assert [entities(r) for r in students] == [entities(r) for r in teacher[::4]]
