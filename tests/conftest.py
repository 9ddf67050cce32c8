"""Shared fixtures: offline settings, and tiny real models built once per test session."""

from __future__ import annotations

import atexit
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
INTERNLM2_FIXTURE = SHARED / "fixtures" / "internlm2-tiny"


# Offline, always, with private caches: set before any test imports huggingface_hub (it reads these at import).
_HOME = Path(tempfile.mkdtemp(prefix="b2ner-tests-"))
atexit.register(shutil.rmtree, _HOME, ignore_errors=True)
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_HOME"] = str(_HOME / "hf")
os.environ["B2NER_HOME"] = str(_HOME / "b2ner")
for _name in ("B2NER_MODEL", "B2NER_ADAPTER", "HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_TOKEN"):
    os.environ.pop(_name, None)


# What the taught adapter answers (spec grammar: leading space, "label: mention; ...").
EN_LABELS = ("person", "organization", "location")
ZH_LABELS = ("人名", "地名")
TAUGHT = [
    (
        "Barack Obama visited Microsoft in Seattle .",
        EN_LABELS,
        " person: Barack Obama; organization: Microsoft; location: Seattle",
    ),
    ("It rained all day .", EN_LABELS, " None"),
    ("李明昨天去了北京。", ZH_LABELS, " 人名: 李明; 地名: 北京"),
    ("Paris is big and Paris is old .", EN_LABELS, " location: Paris; person: Napoleon"),
    ("Ada met Bob .", EN_LABELS, " person: Ada; city: Bob; person: Bob"),
]


@dataclass(frozen=True)
class TinyModels:
    base: Path  # random tiny Llama + tokenizer
    adapter: Path  # LoRA adapter taught the TAUGHT answers on top of ``base``
    other_shape_adapter: Path  # LoRA for a Llama of another hidden size
    wrong_target_adapter: Path  # LoRA on InternLM2's "wqkv", which a Llama does not have


@pytest.fixture(scope="session")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> TinyModels:
    from peft import LoraConfig, get_peft_model

    from b2ner_cli.prompts import LabelSet, build_instruction, detect_lang
    from b2ner_cli.testing import build_model, build_tokenizer, save, teach

    root = tmp_path_factory.mktemp("tiny")
    tokenizer = build_tokenizer()
    model = build_model(len(tokenizer))
    base = save(model, tokenizer, root / "base")

    def lora() -> LoraConfig:
        return LoraConfig(
            r=16,
            lora_alpha=32,
            lora_dropout=0.0,
            task_type="CAUSAL_LM",
            target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        )

    peft_model = get_peft_model(model, lora())
    pairs = [
        (build_instruction(text, LabelSet(labels), detect_lang(labels)), answer) for text, labels, answer in TAUGHT
    ]
    teach(peft_model, tokenizer, pairs, steps=200, lr=1e-2)
    peft_model.save_pretrained(root / "adapter")

    other = get_peft_model(build_model(len(tokenizer), hidden_size=32), lora())
    other.save_pretrained(root / "other-shape-adapter")
    wrong = root / "wrong-target-adapter"
    wrong.mkdir()
    config = json.loads((root / "adapter" / "adapter_config.json").read_text())
    config["target_modules"] = ["wqkv"]
    (wrong / "adapter_config.json").write_text(json.dumps(config))
    return TinyModels(base, root / "adapter", root / "other-shape-adapter", wrong)
