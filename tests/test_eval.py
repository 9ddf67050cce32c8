"""`b2ner eval`: readers, strict scoring, upstream files, the CLI, and errors (metric rules: test_b2ner_metric)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import cli, write_jsonl

from b2ner_cli.errors import InputError
from b2ner_cli.evaluation.b2ner_metric import Counts
from b2ner_cli.evaluation.readers import read_b2nerd, read_conll, read_gold_jsonl, read_predictions
from b2ner_cli.evaluation.records import GoldRecord, PredRecord
from b2ner_cli.evaluation.report import confidence_interval, evaluate
from b2ner_cli.records import Entity

TEXT_A = "Barack Obama visited Paris ."  # Barack Obama 0-12, Paris 21-26
TEXT_B = "Ada met Bob ."  # Ada 0-3, Bob 8-11
GOLD = [
    {"id": "a", "text": TEXT_A, "dataset": "demo", "labels": ["person", "location"],
     "entities": [{"start": 0, "end": 12, "label": "person"}, {"start": 21, "end": 26, "label": "location"}]},
    {"id": "b", "text": TEXT_B, "dataset": "demo", "labels": ["person", "location"],
     "entities": [{"start": 0, "end": 3, "label": "person"}, {"start": 8, "end": 11, "label": "person"}]},
]  # fmt: skip
PRED = [
    {"id": "a", "text": TEXT_A, "unmatched": [],
     "entities": [{"start": 0, "end": 6, "text": "Barack", "label": "person"},
                  {"start": 21, "end": 26, "text": "Paris", "label": "location"}]},
    {"id": "b", "text": TEXT_B, "unmatched": [{"text": "Carl", "label": "person"}],
     "entities": [{"start": 0, "end": 3, "text": "Ada", "label": "person"}],
     "raw": " person: Ada; person: Carl; city: Bob"},
]  # fmt: skip


def test_scores_by_hand(tmp_path: Path) -> None:
    gold = read_gold_jsonl(write_jsonl(tmp_path / "gold.jsonl", GOLD))
    predicted = read_predictions(write_jsonl(tmp_path / "pred.jsonl", PRED))
    [d] = evaluate(gold, predicted).datasets
    # b2ner: a: gold {person:barack obama, location:paris} vs {person:barack, location:paris} -> tp 1, fp 1, fn 1;
    # b uses raw: gold {person:ada, person:bob} vs {person:ada, person:carl, city:bob} -> tp 1, fp 2, fn 1.
    assert (d.b2ner.tp, d.b2ner.fp, d.b2ner.fn) == (2, 3, 2)
    assert d.b2ner.precision == pytest.approx(2 / 5) and d.b2ner.recall == pytest.approx(2 / 4)
    assert d.b2ner.f1 == pytest.approx(2 * 0.4 * 0.5 / 0.9)
    assert d.unknown_labels == 1  # "city" is not in the label set
    # strict: a: (0,12) missed, (0,6) extra, Paris exact; b: Ada exact, Bob missed -> tp 2, fp 1, fn 2
    assert d.strict is not None and (d.strict.tp, d.strict.fp, d.strict.fn) == (2, 1, 2)
    # per label: location tp 1 -> F1 1; person tp 1, fp 1, fn 2 -> P 1/2, R 1/3, F1 0.4; macro (1 + 0.4) / 2
    assert d.labels["person"].f1 == pytest.approx(0.4)
    assert d.strict_macro_f1 == pytest.approx(0.7)
    assert d.unmatched == 1


def span(start: int, end: int, label: str, text: str = "x" * 40) -> Entity:
    return Entity(start, end, text[start:end], label)


def gold_record(spans: tuple[Entity, ...]) -> GoldRecord:
    return GoldRecord("1", "x" * 40, spans, ("a", "b"), "d", "en", "test")


def test_strict_on_overlapping_and_nested_spans() -> None:
    gold = [gold_record((span(0, 10, "a"), span(4, 8, "b"), span(20, 30, "a")))]
    # (0,10,a) exact; (4,8,a) has the right span but the wrong label; (21,30,a) is off by one; (25,35,b) extra
    predicted = {"1": PredRecord("1", (span(0, 10, "a"), span(4, 8, "a"), span(21, 30, "a"), span(25, 35, "b")),
                                 "None", 0, "test")}  # fmt: skip
    [d] = evaluate(gold, predicted).datasets
    assert d.strict is not None and (d.strict.tp, d.strict.fp, d.strict.fn) == (1, 3, 2)
    assert (d.labels["a"].tp, d.labels["a"].fp, d.labels["a"].fn) == (1, 2, 1)
    assert (d.labels["b"].tp, d.labels["b"].fp, d.labels["b"].fn) == (0, 1, 1)


def test_perfect_and_empty_predictions(tmp_path: Path) -> None:
    gold = read_gold_jsonl(write_jsonl(tmp_path / "gold.jsonl", GOLD))
    perfect = {r.id: PredRecord(r.id, r.entities, r.answer(), 0, "p") for r in gold}
    [d] = evaluate(gold, perfect).datasets
    assert d.b2ner.f1 == 1.0 and d.strict is not None and d.strict.f1 == 1.0 and d.strict_macro_f1 == 1.0
    empty = {r.id: PredRecord(r.id, (), "None", 0, "p") for r in gold}
    [d] = evaluate(gold, empty).datasets
    assert d.b2ner.f1 == 0.0 and d.strict is not None and d.strict.f1 == 0.0


def test_confidence_interval_is_seeded_and_brackets_the_score() -> None:
    sentences = [Counts(1, 0, 0), Counts(0, 1, 1), Counts(2, 0, 1), Counts(1, 1, 0)]
    first = confidence_interval(sentences, 300, seed=7)
    assert first == confidence_interval(sentences, 300, seed=7)
    total = Counts()
    for c in sentences:
        total.add(c)
    assert first[0] <= total.f1 <= first[1]
    assert confidence_interval([Counts(1, 0, 0)] * 5, 50, seed=1) == (1.0, 1.0)


def test_conll_bio_iobes_and_bmes(tmp_path: Path) -> None:
    bio = tmp_path / "bio.txt"
    bio.write_text("-DOCSTART- O\n\nBarack B-PER\nObama I-PER\nvisited O\nNew B-LOC\nYork I-LOC\n\nHi O\n",
                   encoding="utf-8")  # fmt: skip
    first, second = read_conll(bio)
    assert first.text == "Barack Obama visited New York"
    assert [(s.start, s.end, s.label, s.text) for s in first.entities] == [
        (0, 12, "PER", "Barack Obama"), (21, 29, "LOC", "New York")]  # fmt: skip
    assert second.entities == () and first.dataset == "bio"
    iobes = tmp_path / "iobes.txt"
    iobes.write_text("Paris S-LOC\nand O\nSan B-LOC\nJose E-LOC\n", encoding="utf-8")
    [record] = read_conll(iobes)
    assert [(s.text, s.label) for s in record.entities] == [("Paris", "LOC"), ("San Jose", "LOC")]
    bmes = tmp_path / "bmes.txt"
    bmes.write_text("李 B-PER\n明 E-PER\n去 O\n北 B-LOC\n京 M-LOC\n市 E-LOC\n", encoding="utf-8")
    [record] = read_conll(bmes)
    assert record.text == "李明去北京市" and record.language == "zh"  # CJK characters join with nothing
    assert [(s.start, s.end, s.text) for s in record.entities] == [(0, 2, "李明"), (3, 6, "北京市")]


def test_conll_bad_tag(tmp_path: Path) -> None:
    bad = tmp_path / "bad.txt"
    bad.write_text("Paris X-LOC\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"bad.txt, line 1: tag 'X-LOC' is not"):
        read_conll(bad)


def test_b2nerd_split_file(tmp_path: Path) -> None:
    folder = tmp_path / "NER_zh" / "weibo"
    folder.mkdir(parents=True)
    (folder / "labels.json").write_text(json.dumps(["人名", "地名"], ensure_ascii=False), encoding="utf-8")
    items = [{"sentence": "李明去北京", "entities": [{"name": "李明", "type": "人名", "pos": [0, 2]},
                                                  {"name": "x", "type": "NA", "pos": [0, 1]}]}]  # fmt: skip
    (folder / "test.json").write_text(json.dumps(items, ensure_ascii=False), encoding="utf-8")
    [record] = read_b2nerd(folder / "test.json")
    assert (record.id, record.dataset, record.language, record.labels) == ("weibo:0", "weibo", "zh", ("人名", "地名"))
    assert [(s.start, s.end, s.label) for s in record.entities] == [(0, 2, "人名")]
    assert record.answer() == "人名: 李明"
    assert read_b2nerd(tmp_path)[0].id == "weibo:0"  # a whole B2NERD folder


@pytest.mark.parametrize(
    ("entity", "message"),
    [
        ({"start": 20, "end": 40, "label": "x"}, "entity 20-40 (x) lies outside the text, which has 28 characters"),
        (
            {"start": 0, "end": 6, "text": "Barak", "label": "x"},
            'entity 0-6 says "Barak" but the text there is "Barack"',
        ),
        ({"start": "0", "end": 6, "label": "x"}, 'an entity needs integer "start", "end" and a string "label"'),
    ],
)
def test_bad_gold_spans(tmp_path: Path, entity: dict, message: str) -> None:
    path = write_jsonl(tmp_path / "gold.jsonl", [{"id": "a", "text": TEXT_A, "entities": [entity]}])
    result = cli("eval", str(path), str(path))
    assert result.exit_code == 1
    assert result.stderr.startswith(f"Error: {path}, line 1: {message}")


def test_ids_missing_on_either_side_are_listed(tmp_path: Path) -> None:
    gold = write_jsonl(tmp_path / "gold.jsonl", GOLD)
    pred = write_jsonl(tmp_path / "pred.jsonl", [PRED[0], {**PRED[1], "id": "zzz"}])
    result = cli("eval", str(gold), str(pred))
    assert result.exit_code == 1
    assert result.stderr.startswith(
        "Error: Gold and predictions do not match: 1 gold ids have no prediction (b); "
        "1 predictions have no gold record (zzz)."
    )


def test_no_predictions_is_a_usage_error(tmp_path: Path) -> None:
    result = cli("eval", str(write_jsonl(tmp_path / "gold.jsonl", GOLD)))
    assert result.exit_code == 2 and result.stderr.startswith("Error: No predictions given.")


def test_cli_json_shape_and_errors_file(tmp_path: Path) -> None:
    gold = write_jsonl(tmp_path / "gold.jsonl", GOLD)
    pred = write_jsonl(tmp_path / "pred.jsonl", PRED)
    errors = tmp_path / "errors.jsonl"
    result = cli("eval", str(gold), str(pred), "--json", "--errors", str(errors), "--bootstrap", "50")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert set(report) == {"datasets", "averages", "meta"}
    [d] = report["datasets"]
    assert set(d) >= {"name", "language", "b2ner", "strict", "labels"}
    assert set(d["b2ner"]) >= {"precision", "recall", "f1", "tp", "fp", "fn", "f1_ci95"}
    assert d["strict"]["macro_f1"] == pytest.approx(0.7)
    assert d["labels"]["person"]["support"] == 3
    assert report["averages"]["b2ner_f1"] == {"en": pytest.approx(d["b2ner"]["f1"])}
    assert set(report["meta"]["metrics"]) == {"b2ner", "strict"}
    lines = [json.loads(line) for line in errors.read_text(encoding="utf-8").splitlines()]
    assert [e["id"] for e in lines] == ["a", "b"]
    assert lines[1]["b2ner"] == {"false_positives": ["city:bob", "person:carl"], "false_negatives": ["person:bob"]}
    assert lines[0]["strict"]["false_negatives"] == [{"start": 0, "end": 12, "text": "Barack Obama", "label": "person"}]


def test_cli_table_names_both_metrics(tmp_path: Path) -> None:
    gold = write_jsonl(tmp_path / "gold.jsonl", GOLD)
    pred = write_jsonl(tmp_path / "pred.jsonl", PRED)
    result = cli("eval", str(gold), str(pred), "--by-label")
    assert result.exit_code == 0
    rows = [[cell.strip() for cell in line.split("│")[1:-1]] for line in result.stdout.splitlines() if "│" in line]
    # The hand-worked scores of test_scores_by_hand, x100: b2ner P 2/5, R 2/4, F1 4/9; strict P 2/3, R 2/4,
    # F1 4/7, macro (1 + 0.4) / 2; per label: person P 1/2, R 1/3, F1 0.4 (support 3), location all 1 (support 1).
    assert ["demo", "en", "2", "b2ner", "40.00", "50.00", "44.44", ""] in rows
    assert ["", "", "", "strict", "66.67", "50.00", "57.14", "70.00"] in rows
    assert ["average", "en", "", "b2ner", "", "", "44.44", ""] in rows
    assert ["location", "100.00", "100.00", "100.00", "1"] in rows
    assert ["person", "50.00", "33.33", "40.00", "3"] in rows
    assert "demo: strict scores per label" in result.stdout


def test_upstream_predictions_file(tmp_path: Path) -> None:
    def line(dataset: str, language: str, gold: str, prediction: str) -> dict:
        instance = {"id": "0", "sentence": "s", "label": "", "instruction": "", "ground_truth": gold}
        return {"Task": "NER", "Dataset": dataset, "Language": language, "Instance": instance, "Prediction": prediction}

    path = write_jsonl(tmp_path / "predict_eval_predictions.jsonl", [
        line("mit-movie", "en", " movie genre: romance; movie actor: kelsy grammer", "movie genre: Romance"),
        line("mit-movie", "en", "None", "None"),
        line("weibo", "zh", " 人名: 李明", "人名：李明；地名：北京"),
        line("CAIL2022", "zh", " 罪名: 盗窃", "None"),
    ])  # fmt: skip
    result = cli("eval", str(path), "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    by_name = {d["name"]: d for d in report["datasets"]}
    # mit-movie: tp 1 (case folds), fn 1 -> P 1, R 1/2, F1 2/3; weibo: full-width separators -> tp 1, fp 1 -> F1 2/3
    assert by_name["mit-movie"]["b2ner"]["f1"] == pytest.approx(2 / 3)
    assert by_name["weibo"]["b2ner"]["f1"] == pytest.approx(2 / 3)
    assert by_name["CAIL2022"]["b2ner"]["f1"] == 0.0
    assert by_name["weibo"]["strict"] is None  # upstream files carry no offsets
    # CAIL2022 is left out of the zh average, as upstream does
    assert report["averages"]["b2ner_f1"] == {"en": pytest.approx(2 / 3), "zh": pytest.approx(2 / 3)}
    assert report["averages"]["excluded_from_averages"] == ["CAIL2022"]
    refused = cli("eval", str(path), str(path))
    assert refused.exit_code == 2 and "is an upstream predictions file" in refused.stderr


def test_eval_with_model_runs_extraction_first(tiny, tmp_path: Path) -> None:
    from conftest import TAUGHT

    text, labels, _ = TAUGHT[0]  # taught: person Barack Obama, organization Microsoft, location Seattle
    gold = write_jsonl(tmp_path / "gold.jsonl", [{
        "id": "g1", "text": text, "labels": list(labels), "dataset": "taught",
        "entities": [{"start": 0, "end": 12, "label": "person"}, {"start": 21, "end": 30, "label": "organization"},
                     {"start": 34, "end": 41, "label": "location"}],
    }])  # fmt: skip
    out, report = tmp_path / "pred.jsonl", tmp_path / "report.json"
    result = cli("eval", str(gold), "-m", str(tiny.base), "--adapter", str(tiny.adapter), "--predictions-out",
                 str(out), "-o", str(report), "--json", "-q")  # fmt: skip
    assert result.exit_code == 0, result.output
    [d] = json.loads(result.stdout)["datasets"]
    assert d["b2ner"]["f1"] == 1.0 and d["strict"]["f1"] == 1.0
    assert json.loads(out.read_text(encoding="utf-8"))["raw"].startswith(" person: Barack Obama")
    # -o is the report (the same JSON as --json); the predictions run records its manifest like extract's.
    assert json.loads(report.read_text(encoding="utf-8")) == json.loads(result.stdout)
    manifest = json.loads(Path(f"{out}.meta.json").read_text(encoding="utf-8"))
    assert manifest["status"] == "complete" and manifest["records_written"] == 1
    assert manifest["backbone"] == str(tiny.base) and manifest["adapter"] == str(tiny.adapter)


def test_sweep_score_by_hand(tmp_path: Path) -> None:
    # Gold: a has person 0-12 and location 21-26; b has person 0-3 and person 8-11 (4 gold entities).
    # Predictions with scores: a: person 0-12 (0.9), location 21-26 (0.3); b: person 0-3 (0.6), person 8-11 (0.2)
    # plus a wrong location 8-11 (0.5).
    pred = [
        {"id": "a", "text": TEXT_A, "unmatched": [], "entities": [
            {"start": 0, "end": 12, "text": "Barack Obama", "label": "person", "score": 0.9},
            {"start": 21, "end": 26, "text": "Paris", "label": "location", "score": 0.3}]},
        {"id": "b", "text": TEXT_B, "unmatched": [], "entities": [
            {"start": 0, "end": 3, "text": "Ada", "label": "person", "score": 0.6},
            {"start": 8, "end": 11, "text": "Bob", "label": "person", "score": 0.2},
            {"start": 8, "end": 11, "text": "Bob", "label": "location", "score": 0.5}]},
    ]  # fmt: skip
    gold = write_jsonl(tmp_path / "gold.jsonl", GOLD)
    result = cli("eval", str(gold), str(write_jsonl(tmp_path / "pred.jsonl", pred)), "--sweep-score", "0:0.8:0.4",
                 "--json")  # fmt: skip
    assert result.exit_code == 0, result.output
    sweep = json.loads(result.stdout)["score_sweep"]
    assert [(p["threshold"], p["kept"], p["total"]) for p in sweep] == [(0.0, 5, 5), (0.4, 3, 5), (0.8, 1, 5)]
    # t=0: tp 4, fp 1, fn 0 -> P 4/5, R 1, F1 8/9.  t=0.4: kept 0.9, 0.6, 0.5 -> tp 2, fp 1, fn 2 -> P 2/3, R 1/2,
    # F1 4/7.  t=0.8: kept 0.9 -> tp 1, fp 0, fn 3 -> P 1, R 1/4, F1 2/5. The b2ner metric agrees here (no mention
    # is found at two places), so both columns are equal.
    assert [p["strict_f1"] for p in sweep] == pytest.approx([8 / 9, 4 / 7, 2 / 5])
    assert [p["b2ner_f1"] for p in sweep] == pytest.approx([8 / 9, 4 / 7, 2 / 5])


def test_sweep_score_thresholds_are_checked(tmp_path: Path) -> None:
    gold = write_jsonl(tmp_path / "gold.jsonl", GOLD)
    pred = write_jsonl(tmp_path / "pred.jsonl", PRED)
    result = cli("eval", str(gold), str(pred), "--sweep-score", "0,1.5")
    assert result.exit_code == 2
    assert result.stderr.startswith("Error: --sweep-score 0,1.5: thresholds must lie between 0 and 1.")
