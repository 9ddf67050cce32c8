"""`finetune --resume` continues with the run's own settings (dev set included) and refuses flags that differ;
one plain line per epoch on stderr."""

from __future__ import annotations

import json
import re
from pathlib import Path

from helpers import cli
from test_finetune import FAST, learnable  # noqa: F401  (the module's tiny learnable model)


def _history(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text(encoding="utf-8").splitlines()]


def test_resume_restores_the_settings_and_keeps_the_dev_set(learnable, tmp_path: Path) -> None:  # noqa: F811
    base, train_file = learnable
    out = tmp_path / "adapter"
    settings = [a for a in FAST if a != "-q"]
    first = cli("finetune", str(train_file), "--dev", str(train_file), "-o", str(out), "-m", str(base),
                "--epochs", "1", *settings)  # fmt: skip
    assert first.exit_code == 0, first.output
    assert re.search(r"^epoch 1/1: loss \d+\.\d{4}, dev b2ner F1 \d+\.\d\d$", first.stderr, re.M), first.stderr

    # only the train file, the output and a higher --epochs: model, LoRA, lr, batch sizes and --dev come back
    resumed = cli("finetune", str(train_file), "-o", str(out), "--resume", "--epochs", "2")
    assert resumed.exit_code == 0, resumed.output
    history = _history(out)
    assert [h["epoch"] for h in history] == [1, 2]
    assert all(h["dev"] is not None for h in history)  # the dev set stayed: epoch 2 was scored
    assert re.search(r"^epoch 2/2: loss \d+\.\d{4}, dev b2ner F1 \d+\.\d\d$", resumed.stderr, re.M), resumed.stderr
    meta = json.loads((out / "b2ner_adapter.json").read_text(encoding="utf-8"))
    assert meta["selected_by"] == "b2ner" and meta["dev"] == str(train_file.resolve())
    best = max(history, key=lambda h: h["dev"]["b2ner"]["f1"])  # the first best epoch wins ties
    assert meta["epoch"] == best["epoch"]

    conflict = cli("finetune", str(train_file), "-o", str(out), "--resume", "--epochs", "3", "--lr", "0.1")
    assert conflict.exit_code == 2
    assert conflict.stderr.startswith(
        f"Error: --lr 0.1 conflicts with the run in {out}, which was started with --lr 0.003.\n"
    )
    same = cli("finetune", str(train_file), "-o", str(out), "--resume", "--epochs", "2", "--lr", "3e-3", "-q")
    assert same.exit_code == 0, same.output  # a flag that agrees with the checkpoint is fine
    lower = cli("finetune", str(train_file), "-o", str(out), "--resume", "--epochs", "1")
    assert lower.exit_code == 2 and "--epochs 1 is below the 2" in lower.stderr
    other_dev = tmp_path / "dev.jsonl"
    other_dev.write_text(train_file.read_text(encoding="utf-8"), encoding="utf-8")
    moved = cli("finetune", str(train_file), "-o", str(out), "--resume", "--dev", str(other_dev))
    assert moved.exit_code == 2 and moved.stderr.startswith(f"Error: --dev {other_dev} conflicts with the run")
