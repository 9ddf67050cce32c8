"""kNN-NER: the datastore's keys and values, the weights and the mix worked out by hand, lambda 0 = the plain
tagger, lambda 1 with k 1 giving back the gold of the store's own sentences (every head), --tune, the cascade,
and the refusals."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import torch
from helpers import cli, read_jsonl, write_jsonl
from trained import Trained, gold_rows

from b2ner_cli.errors import UsageError
from b2ner_cli.retrieval.knn import KnnIndex, KnnMixer, KnnParams, KnnSpec, knn_distribution
from b2ner_cli.taggers import TaggerExample
from b2ner_cli.taggers.heads import SpanHead

# Three sentences of the session tagger's synthetic task (7 words each: its tokenizer knows them all).
ROWS = [
    {"id": "a", "text": "Yesterday David Lee flew to Tokyo .",
     "entities": [{"start": 10, "end": 19, "label": "person"}, {"start": 28, "end": 33, "label": "location"}]},
    {"id": "b", "text": "李明住在北京。",
     "entities": [{"start": 0, "end": 2, "label": "person"}, {"start": 4, "end": 6, "label": "location"}]},
    {"id": "c", "text": "In Rome , Emma met friends .",
     "entities": [{"start": 3, "end": 7, "label": "location"}, {"start": 10, "end": 14, "label": "person"}]},
]  # fmt: skip
GOLD = [[(e["start"], e["end"], e["label"]) for e in row["entities"]] for row in ROWS]  # type: ignore[index]


def entities(record: dict) -> list[tuple[int, int, str]]:
    return [(e["start"], e["end"], e["label"]) for e in record["entities"]]


# ---------------------------------------------------------------------------------------------- by hand


def test_three_neighbours_weights_and_mix_worked_out_by_hand() -> None:
    # keys at cosines 0.9, 0.8 and 0.5 from the query e1 (unit vectors in 2D), with classes 1, 0, 1
    keys = torch.tensor([[0.9, math.sqrt(1 - 0.81)], [0.8, 0.6], [0.5, math.sqrt(0.75)], [-1.0, 0.0]])
    index = KnnIndex(keys, torch.tensor([[1], [0], [1], [2]]), classes=3, backend="torch")
    scores, classes_of = index.neighbours(torch.tensor([[2.0, 0.0]]), 3)  # the query's length does not matter
    assert torch.allclose(scores, torch.tensor([[0.9, 0.8, 0.5]]), atol=1e-6)
    assert classes_of[:, :, 0].tolist() == [[1, 0, 1]]
    # T = 0.1: weights = softmax(9, 8, 5) = (1, e^-1, e^-4) / (1 + e^-1 + e^-4) = 0.721398, 0.265387, 0.013213
    p = knn_distribution(scores, classes_of, 3, 0.1)
    assert p.shape == (1, 1, 3)
    assert torch.allclose(p[0, 0], torch.tensor([0.265387, 0.734611, 0.0]), atol=1e-5)
    # the spanner's mix with lambda 0.25 and its own softmax (0.5, 0.25, 0.25) from logits (ln 2, 0, 0):
    # 0.25 * (0.265387, 0.734611, 0) + 0.75 * (0.5, 0.25, 0.25) = (0.441347, 0.371153, 0.1875)
    head = SpanHead(4, 2, max_span=1)
    out = {"logits": torch.tensor([[[math.log(2), 0.0, 0.0]]]), "features": torch.tensor([[[2.0, 0.0, 0.0, 0.0]]]),
           "valid": torch.tensor([[True]])}  # fmt: skip
    head.knn_mix(out, p.unsqueeze(0), 0.25)
    assert torch.allclose(out["mixed"][0, 0], torch.tensor([0.441347, 0.371153, 0.1875]), atol=1e-5)


def test_k_larger_than_the_store_and_an_invalid_position() -> None:
    index = KnnIndex(torch.eye(2), torch.tensor([[1], [0]]), classes=2, backend="torch")
    mixer = KnnMixer(index, KnnParams(k=64, lam=1.0, temperature=1.0))
    head = SpanHead(2, 1, max_span=1)
    out = {"logits": torch.zeros(1, 2, 2), "features": torch.tensor([[[1.0, 0.0], [0.0, 1.0]]]),
           "valid": torch.tensor([[True, False]])}  # fmt: skip
    mixed = mixer.apply(head, out)["mixed"]
    # both keys are neighbours: softmax(1, 0) = (0.731059, 0.268941) for classes 1 and 0
    assert torch.allclose(mixed[0, 0], torch.tensor([0.268941, 0.731059]), atol=1e-5)
    assert mixed[0, 1].tolist() == [0.0, 0.0]  # an invalid span gets no kNN mass (and is never decoded)
    assert "mixed" not in out  # the head's own outputs are left as they were


def test_torch_and_faiss_search_find_the_same_neighbours(monkeypatch: pytest.MonkeyPatch) -> None:
    import b2ner_cli.retrieval.knn as knn

    generator = torch.Generator().manual_seed(0)
    keys = torch.randn(500, 16, generator=generator)
    queries = torch.randn(40, 16, generator=generator)
    values = torch.arange(500).unsqueeze(-1)
    exact = torch.nn.functional.normalize(queries, dim=-1) @ torch.nn.functional.normalize(keys, dim=-1).T
    want = exact.topk(5, dim=-1).indices
    monkeypatch.setattr(knn, "_BLOCK", 500 * 7)  # 7 queries per block: the blocks must join up
    scores, indices = KnnIndex(keys, values, 500, backend="torch").search(queries, 5)
    assert torch.equal(indices, want) and torch.allclose(scores, exact.topk(5).values, atol=1e-6)
    pytest.importorskip("faiss")
    f_scores, f_indices = KnnIndex(keys, values, 500, backend="faiss").search(queries, 5)
    assert torch.equal(f_indices, want) and torch.allclose(f_scores, scores, atol=1e-5)


def test_knn_settings_are_checked() -> None:
    for bad in ({"k": 0}, {"lam": 1.5}, {"lam": -0.1}, {"temperature": 0.0}):
        with pytest.raises(UsageError):
            KnnSpec("store", **bad)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------- the store


@pytest.fixture(scope="module")
def train_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_jsonl(tmp_path_factory.mktemp("knn") / "train.jsonl", ROWS)


@pytest.fixture(scope="module")
def store(tagger: Trained, train_file: Path) -> Path:
    out = train_file.parent / "store"
    result = cli("index", str(train_file), "-m", str(tagger.path), "-o", str(out), "--negative-rate", "1", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    # spanner, max 4 words per span: a 7-word sentence has 4 + 4 + 4 + 4 + 3 + 2 + 1 = 22 spans; rate 1 keeps all
    assert (summary["keys"], summary["key_dimension"]) == (66, 32)
    return out


def test_store_keys_and_values_per_span(store: Path, tagger: Trained, train_file: Path, tmp_path: Path) -> None:
    meta = json.loads((store / "store.json").read_text())
    assert {k: meta["knn"][k] for k in ("head", "keys", "values_per_key", "classes", "negative_rate")} == {
        "head": "spanner", "keys": 66, "values_per_key": 1, "classes": 3, "negative_rate": 1.0}  # fmt: skip
    from b2ner_cli.retrieval.store import open_store

    index = open_store(store).knn_index()
    labels = json.loads((tagger.path / "b2ner_tagger.json").read_text())["labels"]
    gold_classes = sorted(labels.index(label) + 1 for doc in GOLD for _, _, label in doc)
    assert sorted(c for c in index.values[:, 0].tolist() if c) == gold_classes
    assert torch.allclose(index.keys.norm(dim=-1), torch.ones(66), atol=1e-5)
    # rate 0 keeps exactly the six gold spans
    only = tmp_path / "gold-only"
    assert cli("index", str(train_file), "-m", str(tagger.path), "-o", str(only), "--negative-rate", "0").exit_code == 0
    assert sorted(open_store(only).knn_index().values[:, 0].tolist()) == gold_classes


def extract(tagger: Trained, source: Path, *flags: str) -> list[dict]:
    result = cli("extract", str(source), "-m", str(tagger.path), "-q", *flags)
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_lambda_zero_is_exactly_the_plain_tagger(store: Path, tagger: Trained, tmp_path: Path) -> None:
    source = tmp_path / "in.txt"
    lines = ["Yesterday Emma flew to Oslo .", "在上海，王芳见了朋友。", "Bob Stone likes Rome ."]
    source.write_text("\n".join(lines) + "\n", encoding="utf-8")
    plain = extract(tagger, source)
    assert any(r["entities"] for r in plain)
    assert extract(tagger, source, "--knn", str(store), "--knn-lambda", "0") == plain
    assert extract(tagger, source, "--knn", str(store), "--knn-lambda", "0", "--uncertainty", "entropy") == extract(
        tagger, source, "--uncertainty", "entropy"
    )


def test_lambda_one_k_one_gives_back_the_stores_gold(store: Path, tagger: Trained, tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", [{"id": r["id"], "text": r["text"]} for r in ROWS])
    out = tmp_path / "out.jsonl"
    result = cli("extract", str(source), "-m", str(tagger.path), "--knn", str(store), "--knn-k", "1",
                 "--knn-lambda", "1", "-o", str(out), "-q")  # fmt: skip
    assert result.exit_code == 0, result.output
    records = read_jsonl(out)
    assert [entities(r) for r in records] == GOLD
    assert all(e["score"] == 1.0 and e["uncertainty"] == 0.0 for r in records for e in r["entities"])
    meta = json.loads(Path(f"{out}.meta.json").read_text())
    assert {k: meta["knn"][k] for k in ("store", "k", "lambda", "temperature", "keys")} == {
        "store": str(store), "k": 1, "lambda": 1.0, "temperature": 0.05, "keys": 66}  # fmt: skip


@pytest.mark.parametrize("head", ["spanner", "biaffine", "crf", "pointer"])
def test_barely_trained_taggers_of_every_head_recover_the_gold(
    head: str, encoder_dir: Path, train_file: Path, tmp_path: Path
) -> None:
    from b2ner_cli.retrieval.store import build_store, open_store
    from b2ner_cli.taggers import Tagger, TaggerTrainSettings, train_tagger

    examples = [TaggerExample(r["text"], tuple(g)) for r, g in zip(ROWS, GOLD, strict=True)]  # type: ignore[arg-type]
    settings = TaggerTrainSettings(head=head, epochs=1, batch_size=8, encoder_lr=1e-6, head_lr=1e-6,
                                   max_span_words=4)  # fmt: skip
    train_tagger(str(encoder_dir), examples, tmp_path / "tagger", settings, device="cpu")
    build_store(train_file, tmp_path / "tagger", tmp_path / "store", negative_rate=1.0, device="cpu")
    tagger = Tagger.load(tmp_path / "tagger", device="cpu")
    texts = [r["text"] for r in ROWS]
    plain = [[(s.start, s.end, s.label) for s in doc] for doc in tagger.predict(texts)]
    assert plain != GOLD  # one epoch at lr 1e-6 has learnt nothing
    store = open_store(tmp_path / "store")
    mixer = KnnMixer(store.knn_index(), KnnParams(k=1, lam=1.0, temperature=0.05))
    found = [[(s.start, s.end, s.label) for s in doc] for doc in tagger.predict(texts, knn=mixer)]
    assert found == GOLD
    zero = KnnMixer(store.knn_index(), KnnParams(k=8, lam=0.0, temperature=0.05))
    assert tagger.predict(texts, knn=zero) == tagger.predict(texts)


# ---------------------------------------------------------------------------------------------- --tune


def test_tune_writes_the_best_settings_into_the_store(tagger: Trained, tmp_path: Path) -> None:
    from test_taggers import DEV, TRAIN

    train = write_jsonl(tmp_path / "train.jsonl", gold_rows(TRAIN[:24]))
    dev = write_jsonl(tmp_path / "dev.jsonl", gold_rows(DEV[:12]))
    out = tmp_path / "store"
    result = cli("index", str(train), "-m", str(tagger.path), "-o", str(out), "--tune", str(dev), "--json")
    assert result.exit_code == 0, result.output
    tuned = json.loads(result.stdout)["tuned"]
    meta = json.loads((out / "store.json").read_text())
    assert meta["defaults"] == tuned["best"] and meta["tuned"] == tuned and tuned["dev"] == str(dev)
    assert tuned["f1"] >= tuned["plain_f1"]
    assert all(type(k) is int for k in tuned["grid"]["k"]) and 0.0 in tuned["grid"]["lambda"]
    assert tuned["settings_tried"] == len(tuned["grid"]["k"]) * len(tuned["grid"]["lambda"]) * len(
        tuned["grid"]["temperature"]
    )
    # the plain F1 the grid saw is the tagger's own strict F1 on dev, as eval computes it independently
    report = cli("eval", str(dev), "-m", str(tagger.path), "--json", "-q")
    assert report.exit_code == 0, report.output
    assert tuned["plain_f1"] == pytest.approx(json.loads(report.stdout)["datasets"][0]["strict"]["f1"], abs=1e-6)
    # the run uses the tuned settings unless told otherwise
    source = tmp_path / "in.txt"
    source.write_text("Yesterday Emma flew to Oslo .\n", encoding="utf-8")
    run = tmp_path / "run.jsonl"
    assert cli("extract", str(source), "-m", str(tagger.path), "--knn", str(out), "-o", str(run), "-q").exit_code == 0
    used = json.loads(Path(f"{run}.meta.json").read_text())["knn"]
    assert {k: used[k] for k in ("k", "lambda", "temperature")} == tuned["best"]


# ---------------------------------------------------------------------------------------------- cascade, eval


def test_cascade_routes_by_the_mixed_uncertainty(store: Path, tagger: Trained, tiny, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    import b2ner_cli.cascade.recognizer as cascade_recognizer

    def no_llm(*_: object) -> None:
        raise AssertionError("the LLM was loaded")

    monkeypatch.setattr(cascade_recognizer, "load_llm", no_llm)
    source = write_jsonl(tmp_path / "in.jsonl", [{"id": r["id"], "text": r["text"]} for r in ROWS])
    plain = extract(tagger, source)
    assert any(e["uncertainty"] > 0.001 for r in plain for e in r["entities"])  # so plain would route at 0.001
    out = tmp_path / "out.jsonl"
    result = cli("extract", str(source), "-m", str(tagger.path), "--cascade", str(tiny.base), "--threshold", "0.001",
                 "--knn", str(store), "--knn-k", "1", "--knn-lambda", "1", "-o", str(out), "-q")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert [entities(r) for r in read_jsonl(out)] == GOLD  # one-hot mixes: uncertainty 0, nothing routed
    assert json.loads(Path(f"{out}.meta.json").read_text())["cascade"]["routed_spans"] == 0


def test_eval_with_knn_scores_the_mixed_tagger(store: Path, tagger: Trained, train_file: Path) -> None:
    result = cli("eval", str(train_file), "-m", str(tagger.path), "--knn", str(store), "--knn-k", "1",
                 "--knn-lambda", "1", "--json", "-q")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["datasets"][0]["strict"]["f1"] == 1.0


# ---------------------------------------------------------------------------------------------- refusals


def one_line_error(result, code: int, *needles: str) -> None:  # type: ignore[no-untyped-def]
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    for needle in needles:
        assert needle in result.stderr, result.stderr


def test_refusals(store: Path, tagger: Trained, tiny, tmp_path: Path) -> None:
    from safetensors.torch import load_file, save_file

    source = tmp_path / "in.txt"
    source.write_text("Yesterday Emma flew to Oslo .\n", encoding="utf-8")
    run = ["extract", str(source)]
    one_line_error(cli(*run, "-m", str(tagger.path), "--knn-k", "3"), 2, "--knn-k applies with --knn STORE")
    one_line_error(cli(*run, "-m", str(tiny.base), "-l", "person", "--knn", str(store)), 2, "not a tagger")
    one_line_error(cli(*run, "-m", str(tagger.path), "--knn", str(tmp_path)), 2, "is not a b2ner store")
    one_line_error(cli(*run, "-m", str(tagger.path), "--knn", str(store), "--uncertainty", "evidential"), 2,
                   "--uncertainty evidential cannot be used with --knn")  # fmt: skip
    one_line_error(cli(*run, "-m", str(tagger.path), "--knn", str(store), "--knn-lambda", "2"), 2, "--knn-lambda")
    other = tmp_path / "other"
    shutil.copytree(tagger.path, other)
    weights = load_file(str(other / "head.safetensors"))
    save_file({k: v * 2 for k, v in weights.items()}, str(other / "head.safetensors"))
    one_line_error(cli(*run, "-m", str(other), "--knn", str(store)), 2, "was made by tagger")
    old = tmp_path / "old-store"  # a store from before kNN keys: sentence vectors only
    shutil.copytree(store, old)
    meta = json.loads((old / "store.json").read_text())
    del meta["knn"]
    (old / "store.json").write_text(json.dumps(meta))
    (old / "knn.safetensors").unlink()
    one_line_error(cli(*run, "-m", str(tagger.path), "--knn", str(old)), 2, "has no kNN keys", "--overwrite")
    gold = write_jsonl(tmp_path / "gold.jsonl", ROWS)
    one_line_error(cli("eval", str(gold), str(gold), "--knn", str(store)), 2, "--knn applies when eval runs a model")


def test_serve_with_knn_answers_as_extract_does(store: Path, tagger: Trained, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    pytest.importorskip("starlette")
    pytest.importorskip("httpx")
    from starlette.testclient import TestClient

    from b2ner_cli.serve import server

    served: list[object] = []
    monkeypatch.setattr(server.HttpServer, "serve", lambda self: served.append(self))
    flags = ["--knn", str(store), "--knn-k", "1", "--knn-lambda", "1"]
    result = cli("serve", "-m", str(tagger.path), "--port", "0", *flags)
    assert result.exit_code == 0, result.output
    running: object = served[0]
    running.socket.close()  # type: ignore[attr-defined]
    with TestClient(running._server.config.app) as client:  # type: ignore[attr-defined]
        answer = client.post("/extract", json={"texts": [r["text"] for r in ROWS]}).json()
        assert [entities(r) for r in answer["records"]] == GOLD
        assert client.get("/info").json()["description"]["knn"]["keys"] == 66
    refused = cli("serve", "-m", str(tagger.path), "--port", "0", "--knn", str(store), "--uncertainty", "evidential")
    assert refused.exit_code == 2 and "cannot be used with --knn" in refused.stderr
