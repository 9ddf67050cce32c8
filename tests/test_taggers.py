"""Local taggers trained for real on a tiny random BERT: every head learns a synthetic task, and predictions,
offsets, label subsets, saving, resuming and the no-pickle rule are checked on the trained models."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from b2ner_cli.errors import UsageError
from b2ner_cli.taggers import (
    UNCERTAINTY,
    TaggedSpan,
    Tagger,
    TaggerExample,
    TaggerTrainSettings,
    is_tagger_dir,
    train_tagger,
)
from b2ner_cli.taggers.scoring import strict_f1

EN_PERSONS = ["Alice", "Bob Stone", "Carol", "David Lee", "Emma", "Frank Wu"]
EN_PLACES = ["Paris", "Berlin", "New York", "Tokyo", "Rome", "Oslo"]
ZH_PERSONS = ["李明", "王芳", "张伟", "刘洋", "陈静", "赵磊"]
ZH_PLACES = ["北京", "上海", "杭州", "广州", "南京", "成都"]
EN_TEMPLATES = ["{p} lives in {l} .", "Yesterday {p} flew to {l} .", "In {l} , {p} met friends .", "{p} likes {l} ."]
ZH_TEMPLATES = ["{p}住在{l}。", "昨天{p}去了{l}。", "在{l}，{p}见了朋友。", "{p}在Microsoft工作，2024年去了{l}。"]
MIXED = "李明在Microsoft工作，2024年去了Paris。"
MIXED_GOLD = [(0, 2, "person"), (22, 27, "location")]  # 李明, Paris (worked out by counting characters)


def example(template: str, person: str, place: str) -> TaggerExample:
    text = template.format(p=person, l=place)
    entities = []
    for name, label in ((person, "person"), (place, "location")):
        at = text.index(name)
        entities.append((at, at + len(name), label))
    return TaggerExample(text, tuple(sorted(entities)))


def synthetic() -> tuple[list[TaggerExample], list[TaggerExample]]:
    """Train: each template with every person and a rotating place. Dev: held-out person/place/template triples."""
    train, dev = [], []
    for templates, persons, places in ((EN_TEMPLATES, EN_PERSONS, EN_PLACES), (ZH_TEMPLATES, ZH_PERSONS, ZH_PLACES)):
        for t, template in enumerate(templates):
            for k, person in enumerate(persons):
                train.append(example(template, person, places[(k + t) % 6]))
                if k % 2 == 0:
                    dev.append(example(template, person, places[(k + t + 3) % 6]))
    # the mixed-script template also with English places, so that MIXED is a held-out combination
    for k in range(1, 6):
        train.append(example(ZH_TEMPLATES[3], ZH_PERSONS[k], EN_PLACES[k]))
    return train, dev


TRAIN, DEV = synthetic()
FAST = {"epochs": 12, "batch_size": 8, "encoder_lr": 2e-3, "head_lr": 5e-3, "max_span_words": 4}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models train several times faster on one thread than on a shared, busy multi-core machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def trained(encoder_dir, tmp_path_factory):
    """trained(name, **settings) -> (result, tagger dir), each configuration trained once per session."""
    cache: dict[str, tuple] = {}

    def get(name: str, **overrides):
        if name not in cache:
            settings = TaggerTrainSettings(**{**FAST, **overrides})
            out = tmp_path_factory.mktemp("taggers") / name
            result = train_tagger(str(encoder_dir), TRAIN, out, settings, dev=DEV, device="cpu")
            cache[name] = (result, out)
        return cache[name]

    return get


HEADS = {
    "spanner": {"head": "spanner"},
    "spanner-evidential": {"head": "spanner", "loss": "evidential"},
    "crf": {"head": "crf"},
    "pointer": {"head": "pointer"},
    "biaffine": {"head": "biaffine"},
}


def as_triples(spans: list[list[TaggedSpan]]) -> list[list[tuple[int, int, str]]]:
    return [[(s.start, s.end, s.label) for s in doc] for doc in spans]


@pytest.mark.parametrize("name", list(HEADS))
def test_every_head_learns_the_synthetic_task(trained, name):
    result, out = trained(name, **HEADS[name])
    assert is_tagger_dir(out)
    assert result.best_dev_f1 is not None and result.best_dev_f1 >= 0.95
    tagger = Tagger.load(out, device="cpu")
    predicted = tagger.predict([e.text for e in DEV])
    score = strict_f1([e.entities for e in DEV], as_triples(predicted))
    assert score["f1"] >= 0.95, score
    assert score["f1"] == pytest.approx(result.best_dev_f1)  # the loaded tagger is the selected epoch
    assert as_triples(tagger.predict([MIXED])) == [MIXED_GOLD]


@pytest.mark.parametrize("name", list(HEADS))
def test_scores_and_uncertainty_stay_in_range(trained, name):
    tagger = Tagger.load(trained(name, **HEADS[name])[1], device="cpu")
    texts = [e.text for e in DEV[:6]] + ["Nobody went anywhere .", "Frank Wu Oslo Tokyo 北京 ."]
    for method in UNCERTAINTY:
        spans = [s for doc in tagger.predict(texts, uncertainty=method, mc_samples=3) for s in doc]
        assert spans
        assert all(0.0 <= s.score <= 1.0 for s in spans)
        if tagger.head == "crf":
            assert all(s.uncertainty is None for s in spans)
        else:
            assert all(s.uncertainty is not None and 0.0 <= s.uncertainty <= 1.0 for s in spans)
        if method == "confidence" and tagger.head in ("spanner", "biaffine") and tagger.settings.loss == "ce":
            # the decoded label is the argmax, so 1 - max p is 1 - its probability
            assert all(s.uncertainty == pytest.approx(1 - s.score, abs=1e-6) for s in spans)


def test_card_and_files(trained):
    result, out = trained("spanner", **HEADS["spanner"])
    card = json.loads((out / "b2ner_tagger.json").read_text(encoding="utf-8"))
    assert card["head"] == "spanner" and card["labels"] == ["location", "person"]
    assert card["settings"]["max_span_words"] == 4
    assert card["dev"]["best_epoch"] == result.best_epoch
    assert len(card["dev"]["per_epoch"]) == result.epochs_run == 12
    assert set(card["data"]) >= {"train", "dev"}
    names = {p.name for p in out.iterdir()}
    assert {"config.json", "model.safetensors", "head.safetensors", "tokenizer.json", "metrics.jsonl"} <= names
    assert not [n for n in names if n.endswith((".bin", ".pt", ".pth", ".pkl", ".ckpt"))]
    lines = (out / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
    assert [json.loads(x)["epoch"] for x in lines] == list(range(1, 13))
    assert not (out.parent / f".{out.name}.partial").exists()
    described = Tagger.load(out, device="cpu").describe()
    assert described["head"] == "spanner" and described["device"] == "cpu" and described["dtype"] == "float32"


def test_long_text_is_chunked_with_exact_offsets(trained):
    from b2ner_cli.taggers.words import make_windows

    tagger = Tagger.load(trained("spanner", **HEADS["spanner"])[1], device="cpu")
    tagger.settings.max_length = 24  # force several windows
    text = " ".join(e.text for e in DEV[:4] + DEV[12:16])
    windows = make_windows(tagger.tokenizer, [text], 24)
    assert len(windows) > 2
    (spans,) = tagger.predict([text])
    # the same as predicting each window's text alone, shifted by the window's start
    alone = tagger.predict([text[w.start : w.end] for w in windows])
    pairs = zip(windows, alone, strict=True)
    shifted = [(s.start + w.start, s.end + w.start, s.label) for w, doc in pairs for s in doc]
    assert [(s.start, s.end, s.label) for s in spans] == shifted
    names = set(EN_PERSONS + EN_PLACES + ZH_PERSONS + ZH_PLACES)
    assert len(spans) >= 12 and all(text[s.start : s.end] in names for s in spans)


def test_label_subset_and_unknown_label(trained):
    for name in ("spanner", "crf", "pointer"):
        tagger = Tagger.load(trained(name, **HEADS[name])[1], device="cpu")
        texts = [e.text for e in DEV]
        full = tagger.predict(texts)
        only = tagger.predict(texts, labels=["location"])
        assert as_triples(only) == [[t for t in doc if t[2] == "location"] for doc in as_triples(full)]
        assert any(only)
    assert tagger.predict([]) == [] and tagger.predict(["", "  "]) == [[], []]
    with pytest.raises(UsageError, match="`organization`") as err:
        tagger.predict(["Alice lives in Paris ."], labels=["location", "organization"])
    assert "location, person" in (err.value.hint or "")


def test_save_and_load_round_trip_gives_identical_predictions(trained, tmp_path):
    tagger = Tagger.load(trained("biaffine", **HEADS["biaffine"])[1], device="cpu")
    with torch.no_grad():  # make the in-memory tagger differ from the one on disk
        tagger.model.head.linear.bias.add_(0.3)
        tagger.model.encoder.embeddings.word_embeddings.weight.mul_(1.1)
    texts = [e.text for e in DEV] + [MIXED]
    before = tagger.predict(texts, uncertainty="entropy")
    tagger.save(tmp_path / "copy")
    after = Tagger.load(tmp_path / "copy", device="cpu").predict(texts, uncertainty="entropy")
    assert after == before


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return {**load_file(str(folder / "model.safetensors")), **load_file(str(folder / "head.safetensors"))}


class Stop(Exception):
    pass


def _stop_after(epoch: int):
    def on_epoch(record: dict) -> None:
        if record["epoch"] == epoch:
            raise Stop

    return on_epoch


def test_resume_matches_an_uninterrupted_run_and_refuses_changes(encoder_dir, tmp_path, monkeypatch):
    settings = TaggerTrainSettings(**{**FAST, "epochs": 3})
    data = TRAIN[::3]
    whole = train_tagger(str(encoder_dir), data, tmp_path / "whole", settings, device="cpu")

    out = tmp_path / "resumed"
    out.mkdir()
    (out / "keep.txt").write_text("an earlier output")  # replaced only once training has produced a result
    with pytest.raises(Stop):
        train_tagger(str(encoder_dir), data, out, settings, device="cpu", on_epoch=_stop_after(2))
    assert (out / "keep.txt").exists() and not is_tagger_dir(out)
    partial = tmp_path / ".resumed.partial"
    assert (partial / "checkpoint.safetensors").is_file() and (partial / "checkpoint.json").is_file()

    changed = TaggerTrainSettings(**{**FAST, "epochs": 3, "negative_weight": 0.5})
    with pytest.raises(UsageError, match="`negative_weight`"):
        train_tagger(str(encoder_dir), data, out, changed, device="cpu", resume=True)
    with pytest.raises(UsageError, match="`train`"):
        train_tagger(str(encoder_dir), TRAIN[::4], out, settings, device="cpu", resume=True)
    with pytest.raises(UsageError, match="`labels`"):
        train_tagger(str(encoder_dir), data, out, settings, labels=["person", "location"], device="cpu", resume=True)

    # no pickle: a planted torch.save file sits in the checkpoint dir and torch.load must never be called
    torch.save({"planted": torch.zeros(1)}, partial / "optimizer.pt")
    (partial / "pytorch_model.bin").write_bytes((partial / "optimizer.pt").read_bytes())

    def no_pickle(*args, **kwargs):
        raise AssertionError("torch.load was called")

    monkeypatch.setattr(torch, "load", no_pickle)
    resumed = train_tagger(str(encoder_dir), data, out, settings, device="cpu", resume=True)
    assert resumed.resumed_from_epoch == 2 and resumed.epochs_run == 3
    assert not (out / "keep.txt").exists() and is_tagger_dir(out)
    assert [m["loss"] for m in resumed.metrics] == [m["loss"] for m in whole.metrics]
    a, b = _weights(tmp_path / "whole"), _weights(out)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    Tagger.load(out, device="cpu").predict([MIXED])  # loading never unpickles either
    with pytest.raises(UsageError, match="no interrupted"):
        train_tagger(str(encoder_dir), data, out, settings, device="cpu", resume=True)


def test_early_stopping_and_skipped_entities(encoder_dir, tmp_path):
    odd = TaggerExample("Alice lives in Parisian lands .", ((15, 20, "location"), (0, 5, "person")))
    settings = TaggerTrainSettings(**{**FAST, "epochs": 6, "patience": 1, "encoder_lr": 0.0, "head_lr": 0.0})
    result = train_tagger(str(encoder_dir), [*TRAIN[:8], odd], tmp_path / "t", settings, dev=DEV[:4], device="cpu")
    assert result.skipped["unaligned"] == 1  # "Paris" inside "Parisian" is not a word
    # nothing can improve with zero learning rates: epoch 1 stays best and epoch 2 triggers the stop
    assert result.stopped_early and result.epochs_run == 2 and result.best_epoch == 1
