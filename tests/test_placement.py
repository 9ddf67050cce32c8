"""Placement decisions from given free-memory figures (worked out by hand; no GPU needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from b2ner_cli.errors import ModelError, UsageError
from b2ner_cli.models.placement import GiB, Hardware, ParamCount, count_parameters, parse_max_memory, plan

# 3 Gi linear parameters + 1 Gi others (embeddings, head, norms) = 4 Gi parameters.
# bf16: 8 GiB of weights + a working budget of max(1 GiB, 8/10 GiB) = 1 GiB -> 9 GiB.
# 4-bit: 3 Gi * 4.13 / 8 = 1.54875 GiB + 1 Gi * 2 = 3.54875 GiB, + 1 GiB -> 4.54875 GiB.
# CPU float32: 16 GiB + 1.6 GiB -> 17.6 GiB.
PARAMS = ParamCount(linear=3 * GiB, other=GiB)
BF16_NEED = 9 * GiB
NF4_NEED = int(1.54875 * GiB + 2 * GiB) + GiB


def gpus(*free_gib: float, bf16: bool = True) -> Hardware:
    return Hardware(cuda=True, gpu_free=tuple(int(f * GiB) for f in free_gib), bf16=bf16, ram_available=64 * GiB)


def test_bf16_when_it_fits_on_one_gpu() -> None:
    p = plan(PARAMS, gpus(16))
    assert (p.device, p.dtype, p.quantize, p.max_memory, p.needed_bytes) == ("cuda", "bfloat16", None, None, BF16_NEED)
    assert p.notes == []


def test_float16_where_bf16_is_unsupported() -> None:
    assert plan(PARAMS, gpus(16, bf16=False)).dtype == "float16"


def test_falls_back_to_4bit_and_says_why() -> None:
    p = plan(PARAMS, gpus(8))
    assert p.quantize == "4bit" and p.needed_bytes == NF4_NEED
    assert p.notes == [
        "bfloat16 needs about 9.0 GiB but the GPUs have 8.0 GiB free: loading in 4-bit NF4 (double quant, "
        "bf16 compute). --quantize none to refuse."
    ]


def test_refuses_when_even_4bit_does_not_fit() -> None:
    with pytest.raises(ModelError, match=r"needs about 4\.5 GiB of GPU memory even in 4-bit; the GPUs have 4\.0 GiB"):
        plan(PARAMS, gpus(4), name="b2ner-7b")


def test_quantize_none_refuses_instead_of_falling_back() -> None:
    with pytest.raises(ModelError, match=r"needs about 9\.0 GiB of GPU memory as bfloat16; the GPUs have 8\.0 GiB"):
        plan(PARAMS, gpus(8), quantize="none")


def test_forced_4bit_even_when_bf16_fits() -> None:
    assert plan(PARAMS, gpus(80), quantize="4bit").quantize == "4bit"


def test_spreads_over_gpus_when_one_is_not_enough() -> None:
    # 9 GiB needed > 6 GiB on GPU 0, 12 GiB in all: spread; each GPU keeps half the 1 GiB working budget.
    p = plan(PARAMS, gpus(6, 6))
    assert p.quantize is None
    assert p.max_memory == {0: int(5.5 * GiB), 1: int(5.5 * GiB)}


def test_stays_on_one_gpu_when_it_fits_there() -> None:
    assert plan(PARAMS, gpus(40, 40)).max_memory is None


def test_max_memory_overrides_free_memory() -> None:
    p = plan(PARAMS, gpus(40, 40), max_memory={0: 5 * GiB, 1: 5 * GiB})
    assert p.max_memory == {0: int(4.5 * GiB), 1: int(4.5 * GiB)}


def test_cpu_float32_with_a_slow_warning_and_memory_estimate() -> None:
    p = plan(PARAMS, Hardware(cuda=False, ram_available=64 * GiB))
    assert (p.device, p.dtype, p.quantize, p.needed_bytes) == ("cpu", "float32", None, int(17.6 * GiB))
    assert p.notes == [
        "No CUDA GPU in use: running on CPU in float32, which will be slow; it needs about 17.6 GiB of RAM."
    ]


def test_cpu_bf16_when_asked() -> None:
    p = plan(PARAMS, Hardware(cuda=False, ram_available=64 * GiB), dtype="bfloat16")
    assert p.dtype == "bfloat16" and p.needed_bytes == 9 * GiB


def test_cpu_refuses_early_without_enough_ram() -> None:
    with pytest.raises(ModelError, match=r"needs about 17\.6 GiB of RAM on CPU in float32; this machine has 8\.0 GiB"):
        plan(PARAMS, Hardware(cuda=False, ram_available=8 * GiB))


def test_device_cpu_ignores_the_gpu() -> None:
    assert plan(PARAMS, gpus(80), device="cpu").device == "cpu"


def test_device_cuda_without_a_gpu() -> None:
    with pytest.raises(ModelError, match="no CUDA GPU is visible"):
        plan(PARAMS, Hardware(cuda=False, ram_available=64 * GiB), device="cuda")


def test_small_models_get_no_slow_warning() -> None:
    assert plan(ParamCount(1000, 1000), Hardware(cuda=False, ram_available=2 * GiB)).notes == []


def test_parse_max_memory() -> None:
    assert parse_max_memory(["0=20GiB", "1=500MB", "cpu=1.5GiB"]) == {
        0: 20 * GiB,
        1: 500 * 10**6,
        "cpu": int(1.5 * GiB),
    }
    for bad in ("20GiB", "0=20", "x=1GiB", "0=-1GiB"):
        with pytest.raises(UsageError, match="expected DEVICE=SIZE"):
            parse_max_memory([bad])


def test_count_parameters_from_safetensors_headers(tmp_path: Path) -> None:
    import torch
    from safetensors.torch import save_file

    save_file(
        {
            "model.embed_tokens.weight": torch.zeros(10, 4),
            "model.layers.0.self_attn.q_proj.weight": torch.zeros(4, 4),
            "model.layers.0.mlp.up_proj.weight": torch.zeros(6, 4),
            "model.norm.weight": torch.zeros(4),
            "lm_head.weight": torch.zeros(10, 4),
        },
        str(tmp_path / "model.safetensors"),
    )
    # linear: 16 + 24 = 40; other: 40 (embeddings) + 4 (norm) + 40 (head) = 84
    assert count_parameters(tmp_path, {}) == ParamCount(linear=40, other=84)


def test_count_parameters_from_config_when_no_safetensors(tmp_path: Path) -> None:
    config = {
        "hidden_size": 8,
        "num_hidden_layers": 2,
        "intermediate_size": 16,
        "num_attention_heads": 2,
        "num_key_value_heads": 1,
        "vocab_size": 100,
    }
    # head_dim 4; attention per layer: q 8*8 + o 8*8 + k 8*4 + v 8*4 = 192; mlp 3*8*16 = 384 -> 576 * 2 = 1152
    # other: embed + head 2*100*8 = 1600, norms (2*2+1)*8 = 40
    assert count_parameters(tmp_path, config) == ParamCount(linear=1152, other=1640)


def test_kv_token_budget_from_free_memory() -> None:
    from b2ner_cli.models.placement import kv_token_budget

    config = {"hidden_size": 4096, "num_attention_heads": 32, "num_key_value_heads": 8, "num_hidden_layers": 32}
    # per token: K and V, 32 layers x 8 heads x 128 dims x 2 bytes = 131,072, + 8 x 4096 x 2 = 65,536 -> 196,608
    # 20 GiB free: half of it, halved again for the answers: 21,474,836,480 * 0.5 / 196,608 / 2 = 27,306.7
    assert kv_token_budget(20 * GiB, config, 2) == 27306
    assert kv_token_budget(0, config, 2) == 2048  # never below the floor
    assert kv_token_budget(10**15, config, 2) == 1 << 20  # nor above the ceiling
