"""Strings the user controls (file names, aliases, queries, dataset and label names) are printed as they are,
never read as rich markup: `[/]` used to crash, `[final]` used to vanish."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import Home
from helpers import cli, write_jsonl


def test_file_names_with_brackets_in_errors(tmp_path: Path) -> None:
    for name in ("missing[/].txt", "notes [final].txt"):
        result = cli("extract", str(tmp_path / name), "-l", "person", "--dry-run")
        assert result.exit_code == 1
        assert result.stderr.splitlines()[0] == f"Error: Input file {tmp_path / name} does not exist."


def test_alias_with_markup_in_models_list(home: Home, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")  # no wrapping: the cells are compared whole
    home.b2ner.mkdir(parents=True, exist_ok=True)
    aliases = {"odd[/]": {"backbone": "org/model", "description": "[bold]not bold[/bold]"}}
    (home.b2ner / "models.json").write_text(json.dumps(aliases), encoding="utf-8")
    listed = cli("models", "list")
    assert listed.exit_code == 0, listed.output
    assert "odd[/]" in listed.stdout and "[bold]not bold[/bold]" in listed.stdout


def test_taxonomy_show_of_an_unknown_name_with_markup() -> None:
    result = cli("taxonomy", "show", "[/]")
    assert result.exit_code == 2
    assert result.stderr.startswith('Error: "[/]" is not a taxonomy entry.')


def test_dataset_and_label_names_with_markup_in_the_eval_table(tmp_path: Path) -> None:
    text = "Ada met Bob ."
    gold = write_jsonl(tmp_path / "gold.jsonl", [{
        "id": "a", "text": text, "dataset": "set[/]", "labels": ["[b]person"],
        "entities": [{"start": 0, "end": 3, "label": "[b]person"}],
    }])  # fmt: skip
    pred = write_jsonl(tmp_path / "pred.jsonl", [{
        "id": "a", "text": text, "unmatched": [],
        "entities": [{"start": 0, "end": 3, "text": "Ada", "label": "[b]person"}],
    }])  # fmt: skip
    result = cli("eval", str(gold), str(pred), "--by-label")
    assert result.exit_code == 0, result.output
    rows = [[cell.strip() for cell in line.split("│")[1:-1]] for line in result.stdout.splitlines() if "│" in line]
    assert ["set[/]", "en", "1", "b2ner", "100.00", "100.00", "100.00", ""] in rows
    assert ["[b]person", "100.00", "100.00", "100.00", "1"] in rows
    assert "set[/]: strict scores per label" in result.stdout
