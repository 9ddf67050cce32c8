"""`b2ner eval` inputs: predictions must be made on the gold texts, CoNLL predictions, raw answers or entities."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import cli, write_jsonl

from b2ner_cli.evaluation.b2ner_metric import language_averages, overall_average
from b2ner_cli.evaluation.readers import read_gold_jsonl


def gold_lines(n: int) -> list[dict[str, object]]:
    return [{"id": f"s{i}", "text": f"Ada met Bob {i} .", "dataset": "demo", "language": "en",
             "entities": [{"start": 0, "end": 3, "label": "person"}]} for i in range(n)]  # fmt: skip


def test_predictions_on_other_texts_are_refused_listing_five_ids(tmp_path: Path) -> None:
    gold = write_jsonl(tmp_path / "gold.jsonl", gold_lines(8))
    # ids match, but s1..s7 were made on other texts: same ids, so only the text check catches them
    predicted = [{"id": "s0", "text": "Ada met Bob 0 .", "entities": [{"start": 0, "end": 3, "label": "person"}]}]
    ada = [{"start": 0, "end": 3, "label": "person"}]
    predicted += [{"id": f"s{i}", "text": f"Ada met Bob {i}  .", "entities": ada} for i in range(1, 8)]
    result = cli("eval", str(gold), str(write_jsonl(tmp_path / "pred.jsonl", predicted)))
    assert result.exit_code == 1 and result.stdout == ""
    # texts are compared exactly: a doubled space is a different text
    assert result.stderr.startswith(
        "Error: 7 predictions were made on a text that is not the gold text (s1, s2, s3, s4, s5 ...)."
    )


def test_predictions_on_the_gold_texts_pass(tmp_path: Path) -> None:
    gold = write_jsonl(tmp_path / "gold.jsonl", gold_lines(2))
    predicted = [{"id": f"s{i}", "text": f"Ada met Bob {i} .", "entities": []} for i in range(2)]
    result = cli("eval", str(gold), str(write_jsonl(tmp_path / "pred.jsonl", predicted)), "--json")
    assert result.exit_code == 0, result.output
    [d] = json.loads(result.stdout)["datasets"]
    assert (d["b2ner"]["tp"], d["b2ner"]["fn"]) == (0, 2)


def upstream_line(dataset: str, language: str | None, gold: str, prediction: str) -> dict[str, object]:
    instance = {"id": "0", "sentence": "s", "label": "", "instruction": "", "ground_truth": gold}
    line: dict[str, object] = {"Task": "NER", "Dataset": dataset, "Instance": instance, "Prediction": prediction}
    if language is not None:
        line["Language"] = language
    return line


def test_upstream_grouping_by_dataset_and_language_with_overall_average(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "predict_eval_predictions.jsonl", [
        upstream_line("mit-movie", "en", " person: a; person: b", "person: a"),  # tp 1, fn 1 -> F1 2/3
        upstream_line("shared", "en", " person: x", "person: x"),  # F1 1
        upstream_line("shared", "zh", " 人名: 李", "None"),  # the same name in zh: its own row, fn 1 -> F1 0
        upstream_line("weibo", "zh", " 人名: 李明", "人名：李明；地名：北京"),  # tp 1, fp 1 -> P 1/2, R 1, F1 2/3
        upstream_line("CAIL2022", "zh", " 罪名: 盗窃", "罪名: 盗窃"),  # F1 1, but left out of the averages
        upstream_line("math-junior", None, " 数: 1", "None"),  # no Language: its own group, excluded dataset
    ])  # fmt: skip
    result = cli("eval", str(path), "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    rows = {(d["name"], d["language"]): d["b2ner"]["f1"] for d in report["datasets"]}
    assert rows == {("mit-movie", "en"): pytest.approx(2 / 3), ("shared", "en"): 1.0, ("shared", "zh"): 0.0,
                    ("weibo", "zh"): pytest.approx(2 / 3), ("CAIL2022", "zh"): 1.0,
                    ("math-junior", "unknown"): 0.0}  # fmt: skip
    # en: (2/3 + 1) / 2 = 5/6; zh: (0 + 2/3) / 2 = 1/3 (CAIL2022 out); unknown: its only dataset is excluded -> 0
    averages = report["averages"]
    assert averages["b2ner_f1"] == {"en": pytest.approx(5 / 6), "zh": pytest.approx(1 / 3), "unknown": 0.0}
    # overall: the mean of the four included rows (2/3 + 1 + 0 + 2/3) / 4 = 7/12, not the mean of the language
    # averages (7/18); upstream files carry no offsets, so no strict overall
    assert averages["overall"] == {"b2ner_f1": pytest.approx(7 / 12), "strict_f1": None}
    assert averages["excluded_from_averages"] == ["CAIL2022", "math-junior"]
    table = cli("eval", str(path))
    rows_shown = [[c.strip() for c in line.split("│")[1:-1]] for line in table.stdout.splitlines() if "│" in line]
    assert ["average", "all", "", "b2ner", "", "", "58.33", ""] in rows_shown
    assert ["average", "unknown", "", "b2ner", "", "", "0.00", ""] in rows_shown


def test_gold_records_without_a_language_take_their_datasets(tmp_path: Path) -> None:
    gold = write_jsonl(tmp_path / "gold.jsonl", [
        {"id": "1", "text": "李明去北京", "dataset": "d", "labels": ["人名"],
         "entities": [{"start": 0, "end": 2, "label": "人名"}]},
        {"id": "2", "text": "hello", "dataset": "d"},  # no labels, no entities: the dataset's language (zh)
        {"id": "3", "text": "Ada", "dataset": "d", "language": "en", "labels": ["人名"]},  # given: its own row
    ])  # fmt: skip
    records = read_gold_jsonl(gold)
    assert [r.language for r in records] == ["zh", "zh", "en"]
    predicted = write_jsonl(tmp_path / "pred.jsonl", [{"id": r.id, "text": r.text, "entities": []} for r in records])
    report = json.loads(cli("eval", str(gold), str(predicted), "--json").stdout)
    assert [(d["name"], d["language"], d["sentences"]) for d in report["datasets"]] == [("d", "zh", 2), ("d", "en", 1)]
    # strict overall: both rows F1 0 -> 0; b2ner: zh row misses 人名:李明 (F1 0), en row has no gold and no
    # prediction (F1 0)
    assert report["averages"]["overall"] == {"b2ner_f1": 0.0, "strict_f1": 0.0}


def test_language_averages_by_hand() -> None:
    rows = [("a", "en", 0.5), ("b", "en", 1.0), ("CAIL2022", "zh", 0.9), ("a", "zh", 0.25)]
    # en (0.5 + 1) / 2; zh: CAIL2022 out -> 0.25; overall (0.5 + 1 + 0.25) / 3
    assert language_averages(rows) == {"en": 0.75, "zh": 0.25}
    assert overall_average(rows) == pytest.approx(1.75 / 3)
    assert language_averages([("CAIL2022", "zh", 0.9)]) == {"zh": 0.0} and overall_average([]) == 0.0


@pytest.mark.parametrize(
    ("raws", "source", "counts", "note"),
    [
        ([" person: Ada", " person: Ada"], "raw answers", (2, 0), None),
        ([None, None], "grounded entities", (0, 2), "b2ner: 2 of 2 predictions carry no raw answer"),
        ([" person: Ada", None], "mixed", (1, 1), "b2ner: 1 of 2 predictions carry no raw answer"),
    ],
)
def test_report_says_whether_b2ner_scored_raw_answers(
    tmp_path: Path, raws: list[str | None], source: str, counts: tuple[int, int], note: str | None
) -> None:
    gold = write_jsonl(tmp_path / "gold.jsonl", gold_lines(2))
    predicted = []
    for i, raw in enumerate(raws):
        line: dict[str, object] = {"id": f"s{i}", "text": f"Ada met Bob {i} .",
                                   "entities": [{"start": 0, "end": 3, "label": "person"}]}  # fmt: skip
        if raw is not None:
            line["raw"] = raw
        predicted.append(line)
    pred = write_jsonl(tmp_path / "pred.jsonl", predicted)
    meta = json.loads(cli("eval", str(gold), str(pred), "--json").stdout)["meta"]
    assert meta["b2ner_from"] == source
    assert meta["b2ner_from_counts"] == {"raw answers": counts[0], "grounded entities": counts[1]}
    lines = cli("eval", str(gold), str(pred)).stdout.splitlines()
    notes = [line for line in lines if line.startswith("b2ner: ")]
    assert [n.split(" (")[0] for n in notes] == ([note] if note else [])


def test_upstream_files_are_raw_answers(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "predict_eval_predictions.jsonl", [upstream_line("d", "en", " a: b", "a: b")])
    assert json.loads(cli("eval", str(path), "--json").stdout)["meta"]["b2ner_from"] == "raw answers"


GOLD_CONLL = (
    "Ada B-person\nmet O\nBob B-person\nin O\nParis B-location\n. O\n\n"
    "李 B-person\n明 I-person\n在 O\nParis B-location\n"
)


def test_extract_on_conll_then_eval_matches_ids_and_texts(tmp_path: Path, fake_model: str) -> None:
    gold = tmp_path / "gold.conll"
    gold.write_text(GOLD_CONLL, encoding="utf-8")
    pred = tmp_path / "pred.jsonl"
    extracted = cli("extract", str(gold), "-m", fake_model, "-l", "person,location", "-o", str(pred), "-q")
    assert extracted.exit_code == 0, extracted.output
    lines = [json.loads(line) for line in pred.read_text(encoding="utf-8").splitlines()]
    assert [(r["id"], r["text"]) for r in lines] == [
        (f"{gold}:1", "Ada met Bob in Paris ."),
        (f"{gold}:2", "李明在Paris"),
    ]
    report = json.loads(cli("eval", str(gold), str(pred), "--json").stdout)
    [d] = report["datasets"]
    # the fake finds Ada (person) and Paris (location) twice; gold also has Bob and 李明: tp 3, fp 0, fn 2
    # -> P 1, R 3/5, F1 2 * 3/5 / (8/5) = 3/4, under both metrics (no raw answers: from the entities)
    assert (d["strict"]["tp"], d["strict"]["fp"], d["strict"]["fn"]) == (3, 0, 2)
    assert d["b2ner"]["f1"] == pytest.approx(0.75) and d["strict"]["f1"] == pytest.approx(0.75)
    assert report["meta"]["b2ner_from"] == "grounded entities"


def test_conll_predictions_are_matched_by_order_and_checked_by_text(tmp_path: Path) -> None:
    gold = tmp_path / "gold.conll"
    gold.write_text(GOLD_CONLL, encoding="utf-8")
    pred = tmp_path / "pred.bio"  # Bob missed, 明 alone tagged in sentence 2
    missed = GOLD_CONLL.replace("Bob B-person", "Bob O")
    pred.write_text(missed.replace("李 B-person\n明 I-person", "李 O\n明 B-person"), encoding="utf-8")
    report = json.loads(cli("eval", str(gold), str(pred), "--json").stdout)
    [d] = report["datasets"]
    # gold: Ada, Bob, Paris | 李明, Paris; predicted: Ada, Paris | 明, Paris -> tp 3, fp 1 (明), fn 2 (Bob, 李明)
    assert (d["strict"]["tp"], d["strict"]["fp"], d["strict"]["fn"]) == (3, 1, 2)
    assert d["b2ner"]["f1"] == pytest.approx(2 * (3 / 4) * (3 / 5) / (3 / 4 + 3 / 5))
    other = tmp_path / "other.conll"
    other.write_text(GOLD_CONLL.replace("Bob", "Rob"), encoding="utf-8")
    refused = cli("eval", str(gold), str(other))
    assert refused.exit_code == 1 and "1 predictions were made on a text that is not the gold text" in refused.stderr
    short = tmp_path / "short.conll"
    short.write_text("Ada B-person\n", encoding="utf-8")
    refused = cli("eval", str(gold), str(short))
    assert refused.exit_code == 1 and "holds 1 sentences but the gold data 2 records" in refused.stderr


def test_eval_model_map_labels_prompts_canonical_names_and_scores_gold_tags(tmp_path: Path, fake_model: str) -> None:
    gold = tmp_path / "gold.bio"
    gold.write_text("Ada B-PER\nvisited O\nParis B-LOC\n", encoding="utf-8")
    out = tmp_path / "pred.jsonl"
    plain = cli("eval", str(gold), "-m", fake_model, "--predictions-out", str(out), "--json", "-q")
    # prompted with PER and LOC, the fake (which knows person and location) finds nothing: F1 0
    assert json.loads(plain.stdout)["datasets"][0]["strict"]["f1"] == 0.0
    out.unlink()
    Path(f"{out}.meta.json").unlink()
    mapped = cli("eval", str(gold), "-m", fake_model, "--map-labels", "--predictions-out", str(out), "--json")
    assert mapped.exit_code == 0, mapped.output
    assert "prompting with canonical names (PER -> person, LOC -> location)" in mapped.stderr
    [d] = json.loads(mapped.stdout)["datasets"]
    assert d["strict"]["f1"] == 1.0 and d["b2ner"]["f1"] == 1.0  # Ada 0-3 PER, Paris 12-17 LOC
    [line] = [json.loads(x) for x in out.read_text(encoding="utf-8").splitlines()]
    assert [e["label"] for e in line["entities"]] == ["PER", "LOC"]
    refused = cli("eval", str(gold), str(out), "--map-labels")
    assert refused.exit_code == 2 and "--map-labels applies when eval runs a model" in refused.stderr


def test_relabel_answer_maps_labels_back() -> None:
    from b2ner_cli.evaluation.predict import relabel_answer

    back = {"person": "PER", "location": "LOC"}
    assert relabel_answer(" Person: Ada; location: Paris; city: Rome", back) == " PER: Ada; LOC: Paris; city: Rome"
    assert relabel_answer(" None", back) == " None" and relabel_answer(None, back) is None
