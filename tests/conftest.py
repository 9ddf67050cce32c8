"""Shared fixtures: offline settings, a private B2NER_HOME/HF_HOME per test, tiny real models built once per test
session, a fake recognizer registered through the recognizer seam, and the ``slow`` marker for model tests."""

from __future__ import annotations

import atexit
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from trained import tagger  # noqa: F401  (a session fixture: one trained tagger per session)

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
INTERNLM2_FIXTURE = SHARED / "fixtures" / "internlm2-tiny"


# Offline, always: set before any test imports huggingface_hub (it reads these at import). The session-wide homes
# below serve session-scoped fixtures only; every test gets its own through the autouse ``home`` fixture.
_SESSION_HOME = Path(tempfile.mkdtemp(prefix="b2ner-tests-"))
atexit.register(shutil.rmtree, _SESSION_HOME, ignore_errors=True)
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_HOME"] = str(_SESSION_HOME / "hf")
os.environ["B2NER_HOME"] = str(_SESSION_HOME / "b2ner")
for _name in ("B2NER_MODEL", "B2NER_ADAPTER", "B2NER_BATCH_SIZE", "HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_TOKEN"):
    os.environ.pop(_name, None)

#: fixtures that build, train or load a model: a test using one is marked ``slow``.
MODEL_FIXTURES = {
    "tiny", "fake_hub", "backbone", "base_model", "lora_model", "models", "learnable", "extractor", "tagger",
}  # fmt: skip


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark model tests ``slow`` from the fixtures they use (run them all by default; ``-m "not slow"`` skips them)."""
    for item in items:
        if MODEL_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


@dataclass(frozen=True)
class Home:
    b2ner: Path
    hf: Path

    @property
    def hub(self) -> Path:
        return self.hf / "hub"


@pytest.fixture(autouse=True)
def home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Home:
    """A private B2NER_HOME (aliases, conversions), HF_HOME (the Hub cache) and working directory for each test."""
    import huggingface_hub.constants as hf_constants

    root = tmp_path_factory.mktemp("home")
    (root / "cwd").mkdir()
    monkeypatch.chdir(root / "cwd")  # files a command writes by default land here, never in the checkout
    paths = Home(root / "b2ner", root / "hf")
    monkeypatch.setenv("B2NER_HOME", str(paths.b2ner))
    monkeypatch.setenv("HF_HOME", str(paths.hf))
    # huggingface_hub resolved its cache path at import: point it at this test's cache too.
    monkeypatch.setattr(hf_constants, "HF_HOME", str(paths.hf))
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(paths.hub))
    return paths


@pytest.fixture(scope="session")
def encoder_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random BERT with a WordPiece tokenizer trained on the taggers' synthetic task, once per session."""
    from test_taggers import DEV, MIXED, TRAIN

    from b2ner_cli.testing import build_bert, build_wordpiece_tokenizer, save

    tokenizer = build_wordpiece_tokenizer([e.text for e in TRAIN + DEV] + [MIXED])
    return save(build_bert(len(tokenizer), hidden=32), tokenizer, tmp_path_factory.mktemp("encoder"))


@pytest.fixture
def fake_model() -> Iterator[str]:
    """``-m fake`` loads a :class:`FakeRecognizer` (registered through the recognizer seam, as a plugin would)."""
    from fakes import FakeRecognizer

    from b2ner_cli.runs.recognizer import register_recognizer, unregister_recognizer

    register_recognizer("fake", lambda spec, options: FakeRecognizer(), matches=lambda spec: spec.model == "fake")
    yield "fake"
    unregister_recognizer("fake")


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
