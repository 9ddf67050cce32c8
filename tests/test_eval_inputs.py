"""`b2ner eval` inputs: predictions must be made on the gold texts, CoNLL predictions, raw answers or entities."""

from __future__ import annotations

import json
from pathlib import Path

from helpers import cli, write_jsonl


def gold_lines(n: int) -> list[dict[str, object]]:
    return [{"id": f"s{i}", "text": f"Ada met Bob {i} .", "dataset": "demo", "language": "en",
             "entities": [{"start": 0, "end": 3, "label": "person"}]} for i in range(n)]  # fmt: skip


def test_predictions_on_other_texts_are_refused_listing_five_ids(tmp_path: Path) -> None:
    gold = write_jsonl(tmp_path / "gold.jsonl", gold_lines(8))
    # ids match, but s1..s7 were made on other texts: same ids, so only the text check catches them
    predicted = [{"id": "s0", "text": "Ada met Bob 0 .", "entities": [{"start": 0, "end": 3, "label": "person"}]}]
    predicted += [{"id": f"s{i}", "text": f"Ada met Bob {i}  .", "entities": [{"start": 0, "end": 3, "label": "person"}]}
                  for i in range(1, 8)]  # fmt: skip
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
