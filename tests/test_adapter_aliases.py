"""Aliases whose adapter comes from `b2ner finetune` bring that adapter's labels (extract, the API, run checks)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from conftest import EN_LABELS, Home
from helpers import cli


def _alias(home: Home, name: str, backbone: str | Path, adapter: Path) -> None:
    home.b2ner.mkdir(parents=True, exist_ok=True)
    (home.b2ner / "models.json").write_text(json.dumps({name: {"backbone": str(backbone), "adapter": str(adapter)}}))


def _finetuned(folder: Path, labels: list[str], source: Path | None = None) -> Path:
    """An adapter directory as `b2ner finetune` leaves it (the PEFT files, plus b2ner_adapter.json)."""
    if source is not None:
        shutil.copytree(source, folder)
    else:
        folder.mkdir(parents=True)
        (folder / "adapter_config.json").write_text(json.dumps({"r": 8, "lora_alpha": 16}))
    (folder / "b2ner_adapter.json").write_text(json.dumps({"backbone": "org/base", "labels": labels}))
    return folder


def test_an_alias_brings_its_finetuned_adapters_labels(home: Home, tmp_path: Path) -> None:
    _alias(home, "drugs", tmp_path / "backbone", _finetuned(tmp_path / "adapter", ["drug", "dose"]))
    source = tmp_path / "a.txt"
    source.write_text("Take aspirin 5 mg.\n", encoding="utf-8")
    result = cli("extract", str(source), "-m", "drugs", "--dry-run")
    assert result.exit_code == 0, result.output
    prompt = json.loads(result.stdout)["prompt"]
    assert "\nLabel Set: drug, dose \n" in prompt
    assert result.stderr == ""  # no advice about raw tags: the adapter was trained on these very labels


def test_labels_given_win_over_the_adapters(home: Home, tmp_path: Path) -> None:
    _alias(home, "drugs", tmp_path / "backbone", _finetuned(tmp_path / "adapter", ["drug", "dose"]))
    source = tmp_path / "a.txt"
    source.write_text("Take aspirin 5 mg.\n", encoding="utf-8")
    result = cli("extract", str(source), "-m", "drugs", "-l", "medication", "--dry-run")
    assert "\nLabel Set: medication \n" in json.loads(result.stdout)["prompt"]


def test_no_adapter_or_a_plain_adapter_still_needs_labels(home: Home, tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "adapter_config.json").write_text("{}")
    _alias(home, "plain", tmp_path / "backbone", plain)
    source = tmp_path / "a.txt"
    source.write_text("Take aspirin 5 mg.\n", encoding="utf-8")
    result = cli("extract", str(source), "-m", "plain", "--dry-run")
    assert result.exit_code == 2
    assert result.stderr.startswith("Error: No labels given.")
    _alias(home, "drugs", tmp_path / "backbone", _finetuned(tmp_path / "adapter", ["drug"]))
    refused = cli("extract", str(source), "-m", "drugs", "--no-adapter", "--dry-run")
    assert refused.exit_code == 2 and refused.stderr.startswith("Error: No labels given.")


def test_run_check_accepts_an_alias_with_labels(home: Home, tmp_path: Path) -> None:
    from b2ner_cli.models.spec import ModelSpec
    from b2ner_cli.runs.run import RunSpec, check
    from b2ner_cli.runs.settings import Task

    _alias(home, "drugs", tmp_path / "backbone", _finetuned(tmp_path / "adapter", ["drug"]))
    source = tmp_path / "a.txt"
    source.write_text("x\n", encoding="utf-8")
    check(RunSpec(model=ModelSpec("drugs"), task=Task.of(None), inputs=(str(source),)))  # does not raise


def test_the_python_api_uses_the_aliases_labels(tiny, home: Home, tmp_path: Path) -> None:
    from b2ner_cli import Extractor

    _alias(home, "taught", tiny.base, _finetuned(tmp_path / "adapter", list(EN_LABELS), tiny.adapter))
    ner = Extractor.load("taught", device="cpu", quiet=True)
    [record] = ner.extract(["Barack Obama visited Microsoft in Seattle ."])
    found = [(e.label, e.text, e.start, e.end) for e in record.entities]
    # "Barack Obama" is 0-12, "Microsoft" 21-30, "Seattle" 34-41.
    assert found == [("person", "Barack Obama", 0, 12), ("organization", "Microsoft", 21, 30),
                     ("location", "Seattle", 34, 41)]  # fmt: skip
