"""`b2ner models list --cache`, `models rm` and `models info ADAPTER_DIR` on a fake HF cache and conversions.

The HF cache is laid out as huggingface_hub stores downloads (models--org--name/refs/main +
snapshots/<commit>/), with files of known sizes; conversions carry the stamp ``prepare`` writes.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import Home
from helpers import cli

BACKBONE, ADAPTER, OTHER = "internlm/internlm2_5-7b", "Umean/B2NER-Internlm2.5-7B-LoRA", "org/other"


def _repo(hub: Path, repo_id: str, commit: str, sizes: dict[str, int], kind: str = "models") -> Path:
    repo = hub / f"{kind}--{repo_id.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(commit)
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    for name, size in sizes.items():
        (snapshot / name).write_bytes(b"x" * size)
    return snapshot


def _conversion(home: Home, name: str, source: Path, size: int) -> Path:
    folder = home.b2ner / "converted" / name
    folder.mkdir(parents=True)
    (folder / "model.safetensors").write_bytes(b"y" * size)
    stamp = json.dumps({"source": str(source), "files": {}})
    (folder / "b2ner-source.json").write_text(stamp)
    (folder.parent / f"{name}.lock").write_text("")
    return folder


@pytest.fixture
def caches(home: Home, tmp_path: Path) -> dict[str, Path]:
    backbone = _repo(home.hub, BACKBONE, "a" * 40, {"config.json": 100, "model.safetensors": 900})
    adapter = _repo(home.hub, ADAPTER, "b" * 40, {"adapter_config.json": 50})
    other = _repo(home.hub, OTHER, "c" * 40, {"config.json": 10})
    data = _repo(home.hub, "org/data", "d" * 40, {"train.json": 7}, kind="datasets")
    local = tmp_path / "my-internlm"
    local.mkdir()
    (local / "config.json").write_text("{}")
    converted = _conversion(home, f"internlm--internlm2_5-7b--{'a' * 40}", backbone, 300)
    local_converted = _conversion(home, "local--0123456789abcdef", local, 20)
    return {"backbone": backbone, "adapter": adapter, "other": other, "data": data, "local": local,
            "converted": converted, "local_converted": local_converted}  # fmt: skip


def test_list_cache_shows_every_repo_and_conversion(caches: dict[str, Path]) -> None:
    result = cli("models", "list", "--cache", "--json")
    assert result.exit_code == 0, result.output
    rows = [(r["kind"], r["name"], r["detail"], r["size_bytes"], r["revisions"]) for r in json.loads(result.stdout)]
    # sizes: the files written above (1000, 50, 10, 7 bytes; the conversions also hold their stamp file).
    stamp = len(json.dumps({"source": str(caches["backbone"]), "files": {}}))
    local_stamp = len(json.dumps({"source": str(caches["local"]), "files": {}}))
    assert rows == [
        ("hub", "org/data", "dataset", 7, ["d" * 40]),
        ("hub", ADAPTER, "model", 50, ["b" * 40]),
        ("hub", BACKBONE, "model", 1000, ["a" * 40]),
        ("hub", OTHER, "model", 10, ["c" * 40]),
        ("converted", f"internlm--internlm2_5-7b--{'a' * 40}", str(caches["backbone"]), 300 + stamp, []),
        ("converted", "local--0123456789abcdef", str(caches["local"]), 20 + local_stamp, []),
    ]
    table = cli("models", "list", "--cache")
    assert "org/other" in table.stdout and "last used" in table.stdout


def test_rm_an_alias_removes_its_repos_and_conversion_only(caches: dict[str, Path], home: Home) -> None:
    result = cli("models", "rm", "b2ner-7b", "--yes")
    assert result.exit_code == 0, result.output
    assert BACKBONE in result.stdout and ADAPTER in result.stdout  # the listing comes first
    assert "Removed 3 items" in result.stderr, result.output
    assert not (home.hub / "models--internlm--internlm2_5-7b").exists()
    assert not (home.hub / "models--Umean--B2NER-Internlm2.5-7B-LoRA").exists()
    assert not caches["converted"].exists()
    assert not caches["converted"].with_name(caches["converted"].name + ".lock").exists()
    for kept in ("other", "data", "local", "local_converted"):
        assert caches[kept].exists(), kept
    left = [r["name"] for r in json.loads(cli("models", "list", "--cache", "--json").stdout)]
    assert left == ["org/data", OTHER, "local--0123456789abcdef"]


def test_rm_asks_first_and_dry_run_removes_nothing(caches: dict[str, Path]) -> None:
    declined = cli("models", "rm", OTHER, input="n\n")
    assert declined.exit_code == 0
    assert "Remove 1 item, " in declined.stderr and "Nothing removed." in declined.stderr
    listed = cli("models", "rm", OTHER, "--dry-run")
    assert listed.exit_code == 0 and OTHER in listed.stdout and "Would remove 1 item" in listed.stderr
    assert caches["other"].exists()
    accepted = cli("models", "rm", OTHER, input="y\n")
    assert accepted.exit_code == 0 and not caches["other"].exists()
    assert caches["backbone"].exists() and caches["converted"].exists()


def test_rm_a_local_directory_removes_its_conversion_but_never_the_directory(caches: dict[str, Path]) -> None:
    result = cli("models", "rm", str(caches["local"]), "--yes")
    assert result.exit_code == 0, result.output
    assert not caches["local_converted"].exists()
    assert (caches["local"] / "config.json").is_file()
    assert caches["converted"].exists() and caches["backbone"].exists()


def test_rm_a_path_in_the_cache(caches: dict[str, Path]) -> None:
    result = cli("models", "rm", str(caches["converted"]), "--yes")
    assert result.exit_code == 0, result.output
    assert not caches["converted"].exists() and caches["backbone"].exists()


def test_rm_something_not_cached(caches: dict[str, Path]) -> None:
    result = cli("models", "rm", "b2ner-20b", "--yes")
    assert result.exit_code == 2
    assert result.stderr.startswith("Error: Nothing in the caches belongs to `b2ner-20b`.")


def test_models_info_for_a_finetuned_adapter(tmp_path: Path) -> None:
    adapter = tmp_path / "my-adapter"
    adapter.mkdir()
    config = {"peft_type": "LORA", "r": 16, "lora_alpha": 32, "lora_dropout": 0.05,
              "target_modules": ["q_proj", "v_proj"], "base_model_name_or_path": "/somewhere/base"}  # fmt: skip
    (adapter / "adapter_config.json").write_text(json.dumps(config))
    meta = {"b2ner_version": "0.3.0", "backbone": "org/base", "backbone_revision": "e" * 40, "labels": ["drug"],
            "epoch": 2, "selected_by": "b2ner", "dev_metrics": {"b2ner": {"f1": 0.5}, "strict": {"f1": 0.25}},
            "train": "train.jsonl", "dev": "dev.jsonl"}  # fmt: skip
    (adapter / "b2ner_adapter.json").write_text(json.dumps(meta))
    result = cli("models", "info", str(adapter), "--json")
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    size = len(json.dumps(config)) + len(json.dumps(meta))
    assert info == {
        "kind": "adapter", "path": str(adapter), "backbone": "org/base", "backbone_revision": "e" * 40,
        "labels": ["drug"], "epoch": 2, "selected_by": "b2ner", "dev_b2ner_f1": 0.5, "dev_strict_f1": 0.25,
        "train": "train.jsonl", "dev": "dev.jsonl", "created_with": "b2ner 0.3.0", "peft_type": "LORA",
        "lora_r": 16, "lora_alpha": 32, "lora_dropout": 0.05, "target_modules": ["q_proj", "v_proj"],
        "size_bytes": size,
    }  # fmt: skip
    (adapter / "b2ner_adapter.json").unlink()  # a plain PEFT adapter: the backbone from adapter_config.json
    plain = json.loads(cli("models", "info", str(adapter), "--json").stdout)
    assert (plain["backbone"], plain["labels"], plain["created_with"]) == ("/somewhere/base", None, None)
    table = cli("models", "info", str(adapter))
    assert table.exit_code == 0 and "kind" in table.stdout and "adapter" in table.stdout
