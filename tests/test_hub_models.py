"""Models from the (fake, offline) Hub cache: aliases, `b2ner models`, and `extract --model b2ner-7b`.

The tiny InternLM2 fixture and its adapter are laid out in a temporary HF cache exactly as huggingface_hub
stores downloads (models--org--name/refs/main + snapshots/<commit>/), under the registry's real repo ids, so
the real resolve -> snapshot_download -> convert -> load path runs end to end, minus the network.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import INTERNLM2_FIXTURE, Home
from helpers import cli

pytestmark = pytest.mark.fixture

BACKBONE_REPO, ADAPTER_REPO = "internlm/internlm2_5-7b", "Umean/B2NER-Internlm2.5-7B-LoRA"
BACKBONE_COMMIT, ADAPTER_COMMIT = "a" * 40, "b" * 40


def _cache_repo(hub: Path, repo_id: str, commit: str, files: Path) -> Path:
    repo = hub / f"models--{repo_id.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(commit)
    snapshot = repo / "snapshots" / commit
    shutil.copytree(files, snapshot, dirs_exist_ok=True)
    return snapshot


@pytest.fixture
def fake_hub(home: Home) -> tuple[Path, Path]:
    """The fixture in this test's own HF cache, under the registry's repo ids."""
    if not INTERNLM2_FIXTURE.is_dir():
        pytest.skip("../shared/fixtures/internlm2-tiny is absent")
    backbone = _cache_repo(home.hub, BACKBONE_REPO, BACKBONE_COMMIT, INTERNLM2_FIXTURE / "backbone")
    adapter = _cache_repo(home.hub, ADAPTER_REPO, ADAPTER_COMMIT, INTERNLM2_FIXTURE / "adapter")
    return backbone, adapter



def expected_lora_row() -> dict:
    rows = json.loads((INTERNLM2_FIXTURE / "expected.json").read_text(encoding="utf-8"))["lora"]["rows"]
    return rows[0]


def test_extract_with_the_b2ner_7b_alias_offline(fake_hub, tmp_path: Path) -> None:
    from b2ner_cli.models.internlm2 import load_internlm2_tokenizer

    row = expected_lora_row()
    # The fixture's first prompt is the English zero-shot prompt for this text and these labels.
    text = "Barack Obama visited Microsoft in Seattle ."
    assert row["prompt"].endswith(f"Text: {text} \nAnswer:")
    source = tmp_path / "in.txt"
    source.write_text(text + "\n", encoding="utf-8")
    out = tmp_path / "out.jsonl"
    result = cli(
        "extract",
        str(source),
        "-m",
        "b2ner-7b",
        "--offline",
        "-l",
        "person,organization,location",
        "--keep-raw",
        "--max-new-tokens",
        "12",
        "-o",
        str(out),
    )
    assert result.exit_code == 0, result.output
    assert "Converting b2ner-7b from InternLM2 to the Llama layout" in result.stderr
    record = json.loads(out.read_text(encoding="utf-8"))
    # The reference stack's 12 greedy tokens (backbone + adapter), decoded: the same answer, token for token.
    tokenizer = load_internlm2_tokenizer(fake_hub[0])
    assert record["raw"] == tokenizer.decode(row["greedy_new_ids"], skip_special_tokens=True)
    meta = json.loads(Path(f"{out}.meta.json").read_text(encoding="utf-8"))
    backbone = (meta["backbone"], meta["backbone_repo"], meta["backbone_revision"])
    assert backbone == ("b2ner-7b", BACKBONE_REPO, BACKBONE_COMMIT)
    assert (meta["adapter_repo"], meta["adapter_revision"]) == (ADAPTER_REPO, ADAPTER_COMMIT)
    assert meta["adapter_merged"] is False and meta["dtype"] == "float32" and meta["quantization"] is None

    again = cli(
        "extract",
        str(source),
        "-m",
        "b2ner-7b",
        "--offline",
        "-l",
        "person,organization,location",
        "--keep-raw",
        "--max-new-tokens",
        "12",
    )
    assert "Converting" not in again.stderr  # converted once, reused
    assert json.loads(again.stdout)["raw"] == record["raw"]


def test_models_list_shows_cached_aliases(fake_hub) -> None:
    result = cli("models", "list", "--json")
    assert result.exit_code == 0
    listed = {m["name"]: m for m in json.loads(result.stdout)}
    assert listed["b2ner-7b"]["backbone_cache"]["cached"] is True
    assert listed["b2ner-7b"]["backbone_cache"]["revision"] == BACKBONE_COMMIT
    assert listed["b2ner-7b"]["adapter_cache"]["cached"] is True
    assert listed["b2ner-20b"]["backbone_cache"]["cached"] is False


def test_models_info_counts_parameters(fake_hub) -> None:
    result = cli("models", "info", "b2ner-7b", "--json")
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    assert info["architecture"] == "internlm2"
    # embeddings + untied output: 2 * 92544 * 64 = 11,845,632; per layer: wqkv (8 + 2*2) heads * 8 * 64 = 6,144,
    # wo 4,096, w1/w2/w3 3 * 128 * 64 = 24,576, two norms 128 -> 34,944 * 2 layers = 69,888; final norm 64.
    assert info["parameters"] == 11_845_632 + 69_888 + 64
    assert info["adapter_config"]["target_modules"] == ["wqkv"]


def test_models_download_prints_cached_paths_offline(fake_hub) -> None:
    result = cli("models", "download", "b2ner-7b", "-q")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [str(fake_hub[0]), str(fake_hub[1])]


def test_user_alias_from_models_json(fake_hub, home: Home, tmp_path: Path) -> None:
    home.b2ner.mkdir(parents=True, exist_ok=True)
    models = home.b2ner / "models.json"
    models.write_text(json.dumps({"mine": {"backbone": BACKBONE_REPO, "description": "no adapter"}}))
    listed = {m["name"]: m for m in json.loads(cli("models", "list", "--json").stdout)}
    assert listed["mine"]["backbone"] == BACKBONE_REPO and listed["mine"]["adapter"] is None
    assert listed["mine"]["builtin"] is False
    source = tmp_path / "in.txt"
    source.write_text("hello\n", encoding="utf-8")
    result = cli("extract", str(source), "-m", "mine", "-l", "person", "--max-new-tokens", "2", "-q")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["id"] == f"{source}:1"


def test_bad_models_json_is_reported(home: Home) -> None:
    home.b2ner.mkdir(parents=True, exist_ok=True)
    (home.b2ner / "models.json").write_text('{"b2ner-7b": {"backbone": "x/y"}}')
    result = cli("models", "list")
    assert result.exit_code == 2
    assert result.stderr.startswith(f"Error: {home.b2ner / 'models.json'}: alias `b2ner-7b` is built in")


def test_unknown_model_reference(tmp_path: Path) -> None:
    source = tmp_path / "in.txt"
    source.write_text("hello\n", encoding="utf-8")
    result = cli("extract", str(source), "-m", "no such model", "-l", "person")
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: Model `no such model` is not a directory, a model alias or a Hub repo id.")
