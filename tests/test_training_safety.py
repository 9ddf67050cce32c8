"""finetune's output and checkpoint safety: --overwrite deletes nothing early, checkpoints hold no pickle."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from helpers import cli as run
from helpers import write_jsonl
from test_finetune import learnable, synthetic  # noqa: F401  (learnable is a fixture)

from b2ner_cli.errors import InputError, UsageError
from b2ner_cli.training.trainer import (
    CHECKPOINT,
    TrainResult,
    _load_checkpoint,
    _save_checkpoint,
    check_output,
    read_checkpoint,
)

# --- --overwrite ------------------------------------------------------------------------------------------------


def test_overwrite_refuses_the_current_directory_before_loading_anything(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    write_jsonl(tmp_path / "train.jsonl", synthetic(2))
    result = run("finetune", "train.jsonl", "-o", ".", "--overwrite", "-m", "/typo")
    assert result.exit_code == 2
    assert result.stderr.startswith("Error: --overwrite would replace ., which is the current directory.")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["train.jsonl"]
    assert len((tmp_path / "train.jsonl").read_text(encoding="utf-8").splitlines()) == 2


def test_overwrite_refuses_a_parent_of_the_current_directory(tmp_path: Path, monkeypatch) -> None:
    train = write_jsonl(tmp_path / "train.jsonl", synthetic(2))
    (tmp_path / "sub").mkdir()
    monkeypatch.chdir(tmp_path / "sub")
    result = run("finetune", str(train), "-o", "..", "--overwrite", "-m", "/typo")
    assert result.exit_code == 2
    assert "which is a parent of the current directory" in result.stderr
    assert train.exists()


def test_overwrite_refuses_an_output_that_holds_the_training_file(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    train = write_jsonl(out / "train.jsonl", synthetic(2))
    result = run("finetune", str(train), "-o", str(out), "--overwrite", "-m", "/typo")
    assert result.exit_code == 2
    assert result.stderr.startswith(f"Error: --overwrite would replace {out}, which holds the input {train}.")
    assert train.exists()


def test_overwrite_with_a_wrong_model_leaves_the_old_adapter_intact(tmp_path: Path) -> None:
    train = write_jsonl(tmp_path / "train.jsonl", synthetic(2))
    out = tmp_path / "myadapter"
    out.mkdir()
    (out / "adapter_model.safetensors").write_bytes(b"old weights")
    result = run("finetune", str(train), "-o", str(out), "--overwrite", "-m", str(tmp_path / "typo"), "--offline")
    assert result.exit_code != 0 and result.stderr.startswith("Error: ")
    assert (out / "adapter_model.safetensors").read_bytes() == b"old weights"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["myadapter", "train.jsonl"]  # no new directory left


def test_overwrite_builds_the_new_output_beside_the_old_and_swaps_it_in(tmp_path: Path) -> None:
    out = tmp_path / "adapter"
    out.mkdir()
    (out / "old.txt").write_text("old", encoding="utf-8")
    plan = check_output(out, overwrite=True, resume=False, inputs=[tmp_path / "train.jsonl"])
    assert plan.final == out and plan.work.parent == tmp_path and plan.work != out
    assert (out / "old.txt").exists() and not plan.work.exists()  # nothing deleted, nothing built yet
    plan.work.mkdir()
    (plan.work / "new.txt").write_text("new", encoding="utf-8")
    plan.publish()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adapter"]
    assert sorted(p.name for p in out.iterdir()) == ["new.txt"]


# --- checkpoints: safetensors and JSON only ---------------------------------------------------------------------


@pytest.fixture
def tiny_lora():
    """A real PEFT LoRA on a one-layer torch model, one AdamW step taken."""
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(0)
    model = get_peft_model(torch.nn.Sequential(torch.nn.Linear(4, 4)), LoraConfig(r=2, target_modules=["0"]))
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=0.1, betas=(0.9, 0.98))
    model(torch.ones(1, 4)).sum().backward()
    optimizer.step()
    return model, optimizer


CONFIG = {"base_model": "/m", "train data": "ab" * 32, "lr": 0.1}


def saved(tmp_path: Path, tiny_lora) -> Path:
    model, optimizer = tiny_lora
    folder = tmp_path / CHECKPOINT
    _save_checkpoint(folder, model, optimizer, 2, 7, TrainResult(None, None, [{"epoch": 1}]), CONFIG)
    return folder


def test_checkpoint_holds_only_safetensors_and_json_and_restores_the_state(tmp_path: Path, tiny_lora) -> None:
    model, optimizer = tiny_lora
    folder = saved(tmp_path, tiny_lora)
    files = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
    assert all(f.endswith((".safetensors", ".json", "README.md")) for f in files), files  # PEFT adds a model card
    assert sorted(p.name for p in tmp_path.iterdir()) == [CHECKPOINT]  # no temporary folder left
    before = {k: v.clone() for k, v in optimizer.state_dict()["state"][0].items()}
    rng = torch.get_rng_state()
    torch.rand(3)
    optimizer.state.clear()
    epoch, step, result = _load_checkpoint(folder, model, optimizer, CONFIG)
    assert (epoch, step, result.history) == (2, 7, [{"epoch": 1}])
    after = optimizer.state_dict()["state"][0]
    assert before.keys() == after.keys() == {"step", "exp_avg", "exp_avg_sq"}
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert optimizer.param_groups[0]["betas"] == (0.9, 0.98)
    assert torch.equal(torch.get_rng_state(), rng)


class Planted:
    def __reduce__(self):
        return (os.system, ("touch PWNED",))


def test_a_planted_pickle_never_runs(tmp_path: Path, tiny_lora, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    model, optimizer = tiny_lora
    folder = saved(tmp_path, tiny_lora)
    readable = [p for p in folder.rglob("*") if p.is_file()] + [folder / "state.pt"]
    for path in readable:
        torch.save({"x": Planted()}, path)
    with pytest.raises(InputError, match="damaged or incomplete"):
        _load_checkpoint(folder, model, optimizer, CONFIG)
    (folder / "state.json").unlink()  # only the pickle format's state.pt is left
    with pytest.raises(InputError, match="old pickle format"):
        _load_checkpoint(folder, model, optimizer, CONFIG)
    assert not (tmp_path / "PWNED").exists()


DAMAGED = "is damaged or incomplete"


@pytest.mark.parametrize(
    ("damage", "named"),
    [
        (lambda f: (f / "optimizer.safetensors").unlink(), f"/optimizer.safetensors {DAMAGED}: the file is missing."),
        (lambda f: _truncate(f / "adapter" / "adapter_model.safetensors"), f"/adapter_model.safetensors {DAMAGED}: "),
        (lambda f: (f / "state.json").write_text('{"epoch": 2', "utf-8"), f"/state.json {DAMAGED}: not valid JSON"),
        (lambda f: (f / "result.json").write_text("[]", "utf-8"), f"/result.json {DAMAGED}: not a JSON object."),
    ],
)
def test_a_damaged_checkpoint_is_a_one_line_error_naming_the_file(tmp_path: Path, tiny_lora, damage, named) -> None:
    folder = saved(tmp_path, tiny_lora)
    damage(folder)
    with pytest.raises(InputError) as caught:
        read_checkpoint(folder)
    assert named in caught.value.message and "\n" not in caught.value.message
    assert caught.value.hint == "Start anew with --overwrite instead of --resume."


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:40])


def test_resume_refuses_another_configuration_naming_the_first_difference(tmp_path: Path, tiny_lora) -> None:
    model, optimizer = tiny_lora
    folder = saved(tmp_path, tiny_lora)
    with pytest.raises(UsageError, match=r"made with lr 0\.1, this run has 0\.2\.$"):
        _load_checkpoint(folder, model, optimizer, {**CONFIG, "lr": 0.2})
    mismatch = r"made with train data 'abababababab\.\.\.', this run has 'cdcdcdcdcdcd\.\.\.'"
    with pytest.raises(UsageError, match=mismatch):
        _load_checkpoint(folder, model, optimizer, {**CONFIG, "train data": "cd" * 32, "lr": 0.2})


@pytest.mark.slow
def test_resume_with_other_labels_is_refused(learnable, tmp_path: Path) -> None:  # noqa: F811
    base, train_file = learnable
    out = tmp_path / "out"
    common = ["-m", str(base), "--lora-r", "2", "--epochs", "1", "-b", "30", "--micro-batch-size", "15", "-q"]
    assert run("finetune", str(train_file), "-o", str(out), *common).exit_code == 0
    result = run("finetune", str(train_file), "-o", str(out), "--resume", "-l", "person,location", *common)
    assert result.exit_code == 2
    assert result.stderr.startswith(  # the run took its labels from the data: -l was not given then
        f"Error: --labels person,location conflicts with the run in {out}, which was started with --labels "
        "(not given).\n"
    )
    assert json.loads((out / CHECKPOINT / "state.json").read_text(encoding="utf-8"))["epoch"] == 1


def test_finetune_labels_matching_no_training_entity_stop_before_loading_a_model(tmp_path: Path) -> None:
    train = write_jsonl(tmp_path / "train.jsonl", synthetic(2))
    result = run("finetune", str(train), "-o", str(tmp_path / "out"), "-l", "city", "-m", "/typo")
    assert result.exit_code == 2
    assert result.stderr.startswith(
        "Error: No training entity has a label in the label set (city); the data's entities are: person, "
        "organization, location.\nHint: Give --labels from the data's entity labels"
    )
    assert not (tmp_path / "out").exists()
