"""Where and how a model is loaded: device, dtype, 4-bit fallback, multi-GPU maps. Pure decisions,
made from a parameter count and the hardware's free memory, before any weight is read."""

from __future__ import annotations

import json
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from ..errors import ModelError

GiB = 1024**3
Quantize = Literal["auto", "none", "8bit", "4bit"]
DtypeChoice = Literal["auto", "bfloat16", "float16", "float32"]
DeviceChoice = Literal["auto", "cpu", "cuda"]

_BYTES = {"F64": 8, "F32": 4, "BF16": 2, "F16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1}
_NOT_QUANTIZED = ("embed", "tok_embeddings", "lm_head", "output.weight", "wte", "wpe")
# Bits per parameter of a quantized linear weight, scales included (NF4 + double quant; int8 + row scales).
_QUANT_BITS = {"4bit": 4.13, "8bit": 8.25}
#: the CPU warning is for real models; tiny test models run fast anyway.
SLOW_CPU_PARAMS = 100_000_000


@dataclass(frozen=True)
class ParamCount:
    """Parameters split into those a 4/8-bit load quantizes (2-D linear weights) and the rest."""

    linear: int
    other: int

    @property
    def total(self) -> int:
        return self.linear + self.other

    def weight_bytes(self, dtype_bytes: float, quantize: str | None = None) -> int:
        if quantize in _QUANT_BITS:
            return int(self.linear * _QUANT_BITS[quantize] / 8 + self.other * dtype_bytes)
        return int(self.total * dtype_bytes)


@dataclass(frozen=True)
class Hardware:
    cuda: bool
    gpu_free: tuple[int, ...] = ()  # bytes free per visible GPU
    bf16: bool = True
    ram_available: int = 0
    gpu_names: tuple[str, ...] = ()


@dataclass(frozen=True)
class Plan:
    device: Literal["cuda", "cpu"]
    dtype: Literal["bfloat16", "float16", "float32"]
    quantize: Literal["4bit", "8bit"] | None
    #: None for a single device; else a per-device memory budget for accelerate's "auto" device map.
    max_memory: dict[int | str, int] | None
    needed_bytes: int
    notes: list[str] = field(default_factory=list)

    def describe(self) -> dict[str, object]:
        return {
            "device": self.device if self.max_memory is None else "cuda (spread over GPUs)",
            "dtype": self.dtype,
            "quantization": self.quantize and ("nf4 (double quant)" if self.quantize == "4bit" else "int8"),
            "estimated_memory_gib": round(self.needed_bytes / GiB, 2),
        }


def working_budget(weights: int) -> int:
    """Room beside the weights for activations and the KV cache of a batch."""
    return max(GiB, weights // 10)


def _gib(n: int) -> str:
    return f"{n / GiB:.1f} GiB"


def plan(
    params: ParamCount,
    hardware: Hardware,
    *,
    quantize: Quantize = "auto",
    device: DeviceChoice = "auto",
    dtype: DtypeChoice = "auto",
    max_memory: dict[int | str, int] | None = None,
    name: str = "The model",
) -> Plan:
    """Decide placement. Raises ModelError when the model cannot fit, with what to do instead."""
    if device == "cuda" and not hardware.cuda:
        raise ModelError("--device cuda was given but no CUDA GPU is visible.", "Use --device auto or --device cpu.")
    if hardware.cuda and device != "cpu":
        return _plan_gpu(params, hardware, quantize, dtype, max_memory, name)
    return _plan_cpu(params, hardware, quantize, dtype, name)


def _plan_gpu(
    params: ParamCount,
    hw: Hardware,
    quantize: Quantize,
    choice: DtypeChoice,
    max_memory: dict[int | str, int] | None,
    name: str,
) -> Plan:
    dtype: Literal["bfloat16", "float16", "float32"] = (
        ("bfloat16" if hw.bf16 else "float16") if choice == "auto" else choice
    )
    size = 4 if dtype == "float32" else 2
    budgets = [max_memory.get(i, 0) for i in range(len(hw.gpu_free))] if max_memory else list(hw.gpu_free)
    free = sum(budgets)

    def need(q: str | None) -> int:
        weights = params.weight_bytes(size, q)
        return weights + working_budget(weights)

    notes: list[str] = []
    if quantize == "auto":
        chosen: Literal["4bit", "8bit"] | None = None
        if need(None) > free:
            if need("4bit") > free:
                raise ModelError(
                    f"{name} needs about {_gib(need('4bit'))} of GPU memory even in 4-bit; "
                    f"the GPUs have {_gib(free)} free.",
                    "Free GPU memory, use a smaller model (b2ner-7b), or run on CPU with --device cpu.",
                )
            chosen = "4bit"
            notes.append(
                f"{dtype} needs about {_gib(need(None))} but the GPUs have {_gib(free)} free: "
                "loading in 4-bit NF4 (double quant, bf16 compute). --quantize none to refuse."
            )
    else:
        chosen = None if quantize == "none" else quantize
        if need(chosen) > free:
            raise ModelError(
                f"{name} needs about {_gib(need(chosen))} of GPU memory as "
                f"{chosen or dtype}; the GPUs have {_gib(free)} free.",
                "Use --quantize auto to fall back to 4-bit, free GPU memory, or set --max-memory.",
            )
    needed = need(chosen)
    spread: dict[int | str, int] | None = None
    if len(budgets) > 1 and needed > budgets[0]:
        # accelerate fills GPUs in order; leave each its share of the working budget.
        share = working_budget(params.weight_bytes(size, chosen)) // len(budgets)
        spread = {i: max(b - share, 0) for i, b in enumerate(budgets)}
        notes.append(f"spreading the model over {len(budgets)} GPUs")
    return Plan("cuda", dtype, chosen, spread, needed, notes)


def _plan_cpu(params: ParamCount, hw: Hardware, quantize: Quantize, choice: DtypeChoice, name: str) -> Plan:
    chosen: Literal["4bit", "8bit"] | None = quantize if quantize in ("4bit", "8bit") else None
    dtype: Literal["bfloat16", "float16", "float32"] = "float32" if choice == "auto" else choice
    weights = params.weight_bytes(4 if dtype == "float32" else 2, chosen)
    needed = weights + working_budget(weights)
    notes = []
    if params.total >= SLOW_CPU_PARAMS:
        notes.append(
            f"No CUDA GPU in use: running on CPU in {chosen or dtype}, which will be slow; "
            f"it needs about {_gib(needed)} of RAM."
        )
    if hw.ram_available and needed > hw.ram_available:
        raise ModelError(
            f"{name} needs about {_gib(needed)} of RAM on CPU in {chosen or dtype}; "
            f"this machine has {_gib(hw.ram_available)} available.",
            "Run on a machine with a GPU, or with more memory.",
        )
    return Plan("cpu", dtype, chosen, None, needed, notes)


def parse_max_memory(values: Sequence[str]) -> dict[int | str, int]:
    """``--max-memory 0=20GiB --max-memory 1=40GiB`` (GPU index or "cpu" = size in GiB/GB/MiB/MB)."""
    units = {"gib": GiB, "gb": 10**9, "mib": 1024**2, "mb": 10**6}
    result: dict[int | str, int] = {}
    for value in values:
        key, sep, size = value.partition("=")
        lowered = size.strip().lower()
        unit = next((u for u in units if lowered.endswith(u)), None)
        try:
            number = float(lowered[: -len(unit)] if unit else "x")
        except ValueError:
            number = -1
        if not sep or unit is None or number <= 0 or not (key.strip().isdigit() or key.strip() == "cpu"):
            from ..errors import UsageError

            raise UsageError(f"--max-memory {value}: expected DEVICE=SIZE such as 0=20GiB or cpu=64GiB.")
        result[int(key) if key.strip().isdigit() else "cpu"] = int(number * units[unit])
    return result


def count_parameters(model_dir: Path, config: dict[str, object]) -> ParamCount:
    """From safetensors headers (exact, no weights read), else an estimate from the config."""
    files = sorted(model_dir.glob("*.safetensors"))
    if files:
        linear = other = 0
        for tensor_name, shape in safetensors_shapes(files).items():
            n = 1
            for d in shape:
                n *= d
            if len(shape) == 2 and not any(k in tensor_name for k in _NOT_QUANTIZED):
                linear += n
            else:
                other += n
        return ParamCount(linear, other)
    return _estimate_from_config(config)


def safetensors_shapes(files: Sequence[Path]) -> dict[str, list[int]]:
    """Tensor name -> shape, from safetensors headers only (no weight is read)."""
    shapes: dict[str, list[int]] = {}
    for file in files:
        with open(file, "rb") as stream:
            (size,) = struct.unpack("<Q", stream.read(8))
            header = json.loads(stream.read(size))
        shapes.update({k: list(v["shape"]) for k, v in header.items() if k != "__metadata__"})
    return shapes


def _estimate_from_config(config: dict[str, object]) -> ParamCount:
    def get(*keys: str, default: int = 0) -> int:
        for key in keys:
            value = config.get(key)
            if isinstance(value, int):
                return value
        return default

    hidden = get("hidden_size", "n_embd", "d_model")
    layers = get("num_hidden_layers", "n_layer", "num_layers")
    inter = get("intermediate_size", "n_inner", default=4 * hidden)
    heads = get("num_attention_heads", "n_head", default=1)
    kv = get("num_key_value_heads", default=heads)
    vocab = get("vocab_size")
    head_dim = hidden // max(heads, 1)
    attention = hidden * heads * head_dim * 2 + hidden * kv * head_dim * 2
    linear = layers * (attention + 3 * hidden * inter)
    other = vocab * hidden * (1 if config.get("tie_word_embeddings") else 2) + (2 * layers + 1) * hidden
    return ParamCount(linear, other)


def kv_token_budget(free_bytes: int, config: dict[str, object], dtype_bytes: int) -> int:
    """A batch token budget (padded prompt tokens) from free device memory after loading.

    Each token held in a batch costs its key/value cache (2 x layers x kv heads x head dim x dtype bytes) plus
    working room (taken as 8 x hidden x dtype bytes); half the free memory is used, and half of that is left
    for the answers' tokens. Kept within [2048, 1048576].
    """

    def get(key: str, default: int) -> int:
        value = config.get(key)
        return value if isinstance(value, int) else default

    hidden = get("hidden_size", 4096)
    heads = get("num_attention_heads", 32)
    per_token = (
        2 * get("num_hidden_layers", 32) * get("num_key_value_heads", heads) * (hidden // heads) * dtype_bytes
        + 8 * hidden * dtype_bytes
    )
    return max(2048, min(1 << 20, int(free_bytes * 0.5 / per_token / 2)))
