"""InternLM2 checkpoints on transformers' Llama, checked against the reference fixture.

The fixture (``../shared/fixtures/internlm2-tiny``) holds an InternLM2-format backbone (bf16), a LoRA adapter on
``wqkv``, and what the original Hub remote code computed on them. Tests that need it are skipped when it is absent;
the hand-worked unit tests of the key mapping and the ``wqkv`` split always run.
"""

from __future__ import annotations

import json
import os
import shutil
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from b2ner_cli.engine.hf import HFGenerator
from b2ner_cli.errors import AdapterError, ModelError
from b2ner_cli.models import internlm2
from b2ner_cli.models.internlm2 import (
    QKVLayout,
    convert_tensor,
    convert_wqkv_lora,
    is_internlm2,
    llama_config,
    load_internlm2_model,
    load_internlm2_tokenizer,
    read_config,
    split_wqkv,
)

FIXTURE = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "internlm2-tiny"
TOLERANCE = 1e-4
NEW_TOKENS = 12


# --------------------------------------------------------------------------------------------------------------------
# Fixtures


@pytest.fixture(scope="module")
def fixture_dir() -> Path:
    if not (FIXTURE / "expected.json").is_file():
        pytest.skip(f"InternLM2 conformance fixture not found at {FIXTURE}")
    return FIXTURE


@pytest.fixture(scope="module")
def backbone(fixture_dir: Path) -> Path:
    return fixture_dir / "backbone"


