"""The tagger trained once per test session (tiny BERT encoder, spanner head, ``b2ner finetune --head`` on the
synthetic task of ``test_taggers``), shared by the tagger and cascade tests through ``conftest``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from click.testing import Result

    from b2ner_cli.taggers import TaggerExample

FAST_FLAGS = ["--epochs", "12", "--train-batch-size", "8", "--lr", "2e-3", "--head-lr", "5e-3", "--max-span-words", "4"]


def gold_rows(examples: list[TaggerExample]) -> list[dict]:
    return [
        {"id": str(i), "text": e.text, "entities": [{"start": s, "end": t, "label": lab} for s, t, lab in e.entities]}
        for i, e in enumerate(examples)
    ]


@dataclass(frozen=True)
class Trained:
    path: Path
    encoder: Path
    train: Path
    dev: Path
    result: Result


@pytest.fixture(scope="session")
def tagger(encoder_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Trained:
    """A spanner tagger trained once per session through ``b2ner finetune --head`` on the synthetic task."""
    import torch
    from helpers import cli, write_jsonl
    from test_taggers import DEV, TRAIN

    root = tmp_path_factory.mktemp("tagger")
    train = write_jsonl(root / "train.jsonl", gold_rows(TRAIN))
    dev = write_jsonl(root / "dev.jsonl", gold_rows(DEV))
    out = root / "tagger"
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models train several times faster on one thread on a shared, busy machine
    try:
        result = cli("finetune", str(train), "--dev", str(dev), "-o", str(out), "--head", "spanner",
                     "--encoder", str(encoder_dir), *FAST_FLAGS)  # fmt: skip
    finally:
        torch.set_num_threads(before)
    assert result.exit_code == 0, result.output
    return Trained(out, encoder_dir, train, dev, result)
