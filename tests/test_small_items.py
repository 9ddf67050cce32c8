"""Small fixes: `taxonomy suggest` drops the outside tag, counts in messages agree in number, `bench` measures the
memory of each batch size on its own."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence

from helpers import cli

from b2ner_cli.engine.base import Generation


def test_suggest_drops_the_outside_tag() -> None:
    result = cli("taxonomy", "suggest", "B-PER,O,I-LOC,o")
    assert result.exit_code == 0, result.output
    assert result.stdout == "person,location\n"
    assert "Note: dropped O, o: the outside tag marks no entity." in result.stderr
    data = json.loads(cli("taxonomy", "suggest", "PER,O", "--json").stdout)
    assert (data["labels"], data["dropped"]) == ("person", ["O"])
    assert [s["raw"] for s in data["suggestions"]] == ["PER"]


def test_suggest_with_only_the_outside_tag() -> None:
    result = cli("taxonomy", "suggest", "O")
    assert result.exit_code == 2
    assert "Error: No labels given." in result.stderr


def test_count_agrees_in_number() -> None:
    from b2ner_cli.wording import count

    assert [count(0, "item"), count(1, "item"), count(2, "entity", "entities")] == ["0 items", "1 item", "2 entities"]


class _Hungry:
    """A generator that holds ``extra`` bytes while it answers a batch of one prompt (and nothing for larger ones)."""

    max_new_tokens = 8

    def __init__(self, extra: int) -> None:
        self.extra = extra

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def encode(self, instruction: str) -> list[int]:
        return [1] + [2] * len(instruction.split())

    def generate(self, batch: Sequence[list[int]]) -> list[Generation]:
        if len(batch) == 1:
            held = bytearray(self.extra)  # zero-filled: every page is touched
            time.sleep(0.05)  # long enough for the sampler to see it
            del held
        return [Generation(" None", 1, True) for _ in batch]

    def token_texts(self, tokens: Sequence[int]) -> list[str]:
        return ["x" for _ in tokens]

    def suggest_batch_tokens(self) -> int | None:
        return None

    def describe(self) -> dict[str, object]:
        return {"model": "hungry"}


def test_bench_measures_each_batch_size_on_its_own() -> None:
    from b2ner_cli.benchmark import run, synthetic_corpus
    from b2ner_cli.prompts import LabelSet

    extra = 256 * 2**20
    report = run(_Hungry(extra), synthetic_corpus(2), LabelSet(("person",)), [1, 2])
    one, two = report["runs"]
    assert one["rss_growth_bytes"] >= extra * 0.9  # batches of one held 256 MiB
    assert two["rss_growth_bytes"] < extra * 0.1  # batches of two held nothing...
    assert two["peak_rss_bytes"] < one["peak_rss_bytes"] - extra * 0.9  # ...and do not inherit the earlier peak


def test_ids_are_relative_to_the_working_directory(tmp_path) -> None:
    from pathlib import Path

    Path("a.txt").write_text("Ada met Bob .\n\nIt rained .\n", encoding="utf-8")
    Path("sub").mkdir()
    Path("sub/b.jsonl").write_text('{"text": "Ada met Bob ."}\n', encoding="utf-8")
    outside = tmp_path / "c.txt"
    outside.write_text("Ada met Bob .\n", encoding="utf-8")
    ids = {}
    for typed in ("a.txt", "./a.txt", str(Path.cwd() / "a.txt"), "sub/../a.txt", "./sub/b.jsonl", str(outside)):
        result = cli("extract", typed, "-l", "person", "--dry-run")
        assert result.exit_code == 0, result.output
        ids[typed] = [json.loads(line)["id"] for line in result.stdout.splitlines()]
    assert ids == {
        "a.txt": ["a.txt:1", "a.txt:3"],  # line numbers count the blank line
        "./a.txt": ["a.txt:1", "a.txt:3"],
        str(Path.cwd() / "a.txt"): ["a.txt:1", "a.txt:3"],
        "sub/../a.txt": ["a.txt:1", "a.txt:3"],
        "./sub/b.jsonl": ["sub/b.jsonl:1"],
        str(outside): [f"{outside}:1"],  # not under the working directory: as typed
    }