@pytest.fixture(scope="module")
def expected(fixture_dir: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((fixture_dir / "expected.json").read_text(encoding="utf-8"))
    return loaded


@pytest.fixture(scope="module")
def raw_config(backbone: Path) -> dict[str, Any]:
    return read_config(backbone)


@pytest.fixture(scope="module")
def tokenizer(backbone: Path) -> Any:
    return load_internlm2_tokenizer(backbone)


@pytest.fixture(scope="module")
def converted_adapter(fixture_dir: Path, raw_config: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Path:
    return convert_wqkv_lora(fixture_dir / "adapter", raw_config, tmp_path_factory.mktemp("adapter") / "llama")


@pytest.fixture(scope="module")
def base_model(backbone: Path) -> Any:
    return load_internlm2_model(backbone, torch.float32)


@pytest.fixture(scope="module")
def lora_model(backbone: Path, converted_adapter: Path) -> Any:
    from peft import PeftModel

    model = PeftModel.from_pretrained(load_internlm2_model(backbone, torch.float32), str(converted_adapter))
    return model.eval()


@pytest.fixture(scope="module")
def models(base_model: Any, lora_model: Any, backbone: Path) -> dict[str, Any]:
    # The fixture's backbone-only reference ran with its RoPE inverse frequencies rounded to bf16 (the checkpoint's
    # dtype), its backbone + adapter reference with float32 ones; each is reproduced with the matching setting.
    rounded = load_internlm2_model(backbone, torch.float32, rope_rounding=torch.bfloat16)
    return {"base": rounded, "lora": lora_model}


def _last_logits(model: Any, ids: list[int]) -> torch.Tensor:
    with torch.inference_mode():
        logits: torch.Tensor = model(input_ids=torch.tensor([ids])).logits[0, -1].float()
    return logits


def _greedy(model: Any, ids: list[int]) -> list[int]:
    with torch.inference_mode():
        out = model.generate(
            input_ids=torch.tensor([ids]),
            attention_mask=torch.ones(1, len(ids), dtype=torch.long),
            max_new_tokens=NEW_TOKENS,
            do_sample=False,
            num_beams=1,
        )
    return [int(t) for t in out[0, len(ids) :]]


# --------------------------------------------------------------------------------------------------------------------
# Pure pieces (no fixture needed)


def test_split_wqkv_by_hand() -> None:
    # 4 query heads, 2 key/value heads, head size 2: G = 2 query heads per group, groups of (2 + 2) * 2 = 8 rows.
    # group 0 = rows 0-7: q head 0 (0, 1), q head 1 (2, 3), k head 0 (4, 5), v head 0 (6, 7)
    # group 1 = rows 8-15: q head 2 (8, 9), q head 3 (10, 11), k head 1 (12, 13), v head 1 (14, 15)
    layout = QKVLayout(n_heads=4, n_kv=2, head_dim=2)
    assert (layout.group, layout.rows) == (2, 16)
    weight = torch.arange(16).repeat_interleave(3).reshape(16, 3)  # row i is [i, i, i]
    q, k, v = split_wqkv(weight, layout)
    assert q[:, 0].tolist() == [0, 1, 2, 3, 8, 9, 10, 11]
    assert k[:, 0].tolist() == [4, 5, 12, 13]
    assert v[:, 0].tolist() == [6, 7, 14, 15]
    assert torch.equal(q, q[:, :1].expand(8, 3)) and q.is_contiguous()  # whole rows move, columns untouched
    q, k, v = split_wqkv(torch.arange(16), layout)  # a bias is split the same way
    assert (q.tolist(), k.tolist(), v.tolist()) == ([0, 1, 2, 3, 8, 9, 10, 11], [4, 5, 12, 13], [6, 7, 14, 15])


def test_split_wqkv_without_grouping_and_bad_shapes() -> None:
    # n_kv == n_heads (no GQA): every group is one q, one k, one v head.
    q, k, v = split_wqkv(torch.arange(12), QKVLayout(n_heads=2, n_kv=2, head_dim=2))
    assert (q.tolist(), k.tolist(), v.tolist()) == ([0, 1, 6, 7], [2, 3, 8, 9], [4, 5, 10, 11])
    with pytest.raises(ModelError, match="need 16"):
        split_wqkv(torch.zeros(12, 4), QKVLayout(n_heads=4, n_kv=2, head_dim=2))


def test_key_mapping_table() -> None:
    layout = QKVLayout(n_heads=4, n_kv=2, head_dim=2)
    one = torch.zeros(1)
    renames = {
        "model.tok_embeddings.weight": "model.embed_tokens.weight",
        "model.layers.3.attention.wo.weight": "model.layers.3.self_attn.o_proj.weight",
        "model.layers.3.attention.wo.bias": "model.layers.3.self_attn.o_proj.bias",
        "model.layers.3.feed_forward.w1.weight": "model.layers.3.mlp.gate_proj.weight",
        "model.layers.3.feed_forward.w3.weight": "model.layers.3.mlp.up_proj.weight",
        "model.layers.3.feed_forward.w2.weight": "model.layers.3.mlp.down_proj.weight",
        "model.layers.3.attention_norm.weight": "model.layers.3.input_layernorm.weight",
        "model.layers.3.ffn_norm.weight": "model.layers.3.post_attention_layernorm.weight",
        "model.norm.weight": "model.norm.weight",
        "output.weight": "lm_head.weight",
    }
    for key, name in renames.items():
        assert [n for n, _ in convert_tensor(key, one, layout)] == [name]
    for kind in ("weight", "bias"):
        names = [n for n, _ in convert_tensor(f"model.layers.0.attention.wqkv.{kind}", torch.zeros(16), layout)]
        assert names == [f"model.layers.0.self_attn.{p}.{kind}" for p in ("q_proj", "k_proj", "v_proj")]
    assert convert_tensor("model.layers.0.attention.rotary_emb.inv_freq", one, layout) == []
    with pytest.raises(ModelError, match="Unexpected tensor"):
        convert_tensor("model.layers.0.attention.wqkv_extra.weight", one, layout)


def _config(**overrides: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "model_type": "internlm2",
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 8,
        "num_key_value_heads": 2,
        "vocab_size": 100,
        "rms_norm_eps": 1e-5,
        "rope_theta": 1000000,
        "max_position_embeddings": 32768,
        "bias": False,
        "rope_scaling": None,
    }
    config.update(overrides)
    return config


def test_llama_config_mapping() -> None:
    config = llama_config(_config(bias=True))
    assert (config.hidden_size, config.intermediate_size, config.num_hidden_layers) == (64, 128, 2)
    assert (config.num_attention_heads, config.num_key_value_heads, config.head_dim) == (8, 2, 8)
    assert config.attention_bias is True and config.mlp_bias is False and config.tie_word_embeddings is False
    assert config.rms_norm_eps == 1e-5 and config.max_position_embeddings == 32768 and config.vocab_size == 100
    assert config.rope_parameters == {"rope_type": "default", "rope_theta": 1e6}
    linear = llama_config(_config(rope_scaling={"type": "linear", "factor": 4.0})).rope_parameters
    assert linear == {"rope_type": "linear", "rope_theta": 1e6, "factor": 4.0}
    with pytest.raises(ModelError, match="yarn"):
        llama_config(_config(rope_scaling={"type": "yarn", "factor": 2.0}))
    with pytest.raises(ModelError, match="Not an InternLM2"):
        llama_config(_config(model_type="llama"))
    assert is_internlm2({"model_type": "internlm2"}) and not is_internlm2({"model_type": "llama"})


def test_dynamic_rope_leaves_frequencies_alone_below_max_positions() -> None:
    from transformers import LlamaForCausalLM

    small = _config(max_position_embeddings=64)
    dynamic = LlamaForCausalLM(llama_config({**small, "rope_scaling": {"type": "dynamic", "factor": 2.0}}))
    plain = LlamaForCausalLM(llama_config(small))
    rotary, reference = dynamic.model.rotary_emb, plain.model.rotary_emb
    x = torch.zeros(1, 1, 8)
    for length in (10, 64):  # up to the original length: exactly the unscaled RoPE
        positions = torch.arange(length)[None]
        assert all(torch.equal(a, b) for a, b in zip(rotary(x, positions), reference(x, positions), strict=True))
    longer = torch.arange(100)[None]  # beyond it the base grows, as in the reference
    assert not torch.equal(rotary(x, longer)[0], reference(x, longer)[0])


# --------------------------------------------------------------------------------------------------------------------
# Tokenizer


@pytest.mark.fixture
def test_token_ids_match_reference(fixture_dir: Path, tokenizer: Any) -> None:
    lines = (fixture_dir / "token_ids.jsonl").read_text(encoding="utf-8").splitlines()
    rows = [json.loads(line) for line in lines if line.strip()]
    assert len(rows) > 20
    wrong = [row["text"] for row in rows if tokenizer.encode(row["text"], add_special_tokens=False) != row["ids"]]
    assert wrong == []
    # No BOS/EOS is ever added (the reference's add_bos_token=False): a literal "<s>" is the only BOS.
    wrong = [row["text"] for row in rows if tokenizer(row["text"])["input_ids"] != row["ids"]]
    assert wrong == []
    # Decoding gives the text back: spaces, tabs, newlines, Chinese, emoji and special tokens as written.
    wrong = [row["text"] for row in rows if tokenizer.decode(row["ids"]) != row["text"]]
    assert wrong == []


@pytest.mark.fixture
def test_tokenizer_specials_and_decoding(tokenizer: Any) -> None:
    assert (tokenizer.unk_token_id, tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id) == (
        0,
        1,
        2,
        2,
    )
    assert len(tokenizer) == 92544
    assert tokenizer.encode("<s>a", add_special_tokens=False).count(1) == 1
    text = "  两个空格 and  two spaces\t李明 "
    ids = tokenizer.encode(text, add_special_tokens=False)
    assert tokenizer.decode(ids) == text
    answer = " 人名: 李明; 地名: 北京"
    ids = tokenizer.encode(answer + "</s>", add_special_tokens=False)
    assert ids[-1] == 2
    assert tokenizer.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False) == answer
    # A token run cut in the middle of a multi-byte character decodes without raising.
    emoji = tokenizer.encode("🙂", add_special_tokens=False)
    assert len(emoji) == 4 and tokenizer.decode(emoji) == "🙂"
    assert isinstance(tokenizer.decode(emoji[:2]), str)


@pytest.mark.fixture
def test_tokenizer_loads_quietly(backbone: Path, capfd: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    # SentencePiece's C++ logger warns about the NUL piece of InternLM2's vocabulary on every load.
    capfd.readouterr()
    tokenizer = load_internlm2_tokenizer(backbone)
    out, err = capfd.readouterr()
    assert (out, err) == ("", "")
    assert tokenizer.encode("Hello world", add_special_tokens=False) == [9843, 2028]
    with pytest.raises(ModelError, match=r"no tokenizer\.model"):
        load_internlm2_tokenizer(tmp_path)


# --------------------------------------------------------------------------------------------------------------------
# Model against the reference


@pytest.mark.fixture
@pytest.mark.slow
def test_loaded_model_shape_and_generation_config(base_model: Any, backbone: Path) -> None:
    from transformers import LlamaForCausalLM

    assert isinstance(base_model, LlamaForCausalLM)
    assert not base_model.training
    params = dict(base_model.named_parameters())
    assert all(p.device.type == "cpu" and p.dtype == torch.float32 for p in params.values())
    assert params["lm_head.weight"].data_ptr() != params["model.embed_tokens.weight"].data_ptr()
    generation = base_model.generation_config
    assert generation.eos_token_id == [2, 92542] and generation.pad_token_id == 2 and generation.bos_token_id == 1
    stored = load_file(backbone / "model.safetensors")
    assert torch.equal(params["model.embed_tokens.weight"], stored["model.tok_embeddings.weight"].float())
    assert torch.equal(params["lm_head.weight"], stored["output.weight"].float())


@pytest.mark.fixture
@pytest.mark.slow
def test_bf16_load_keeps_stored_values(backbone: Path) -> None:
    model = load_internlm2_model(backbone, torch.bfloat16)
    stored = load_file(backbone / "model.safetensors")
    params = dict(model.named_parameters())
    assert all(p.dtype == torch.bfloat16 for p in params.values())
    q, k, v = split_wqkv(stored["model.layers.1.attention.wqkv.weight"], QKVLayout.from_config(read_config(backbone)))
    assert torch.equal(params["model.layers.1.self_attn.q_proj.weight"], q)
    assert torch.equal(params["model.layers.1.self_attn.k_proj.weight"], k)
    assert torch.equal(params["model.layers.1.self_attn.v_proj.weight"], v)
    assert torch.equal(params["model.layers.1.mlp.down_proj.weight"], stored["model.layers.1.feed_forward.w2.weight"])


@pytest.mark.fixture
@pytest.mark.slow
@pytest.mark.parametrize("case", ["base", "lora"])
def test_input_ids_and_last_logits(case: str, models: dict[str, Any], expected: dict[str, Any], tokenizer: Any) -> None:
    model = models[case]
    rows = expected[case]["rows"]
    assert expected[case]["with_adapter"] is (case == "lora") and len(rows) >= 2
    generator = HFGenerator(model, tokenizer, max_new_tokens=NEW_TOKENS)
    for row in rows:
        ids = tokenizer.encode(row["prompt"], add_special_tokens=False)
        assert ids == row["input_ids"]
        assert generator.encode(row["prompt"].removeprefix("<s>")) == row["input_ids"]  # exactly one BOS
        logits = _last_logits(model, ids)
        first = torch.tensor(row["last_logits_first_64"])
        assert (logits[:64] - first).abs().max().item() < TOLERANCE
        values, indices = logits.topk(10)
        assert indices.tolist() == row["last_top10_ids"]
        assert (values - torch.tensor(row["last_top10_logits"])).abs().max().item() < TOLERANCE


@pytest.mark.fixture
@pytest.mark.slow
@pytest.mark.parametrize("case", ["base", "lora"])
def test_greedy_ids_one_by_one(case: str, models: dict[str, Any], expected: dict[str, Any]) -> None:
    for row in expected[case]["rows"]:
        assert _greedy(models[case], row["input_ids"]) == row["greedy_new_ids"]


@pytest.mark.fixture
@pytest.mark.slow
@pytest.mark.parametrize("case", ["base", "lora"])
def test_greedy_ids_as_one_left_padded_batch(
    case: str, models: dict[str, Any], expected: dict[str, Any], tokenizer: Any
) -> None:
    model = models[case]
    prompts = [row["input_ids"] for row in expected[case]["rows"]]
    want = expected[case]["batched_greedy_new_ids"]
    assert len({len(p) for p in prompts}) > 1  # really padded
    width = max(len(p) for p in prompts)
    input_ids = torch.full((len(prompts), width), 2)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for i, ids in enumerate(prompts):
        input_ids[i, width - len(ids) :] = torch.tensor(ids)
        mask[i, width - len(ids) :] = 1
    with torch.inference_mode():
        out = model.generate(
            input_ids=input_ids, attention_mask=mask, max_new_tokens=NEW_TOKENS, do_sample=False, pad_token_id=2
        )
    assert out[:, width:].tolist() == want

    # The engine's own batched path gives the same answers (it returns text: compare with the decoded ids).
    generator = HFGenerator(model, tokenizer, max_new_tokens=NEW_TOKENS)
    results = generator.generate(prompts)
    eos = set(generator.eos_ids)
    for result, ids in zip(results, want, strict=True):
        end = next((i for i, t in enumerate(ids) if t in eos), len(ids))
        text = tokenizer.decode(ids[:end], skip_special_tokens=True, clean_up_tokenization_spaces=False)
        assert (result.answer, result.new_tokens) == (text, end)
        assert result.answer  # random weights, but 12 real tokens: never empty


@pytest.mark.fixture
@pytest.mark.slow
def test_float32_rope_on_the_backbone_alone(base_model: Any, expected: dict[str, Any]) -> None:
    # With float32 RoPE frequencies (the default, and the adapter reference's setting) the backbone-only reference,
    # computed with bf16-rounded ones, is met to about 2e-3 and its greedy ids exactly.
    for row in expected["base"]["rows"]:
        logits = _last_logits(base_model, row["input_ids"])
        assert (logits[:64] - torch.tensor(row["last_logits_first_64"])).abs().max().item() < 5e-3
        assert _greedy(base_model, row["input_ids"]) == row["greedy_new_ids"]


@pytest.mark.fixture
@pytest.mark.slow
def test_adapter_changes_the_output(base_model: Any, lora_model: Any, expected: dict[str, Any]) -> None:
    for row in expected["lora"]["rows"]:
        ids = row["input_ids"]
        assert (_last_logits(base_model, ids) - _last_logits(lora_model, ids)).abs().max().item() > 0.1
        assert _greedy(base_model, ids) != _greedy(lora_model, ids)
    base_ids = [row["greedy_new_ids"] for row in expected["base"]["rows"]]
    assert base_ids != [row["greedy_new_ids"] for row in expected["lora"]["rows"]]


# --------------------------------------------------------------------------------------------------------------------
# Adapter conversion


@pytest.mark.fixture
def test_converted_adapter_files(fixture_dir: Path, converted_adapter: Path, raw_config: dict[str, Any]) -> None:
    original = json.loads((fixture_dir / "adapter" / "adapter_config.json").read_text(encoding="utf-8"))
    config = json.loads((converted_adapter / "adapter_config.json").read_text(encoding="utf-8"))
    assert config["target_modules"] == ["q_proj", "k_proj", "v_proj"]
    assert {k: v for k, v in config.items() if k != "target_modules"} == {
        k: v for k, v in original.items() if k != "target_modules"
    }  # r, alpha, base_model_name_or_path ... unchanged
    source = load_file(fixture_dir / "adapter" / "adapter_model.safetensors")
    tensors = load_file(converted_adapter / "adapter_model.safetensors")
    layout = QKVLayout.from_config(raw_config)
    assert len(tensors) == 3 * len(source)
    for layer in range(int(raw_config["num_hidden_layers"])):
        a = source[f"base_model.model.model.layers.{layer}.attention.wqkv.lora_A.weight"]
        b = source[f"base_model.model.model.layers.{layer}.attention.wqkv.lora_B.weight"]
        for name, rows in zip(("q_proj", "k_proj", "v_proj"), split_wqkv(b, layout), strict=True):
            prefix = f"base_model.model.model.layers.{layer}.self_attn.{name}"
            assert tensors[f"{prefix}.lora_A.weight"].dtype == torch.bfloat16
            assert torch.equal(tensors[f"{prefix}.lora_A.weight"], a)
            assert torch.equal(tensors[f"{prefix}.lora_B.weight"], rows)
        # The three deltas stacked back in grouped order are exactly the wqkv delta B @ A.
        prefix = f"base_model.model.model.layers.{layer}.self_attn"
        deltas = [tensors[f"{prefix}.{n}.lora_B.weight"].double() @ a.double() for n in ("q_proj", "k_proj", "v_proj")]
        q, k, v = (d.reshape(-1, layout.head_dim, a.shape[1]) for d in deltas)
        groups = [
            torch.cat([q[g * layout.group : (g + 1) * layout.group], k[g : g + 1], v[g : g + 1]])
            for g in range(layout.n_kv)
        ]
        assert torch.equal(torch.cat(groups).reshape(-1, a.shape[1]), b.double() @ a.double())


@pytest.mark.fixture
@pytest.mark.slow
def test_peft_loads_every_converted_tensor(lora_model: Any, converted_adapter: Path) -> None:
    tensors = load_file(converted_adapter / "adapter_model.safetensors")
    state = {name: p for name, p in lora_model.named_parameters() if "lora_" in name}
    assert len(state) == len(tensors)
    for key, value in tensors.items():
        loaded = state[key.replace(".weight", ".default.weight")]
        assert torch.equal(loaded, value.to(loaded.dtype))
    assert lora_model.peft_config["default"].r == 8 and lora_model.peft_config["default"].lora_alpha == 16


def test_adapter_conversion_refuses_what_it_cannot_convert(tmp_path: Path) -> None:
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    config = {"peft_type": "LORA", "r": 2, "lora_alpha": 4, "target_modules": ["wqkv"], "use_dora": True}
    (adapter / "adapter_config.json").write_text(json.dumps(config), encoding="utf-8")
    with pytest.raises(AdapterError, match="DoRA"):
        convert_wqkv_lora(adapter, _config(), tmp_path / "out")
    config.update(use_dora=False, target_modules=["mystery"])
    (adapter / "adapter_config.json").write_text(json.dumps(config), encoding="utf-8")
    tensors = {"base_model.model.model.layers.0.attention.wqkv.lora_A.weight": torch.zeros(2, 64)}
    save_file(tensors, adapter / "adapter_model.safetensors")
    with pytest.raises(AdapterError, match="mystery"):
        convert_wqkv_lora(adapter, _config(), tmp_path / "out")


# --------------------------------------------------------------------------------------------------------------------
# Streaming load


@pytest.fixture
def two_shards(backbone: Path, tmp_path: Path) -> Path:
    """The fixture's backbone re-saved as two safetensors shards with an index, as large checkpoints come."""
    target = tmp_path / "sharded"
    target.mkdir()
    for name in ("config.json", "generation_config.json"):
        shutil.copy(backbone / name, target / name)
    tensors = load_file(backbone / "model.safetensors")
    first = {k: v for k, v in tensors.items() if k.startswith(("model.layers.0.", "model.tok_embeddings"))}
    second = {k: v for k, v in tensors.items() if k not in first}
    weight_map = {}
    for name, part in (("model-00001-of-00002.safetensors", first), ("model-00002-of-00002.safetensors", second)):
        save_file(part, target / name, metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(part, name))
    index = {"metadata": {}, "weight_map": weight_map}
    (target / "model.safetensors.index.json").write_text(json.dumps(index), encoding="utf-8")
    return target


class _Recorder:
    """Wraps safetensors.safe_open: logs opens, reads and closes, and how many read tensors are still alive."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []
        self.alive: list[weakref.ref[torch.Tensor]] = []
        self.most_alive = 0
        self.open_now = 0
        self.most_open = 0

    def __call__(self, filename: str, framework: str, device: str = "cpu") -> Any:
        recorder = self

        class Handle:
            def __enter__(self) -> Handle:
                self.inner = safe_open(filename, framework=framework, device=device)
                self.handle = self.inner.__enter__()
                recorder.open_now += 1
                recorder.most_open = max(recorder.most_open, recorder.open_now)
                recorder.events.append(("open", Path(filename).name))
                return self

            def __exit__(self, *exc: object) -> None:
                recorder.open_now -= 1
                recorder.events.append(("close", Path(filename).name))
                self.inner.__exit__(*exc)

            def keys(self) -> Iterator[str]:
                return iter(self.handle.keys())

            def get_tensor(self, key: str) -> torch.Tensor:
                recorder.most_alive = max(recorder.most_alive, sum(ref() is not None for ref in recorder.alive))
                tensor: torch.Tensor = self.handle.get_tensor(key)
                recorder.alive.append(weakref.ref(tensor))
                recorder.events.append(("read", key))
                return tensor

        return Handle()


@pytest.mark.fixture
@pytest.mark.slow
def test_sharded_checkpoint_streams_shard_by_shard(
    two_shards: Path, base_model: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    recorder = _Recorder()
    monkeypatch.setattr(internlm2, "safe_open", recorder)
    model = load_internlm2_model(two_shards, torch.float32)

    kinds = [kind for kind, _ in recorder.events]
    names = [name for kind, name in recorder.events if kind != "read"]
    assert names == ["model-00001-of-00002.safetensors"] * 2 + ["model-00002-of-00002.safetensors"] * 2
    assert kinds[0] == "open" and kinds[-1] == "close" and kinds.count("read") == 17
    assert recorder.most_open == 1  # one shard at a time
    # Each tensor is converted and put in place before the next is read: at most the previous raw tensor is still
    # referenced when a new one is read, never the whole checkpoint (17 tensors).
    assert recorder.most_alive <= 1
    assert sum(ref() is not None for ref in recorder.alive) <= 1

    reference = dict(base_model.named_parameters())
    assert all(torch.equal(p, reference[name]) for name, p in model.named_parameters())
    assert not any(p.is_meta for p in model.parameters())


@pytest.mark.fixture
@pytest.mark.slow
def test_incomplete_checkpoint_is_an_error(two_shards: Path) -> None:
    index = json.loads((two_shards / "model.safetensors.index.json").read_text(encoding="utf-8"))
    index["weight_map"] = {k: v for k, v in index["weight_map"].items() if v.startswith("model-00002")}
    (two_shards / "model.safetensors.index.json").write_text(json.dumps(index), encoding="utf-8")
    with pytest.raises(ModelError, match="lacks 10 tensors"):
        load_internlm2_model(two_shards, torch.float32)
    (two_shards / "model-00002-of-00002.safetensors").unlink()
    with pytest.raises(ModelError, match="lacks weight shards"):
        load_internlm2_model(two_shards, torch.float32)


@pytest.mark.fixture
@pytest.mark.slow
def test_pytorch_bin_checkpoint(backbone: Path, base_model: Any, tmp_path: Path) -> None:
    for name in ("config.json", "generation_config.json"):
        shutil.copy(backbone / name, tmp_path / name)
    torch.save(load_file(backbone / "model.safetensors"), tmp_path / "pytorch_model.bin")
    model = load_internlm2_model(tmp_path, torch.float32)
    reference = dict(base_model.named_parameters())
    assert all(torch.equal(p, reference[name]) for name, p in model.named_parameters())


# --- the conversion cache under concurrent runs -----------------------------------------------------------------


def _prepare_in_a_process(home: str, backbone: str, start: Any, results: Any) -> None:
    """One run: wait until all are ready, prepare the backbone, report (path, how many conversions this run did)."""
    os.environ["B2NER_HOME"] = home
    import b2ner_cli.models.internlm2  # noqa: F401  (torch and the converter loaded before the race starts)
    from b2ner_cli.models.prepare import prepare
    from b2ner_cli.models.resolve import ModelSource

    notes: list[str] = []
    start.wait(120)
    path, _ = prepare(ModelSource(backbone, Path(backbone)), None, note=notes.append)
    results.put((str(path), sum(n.startswith("Converting") for n in notes)))


def test_concurrent_runs_convert_once_and_share_the_result(backbone: Path, tmp_path: Path) -> None:
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    start, results = context.Barrier(4), context.Queue()
    home = str(tmp_path / "home")
    workers = [context.Process(target=_prepare_in_a_process, args=(home, str(backbone), start, results))
               for _ in range(4)]  # fmt: skip
    for worker in workers:
        worker.start()
    outcomes = [results.get(timeout=240) for _ in workers]
    for worker in workers:
        worker.join(60)
        assert worker.exitcode == 0
    paths = {path for path, _ in outcomes}
    assert sum(converted for _, converted in outcomes) == 1, outcomes
    assert len(paths) == 1
    [converted] = paths
    assert (Path(converted) / "model.safetensors").is_file()
    leftovers = sorted(p.name for p in Path(converted).parent.iterdir())
    assert leftovers == sorted([Path(converted).name, Path(converted).name + ".lock"])  # no temporary folder left


def test_disk_full_during_conversion_gives_the_disk_hint_and_leaves_nothing(
    backbone: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import safetensors.torch
    from safetensors import SafetensorError

    from b2ner_cli.models.prepare import prepare
    from b2ner_cli.models.resolve import ModelSource

    def full(*args: Any, **kwargs: Any) -> None:  # what safetensors raises when the disk fills up
        raise SafetensorError("Error while serializing: IoError(Os { code: 28, kind: StorageFull, message: "
                              '"No space left on device" })')  # fmt: skip

    monkeypatch.setenv("B2NER_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(safetensors.torch, "save_file", full)
    with pytest.raises(ModelError) as caught:
        prepare(ModelSource(str(backbone), backbone), None, note=lambda _: None)
    assert caught.value.message.startswith("No space left to write the converted model to ")
    assert caught.value.hint and caught.value.hint.startswith("Free disk space there, or point B2NER_HOME at")
    assert [p.suffix for p in (tmp_path / "home" / "converted").iterdir()] == [".lock"]  # no temporary folder left
