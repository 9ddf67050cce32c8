"""The engine registry: names, "auto", plugins, unknown names; torch-free at import."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from collections.abc import Sequence

import pytest

from b2ner_cli.engine import registry
from b2ner_cli.engine.base import Generation
from b2ner_cli.errors import UsageError


class Echo:
    """A fake engine: answers each prompt with its length."""

    def __init__(self, model, tokenizer, *, max_new_tokens, info) -> None:
        self.max_new_tokens = max_new_tokens
        self.info = info

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def encode(self, instruction: str) -> list[int]:
        return [1, *range(len(instruction.split()))]

    def generate(self, batch: Sequence[list[int]]) -> list[Generation]:
        return [Generation(f" n: {len(ids)}", 1, True) for ids in batch]

    def describe(self) -> dict[str, object]:
        return {"engine": "echo"}


class FakeModel:
    def __init__(self, device: str) -> None:
        self.device = type("Device", (), {"type": device})()


def test_registry_does_not_import_torch() -> None:
    code = "import sys, json; import b2ner_cli.engine.registry; print(json.dumps('torch' in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(done.stdout) is False


def test_names_and_unknown_engine() -> None:
    assert registry.engines()[0] == "hf"
    assert registry.ENGINE_CHOICES == ("auto", "hf", "continuous", "vllm")
    assert ("continuous" in registry.ENGINES) == registry.continuous_available()
    assert ("vllm" in registry.ENGINES) == (importlib.util.find_spec("vllm") is not None)
    with pytest.raises(UsageError) as raised:
        registry.create_generator("vllm-xyz", FakeModel("cpu"), None, max_new_tokens=8)
    assert raised.value.message == "Unknown engine `vllm-xyz`."
    assert raised.value.hint == "Choose one of: " + ", ".join(["auto", *registry.engines()]) + "."
    assert "hf" in raised.value.hint


def test_register_a_plugin_engine(monkeypatch) -> None:
    monkeypatch.setattr(registry, "_FACTORIES", dict(registry._FACTORIES))
    registry.register_engine("echo", Echo)
    assert "echo" in registry.ENGINES
    generator = registry.create_generator("echo", FakeModel("cpu"), None, max_new_tokens=8, info={"model": "m"})
    assert isinstance(generator, Echo) and generator.max_new_tokens == 8 and generator.info == {"model": "m"}
    assert generator.generate([[1, 2, 3]])[0].answer == " n: 3"
    with pytest.raises(ValueError, match="auto"):
        registry.register_engine("auto", Echo)


def test_auto_is_hf_unless_continuous_is_measured_faster_on_cuda(monkeypatch) -> None:
    monkeypatch.setattr(registry, "_FACTORIES", dict(registry._FACTORIES))
    monkeypatch.setattr(registry, "_CONDITIONAL", {"continuous": (Echo, lambda: True)})
    registry.register_engine("hf", lambda *a, **k: "hf-engine")
    assert registry.auto_engine(FakeModel("cuda")) == "hf"  # not measured faster yet
    assert registry.create_generator("auto", FakeModel("cpu"), None, max_new_tokens=8) == "hf-engine"
    monkeypatch.setattr(registry, "CONTINUOUS_FASTER_ON_CUDA", True)
    assert registry.auto_engine(FakeModel("cuda")) == "continuous"
    assert registry.auto_engine(FakeModel("cpu")) == "hf"
    assert isinstance(registry.create_generator("auto", FakeModel("cuda"), None, max_new_tokens=8), Echo)
    monkeypatch.setattr(registry, "_CONDITIONAL", {"continuous": (Echo, lambda: False)})
    assert registry.auto_engine(FakeModel("cuda")) == "hf"  # faster, but not installed
    with pytest.raises(UsageError, match="continuous batching"):
        registry.create_generator("continuous", FakeModel("cuda"), None, max_new_tokens=8)


@pytest.mark.slow
def test_hf_engine_from_the_registry() -> None:
    from b2ner_cli.engine.hf import HFGenerator
    from b2ner_cli.testing import build_model, build_tokenizer

    tokenizer = build_tokenizer()
    generator = registry.create_generator("hf", build_model(len(tokenizer)), tokenizer, max_new_tokens=5, info={})
    assert isinstance(generator, HFGenerator) and generator.max_new_tokens == 5 and generator.prefix_cache
