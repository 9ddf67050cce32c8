"""InternLM2 / InternLM2.5 checkpoints on transformers' own Llama, without Hub remote code.

InternLM2 is a Llama variant: the same pre-norm blocks, SwiGLU MLP, rotate-half RoPE and grouped-query attention.
Only the parameter names differ, and the query/key/value projections are fused into one ``wqkv`` matrix whose rows
are grouped per key/value head. This module

- maps an InternLM2 ``config.json`` onto a :class:`~transformers.LlamaConfig` (:func:`llama_config`);
- streams the safetensors (or ``.bin``) shards into a :class:`~transformers.LlamaForCausalLM` created without
  memory, one shard and one tensor at a time, renaming keys and splitting ``wqkv`` (:func:`load_internlm2_model`);
- builds the tokenizer from ``tokenizer.model`` alone (:func:`load_internlm2_tokenizer`);
- rewrites a PEFT LoRA adapter on ``wqkv`` into an equivalent one on ``q_proj``/``k_proj``/``v_proj``
  (:func:`convert_wqkv_lora`).

Nothing here executes code from the Hub (no ``trust_remote_code``). Heavy imports are at module level: this module
is only imported when an InternLM2 model is actually loaded.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from accelerate import init_empty_weights
from safetensors import safe_open
from safetensors.torch import save_file
from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM
from transformers.tokenization_utils_sentencepiece import SentencePieceBackend

from ..errors import AdapterError, ModelError

MODEL_TYPE = "internlm2"

# InternLM2 module paths inside a decoder layer -> Llama's, for every module except the fused wqkv.
_LAYER_MODULES = {
    "attention.wo": "self_attn.o_proj",
    "feed_forward.w1": "mlp.gate_proj",
    "feed_forward.w3": "mlp.up_proj",
    "feed_forward.w2": "mlp.down_proj",
    "attention_norm": "input_layernorm",
    "ffn_norm": "post_attention_layernorm",
}
_TOP_LEVEL = {
    "model.tok_embeddings.weight": "model.embed_tokens.weight",
    "model.norm.weight": "model.norm.weight",
    "output.weight": "lm_head.weight",
}
# PEFT target_modules names (last path component): InternLM2 -> Llama.
_TARGET_NAMES: dict[str, tuple[str, ...]] = {
    "wqkv": ("q_proj", "k_proj", "v_proj"),
    "wo": ("o_proj",),
    "w1": ("gate_proj",),
    "w3": ("up_proj",),
    "w2": ("down_proj",),
    "output": ("lm_head",),
    "tok_embeddings": ("embed_tokens",),
}
_QKV = ("q_proj", "k_proj", "v_proj")
_LAYER_KEY = re.compile(r"^model\.layers\.(\d+)\.(.+)\.(weight|bias)$")
_IGNORED_KEY = re.compile(r"(^|\.)rotary_emb\.inv_freq$")  # a buffer some old checkpoints saved; Llama recomputes it
_SAFETENSORS_INDEX = "model.safetensors.index.json"
_BIN_INDEX = "pytorch_model.bin.index.json"


def is_internlm2(config: Mapping[str, Any]) -> bool:
    """Whether a raw ``config.json`` describes an InternLM2 / InternLM2.5 model."""
    return str(config.get("model_type", "")).lower() == MODEL_TYPE


def read_config(path: Path) -> dict[str, Any]:
    """The raw ``config.json`` of a model directory, as a dict."""
    try:
        config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(f"Model directory {path} has an unreadable config.json ({exc}).") from None
    if not isinstance(config, dict):
        raise ModelError(f"Model directory {path} has a config.json that is not a JSON object.")
    return config


# --------------------------------------------------------------------------------------------------------------------
# Config


@dataclass(frozen=True)
class QKVLayout:
    """How InternLM2's fused ``wqkv`` rows are laid out.

    The rows form ``n_kv`` consecutive groups of ``(group + 2) * head_dim`` rows: inside group ``g`` come the
    ``group`` query heads ``g*group ... g*group+group-1``, then key head ``g``, then value head ``g``.
    """

    n_heads: int
    n_kv: int
    head_dim: int

    @property
    def group(self) -> int:
        return self.n_heads // self.n_kv

    @property
    def rows(self) -> int:
        return (self.n_heads + 2 * self.n_kv) * self.head_dim

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> QKVLayout:
        n_heads = int(config["num_attention_heads"])
        n_kv = int(config.get("num_key_value_heads") or n_heads)
        hidden = int(config["hidden_size"])
        if n_heads % n_kv or hidden % n_heads:
            raise ModelError(
                f"InternLM2 config is inconsistent: {n_heads} heads, {n_kv} key/value heads, hidden size {hidden}."
            )
        return cls(n_heads=n_heads, n_kv=n_kv, head_dim=hidden // n_heads)


def _rope_parameters(config: Mapping[str, Any]) -> dict[str, Any]:
    theta = float(config.get("rope_theta", 10000.0))
    scaling = config.get("rope_scaling")
    if not scaling:
        return {"rope_type": "default", "rope_theta": theta}
    if not isinstance(scaling, Mapping):
        raise ModelError(f"InternLM2 config has an unreadable rope_scaling: {scaling!r}.")
    kind = str(scaling.get("type") or scaling.get("rope_type") or "").lower()
    if kind not in ("linear", "dynamic"):
        raise ModelError(f"InternLM2 rope_scaling type {kind!r} is not supported (only linear and dynamic exist).")
    factor = float(scaling["factor"])
    # Llama's "dynamic" NTK scaling takes max_position_embeddings as the original length: below it the base is
    # exactly rope_theta, as in the reference. (Above it, the reference keeps the enlarged base for later, shorter
    # inputs while Llama resets it; nothing a B2NER prompt reaches: the published configs say 32768 tokens.)
    return {"rope_type": kind, "rope_theta": theta, "factor": factor}


def llama_config(config: Mapping[str, Any]) -> LlamaConfig:
    """The :class:`LlamaConfig` that runs an InternLM2 checkpoint exactly (untied head, bias only in attention)."""
    if not is_internlm2(config):
        raise ModelError(f"Not an InternLM2 config (model_type {config.get('model_type')!r}).")
    layout = QKVLayout.from_config(config)
    act = str(config.get("hidden_act", "silu"))
    eos = config.get("eos_token_id", 2)
    return LlamaConfig(
        vocab_size=int(config["vocab_size"]),
        hidden_size=int(config["hidden_size"]),
        intermediate_size=int(config["intermediate_size"]),
        num_hidden_layers=int(config["num_hidden_layers"]),
        num_attention_heads=layout.n_heads,
        num_key_value_heads=layout.n_kv,
        head_dim=layout.head_dim,
        hidden_act=act,
        max_position_embeddings=int(config.get("max_position_embeddings", 2048)),
        rms_norm_eps=float(config.get("rms_norm_eps", 1e-6)),
        rope_parameters=_rope_parameters(config),
        attention_bias=bool(config.get("bias", False)),
        mlp_bias=False,
        tie_word_embeddings=False,
        bos_token_id=config.get("bos_token_id", 1),
        eos_token_id=eos,
        pad_token_id=config.get("pad_token_id", 2),
        use_cache=True,
        architectures=["LlamaForCausalLM"],
    )


# --------------------------------------------------------------------------------------------------------------------
# Weights


def split_wqkv(tensor: torch.Tensor, layout: QKVLayout) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Split fused ``wqkv`` rows (a weight, a bias, or a LoRA B matrix: rows first) into q, k and v rows."""
    if tensor.shape[0] != layout.rows:
        raise ModelError(
            f"wqkv has {tensor.shape[0]} rows; {layout.n_heads} heads and {layout.n_kv} key/value heads of size "
            f"{layout.head_dim} need {layout.rows}."
        )
    rest = tuple(tensor.shape[1:])
    grouped = tensor.reshape(layout.n_kv, layout.group + 2, layout.head_dim, *rest)
    q = grouped[:, : layout.group].reshape(layout.n_heads * layout.head_dim, *rest).contiguous()
    k = grouped[:, layout.group].reshape(layout.n_kv * layout.head_dim, *rest).contiguous()
    v = grouped[:, layout.group + 1].reshape(layout.n_kv * layout.head_dim, *rest).contiguous()
    return q, k, v


def convert_tensor(key: str, tensor: torch.Tensor, layout: QKVLayout) -> list[tuple[str, torch.Tensor]]:
    """One InternLM2 state-dict entry as the Llama entries it becomes (three for ``wqkv``, none for ignored keys)."""
    if key in _TOP_LEVEL:
        return [(_TOP_LEVEL[key], tensor)]
    if _IGNORED_KEY.search(key):
        return []
    match = _LAYER_KEY.match(key)
    if match:
        layer, module, kind = match.groups()
        prefix = f"model.layers.{layer}"
        if module == "attention.wqkv":
            parts = split_wqkv(tensor, layout)
            return [(f"{prefix}.self_attn.{name}.{kind}", part) for name, part in zip(_QKV, parts, strict=True)]
        if module in _LAYER_MODULES:
            return [(f"{prefix}.{_LAYER_MODULES[module]}.{kind}", tensor)]
    raise ModelError(f"Unexpected tensor `{key}` in an InternLM2 checkpoint.")


def weight_files(path: Path) -> list[Path]:
    """The checkpoint's weight files in load order: safetensors preferred, then PyTorch ``.bin``."""
    for index_name in (_SAFETENSORS_INDEX, _BIN_INDEX):
        index = path / index_name
        if index.is_file():
            try:
                weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
            except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as exc:
                raise ModelError(f"Model directory {path} has an unreadable {index_name} ({exc}).") from None
            files = [path / name for name in dict.fromkeys(weight_map.values())]
            missing = [f.name for f in files if not f.is_file()]
            if missing:
                raise ModelError(
                    f"Model directory {path} lacks weight shards listed in {index_name}: {', '.join(missing)}.",
                    "The download is incomplete; download the model again.",
                )
            return files
    for single in ("model.safetensors", "pytorch_model.bin"):
        if (path / single).is_file():
            return [path / single]
    raise ModelError(
        f"Model directory {path} has no weights (model.safetensors, {_SAFETENSORS_INDEX} or pytorch_model.bin)."
    )


def iter_checkpoint(files: list[Path]) -> Iterator[tuple[str, torch.Tensor]]:
    """(key, tensor) pairs, shard after shard, reading each tensor only when it is asked for.

    A safetensors shard is memory-mapped and one tensor is materialised at a time; a ``.bin`` shard is
    memory-mapped by ``torch.load(mmap=True)``. Only one shard is open at any time.
    """
    for file in files:
        if file.suffix == ".safetensors":
            with safe_open(str(file), framework="pt", device="cpu") as shard:
                for key in shard.keys():  # noqa: SIM118 (a safetensors handle is not a dict)
                    yield key, shard.get_tensor(key)
        else:
            state = torch.load(str(file), map_location="cpu", mmap=True, weights_only=True)
            keys = list(state)
            for key in keys:
                yield key, state.pop(key)
            del state


def iter_llama_tensors(path: Path, config: Mapping[str, Any]) -> Iterator[tuple[str, torch.Tensor]]:
    """The checkpoint under ``path`` as Llama (name, tensor) pairs, streamed shard by shard."""
    layout = QKVLayout.from_config(config)
    for key, tensor in iter_checkpoint(weight_files(path)):
        yield from convert_tensor(key, tensor, layout)


def _place(model: torch.nn.Module, name: str, value: torch.Tensor) -> None:
    module_name, _, attr = name.rpartition(".")
    try:
        module = model.get_submodule(module_name)
    except AttributeError:
        raise ModelError(f"The InternLM2 checkpoint has `{name}`, which the model config does not describe.") from None
    current = module._parameters.get(attr)
    if current is None:
        raise ModelError(f"The InternLM2 checkpoint has `{name}`, which the model config does not describe.")
    if tuple(current.shape) != tuple(value.shape):
        raise ModelError(
            f"The InternLM2 checkpoint's `{name}` has shape {tuple(value.shape)}; the config implies "
            f"{tuple(current.shape)}."
        )
    module._parameters[attr] = torch.nn.Parameter(value, requires_grad=current.requires_grad)


def generation_config(path: Path, config: Mapping[str, Any]) -> GenerationConfig:
    """Greedy defaults with the checkpoint's end-of-sequence ids (``generation_config.json`` first)."""
    values: dict[str, Any] = {}
    file = path / "generation_config.json"
    if file.is_file():
        try:
            loaded = json.loads(file.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ModelError(f"Model directory {path} has an unreadable generation_config.json ({exc}).") from None
        if isinstance(loaded, dict):
            values = loaded
    eos = values.get("eos_token_id", config.get("eos_token_id", 2))
    pad = values.get("pad_token_id", config.get("pad_token_id"))
    if pad is None:
        pad = eos[0] if isinstance(eos, list) else eos
    return GenerationConfig(
        bos_token_id=values.get("bos_token_id", config.get("bos_token_id", 1)),
        eos_token_id=eos,
        pad_token_id=pad,
        do_sample=False,
        num_beams=1,
    )


def _round_rope_frequencies(model: LlamaForCausalLM, dtype: torch.dtype) -> None:
    """Round the RoPE inverse frequencies to ``dtype`` (they stay stored, and used, in float32)."""
    rotary = model.model.rotary_emb
    for name in ("inv_freq", "original_inv_freq"):
        buffer = getattr(rotary, name, None)
        if isinstance(buffer, torch.Tensor):
            buffer.copy_(buffer.to(dtype).to(buffer.dtype))


def load_internlm2_model(
    path: Path, dtype: torch.dtype, device: str = "cpu", *, rope_rounding: torch.dtype | None = None
) -> LlamaForCausalLM:
    """An InternLM2 checkpoint directory as a :class:`LlamaForCausalLM` in ``dtype`` on ``device``, in eval mode.

    The model is created without memory (parameters on the meta device), then each checkpoint tensor is read,
    renamed (``wqkv`` split), converted to ``dtype``, moved to ``device`` and put in place before the next one is
    read, so peak CPU memory stays near one copy of the model plus one tensor.

    RoPE frequencies are float32, as in the reference code loaded in float32 (the conformance fixture's reference
    for backbone + adapter). ``rope_rounding=torch.bfloat16`` rounds them to bf16 first, as the reference code does
    when a loading path casts its ``inv_freq`` buffer to the checkpoint's dtype (the fixture's backbone-only
    reference was computed that way: its logits differ from float32 frequencies by about 2e-3).
    """
    raw = read_config(path)
    config = llama_config(raw)
    with init_empty_weights(include_buffers=False):  # rotary buffers stay real: they are computed, not loaded
        model = LlamaForCausalLM(config)
    pending = {name for name, _ in model.named_parameters()}
    for name, tensor in iter_llama_tensors(path, raw):
        if name not in pending:
            raise ModelError(f"The InternLM2 checkpoint in {path} has `{name}` twice or for no parameter.")
        _place(model, name, tensor.to(device=device, dtype=dtype))
        pending.discard(name)
        del tensor
    if pending:
        raise ModelError(
            f"The InternLM2 checkpoint in {path} lacks {len(pending)} tensors (e.g. `{min(pending)}`).",
            "The download is incomplete; download the model again.",
        )
    if rope_rounding is not None:
        _round_rope_frequencies(model, rope_rounding)
    torch.nn.Module.to(model, torch.device(device))  # the rotary buffers (the parameters are there already)
    model.config.dtype = dtype
    model.generation_config = generation_config(path, raw)
    model.eval()
    return model


# --------------------------------------------------------------------------------------------------------------------
# Tokenizer


class InternLM2Tokenizer(SentencePieceBackend):
    """InternLM2's SentencePiece tokenizer without remote code: ids come from ``tokenizer.model`` itself.

    The SentencePiece model has no dummy prefix and an identity normaliser, so text is encoded as it is. The special
    tokens ``<unk>``/``<s>``/``</s>`` written literally in the text become their ids; no BOS or EOS is ever added
    (InternLM2's ``add_bos_token=False``). Decoding keeps every space and does no clean-up.
    """

    vocab_files_names = {"vocab_file": "tokenizer.model"}  # noqa: RUF012 (transformers' class attribute)
    model_input_names = ["input_ids", "attention_mask"]  # noqa: RUF012

    def __init__(
        self,
        vocab_file: str,
        unk_token: str = "<unk>",
        bos_token: str = "<s>",
        eos_token: str = "</s>",
        pad_token: str | None = "</s>",
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("clean_up_tokenization_spaces", False)
        kwargs["legacy"] = True  # encode each text segment as is (no dummy-prefix workaround)
        super().__init__(
            vocab_file=vocab_file,
            unk_token=unk_token,
            bos_token=bos_token,
            eos_token=eos_token,
            pad_token=pad_token,
            **kwargs,
        )

    def _tokenize(self, text: str, **kwargs: Any) -> list[str]:
        pieces: list[str] = self.sp_model.encode(text, out_type=str)
        return pieces

    def convert_tokens_to_string(self, tokens: list[str]) -> str:
        literal = set(self.all_special_tokens) | set(self._added_tokens_encoder)
        out: list[str] = []
        run: list[str] = []
        for token in tokens:
            if token in literal:
                if run:
                    out.append(self.sp_model.decode_pieces(run))
                    run = []
                out.append(token)
            else:
                run.append(token)
        if run:
            out.append(self.sp_model.decode_pieces(run))
        return "".join(out)


def _token_text(value: Any, default: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping) and isinstance(value.get("content"), str):
        return str(value["content"])
    return default


@contextmanager
def _native_stderr_silenced() -> Iterator[None]:
    """Keep C++ log lines off stderr: SentencePiece warns about InternLM2's NUL piece (id 354) on every load."""
    sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:  # no file descriptor 2 at all
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def load_internlm2_tokenizer(path: Path) -> InternLM2Tokenizer:
    """The tokenizer of an InternLM2 model directory, built from its ``tokenizer.model`` (pad = ``</s>``)."""
    model_file = path / "tokenizer.model"
    if not model_file.is_file():
        raise ModelError(
            f"Model directory {path} has no tokenizer.model.",
            "InternLM2 models ship their SentencePiece tokenizer as tokenizer.model; download the model again.",
        )
    settings: dict[str, Any] = {}
    config_file = path / "tokenizer_config.json"
    if config_file.is_file():
        try:
            loaded = json.loads(config_file.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            loaded = {}
        settings = loaded if isinstance(loaded, dict) else {}
    eos = _token_text(settings.get("eos_token"), "</s>")
    try:
        with _native_stderr_silenced():
            return InternLM2Tokenizer(
                vocab_file=str(model_file),
                unk_token=_token_text(settings.get("unk_token"), "<unk>"),
                bos_token=_token_text(settings.get("bos_token"), "<s>"),
                eos_token=eos,
                pad_token=_token_text(settings.get("pad_token"), eos),
            )
    except (OSError, RuntimeError) as exc:
        raise ModelError(f"Model directory {path} has an unreadable tokenizer.model ({exc}).") from None


# --------------------------------------------------------------------------------------------------------------------
# LoRA adapter


_ADAPTER_KEY = re.compile(
    r"^(?P<prefix>.*?)(?P<module>model\.layers\.\d+\.[\w.]+?|model\.tok_embeddings|output)\.(?P<rest>lora_.+)$"
)


def _adapter_key_targets(module: str) -> list[str] | None:
    """Llama module paths for an InternLM2 module path (``model.layers.3.attention.wqkv`` -> q/k/v), else None."""
    if module == "output":
        return ["lm_head"]
    if module == "model.tok_embeddings":
        return ["model.embed_tokens"]
    match = re.match(r"^model\.layers\.(\d+)\.(.+)$", module)
    if not match:
        return None
    layer, inner = match.groups()
    if inner == "attention.wqkv":
        return [f"model.layers.{layer}.self_attn.{name}" for name in _QKV]
    if inner in _LAYER_MODULES:
        return [f"model.layers.{layer}.{_LAYER_MODULES[inner]}"]
    return None


def _rename_targets(targets: Any) -> list[str]:
    names = [targets] if isinstance(targets, str) else list(targets or [])
    out: list[str] = []
    for name in names:
        if name not in _TARGET_NAMES:
            raise AdapterError(f"LoRA target module `{name}` is not a module of InternLM2 that can be converted.")
        out.extend(_TARGET_NAMES[name])
    return list(dict.fromkeys(out))


def _rename_pattern(pattern: Any) -> dict[str, Any]:
    """rank_pattern / alpha_pattern keys (module names or paths) renamed like the modules themselves."""
    out: dict[str, Any] = {}
    for key, value in dict(pattern or {}).items():
        if key in _TARGET_NAMES:
            out.update(dict.fromkeys(_TARGET_NAMES[key], value))
            continue
        converted = None
        for internlm, llama in (("attention.wqkv", None), *_LAYER_MODULES.items()):
            if key.endswith(internlm):
                base = key[: -len(internlm)]
                names = [f"self_attn.{n}" for n in _QKV] if llama is None else [llama]
                converted = {base + name: value for name in names}
                break
        if converted is None:
            raise AdapterError(f"LoRA rank/alpha pattern `{key}` cannot be converted to Llama module names.")
        out.update(converted)
    return out


def _read_adapter(adapter_dir: Path) -> dict[str, torch.Tensor]:
    file = adapter_dir / "adapter_model.safetensors"
    if file.is_file():
        tensors: dict[str, torch.Tensor] = {}
        with safe_open(str(file), framework="pt", device="cpu") as handle:
            for key in handle.keys():  # noqa: SIM118 (a safetensors handle is not a dict)
                tensors[key] = handle.get_tensor(key)
        return tensors
    file = adapter_dir / "adapter_model.bin"
    if file.is_file():
        loaded = torch.load(str(file), map_location="cpu", weights_only=True)
        return dict(loaded)
    raise AdapterError(f"Adapter directory {adapter_dir} has no adapter_model.safetensors or adapter_model.bin.")


def convert_wqkv_lora(adapter_dir: Path, config: Mapping[str, Any], out_dir: Path) -> Path:
    """Rewrite a PEFT LoRA adapter made for InternLM2 into the equivalent adapter for the Llama layout.

    ``config`` is the backbone's raw InternLM2 ``config.json``. A LoRA on ``wqkv`` adds ``B @ A`` (times
    ``alpha / r``); q, k and v each get the same A and the rows of B that belong to them in the grouped ``wqkv``
    order, with the same r and alpha. Other InternLM2 modules are renamed. Tensors keep their stored dtype.
    ``adapter_config.json`` keeps everything (``base_model_name_or_path`` too) but names the Llama modules.
    Returns ``out_dir``.
    """
    try:
        adapter_config = json.loads((adapter_dir / "adapter_config.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise AdapterError(f"Adapter directory {adapter_dir} has an unreadable adapter_config.json ({exc}).") from None
    if not isinstance(adapter_config, dict) or str(adapter_config.get("peft_type", "")).upper() != "LORA":
        raise AdapterError(f"Adapter {adapter_dir} is not a PEFT LoRA adapter; only LoRA adapters can be converted.")
    if adapter_config.get("use_dora"):
        raise AdapterError(f"Adapter {adapter_dir} is a DoRA adapter; only plain LoRA on InternLM2 can be converted.")
    if adapter_config.get("modules_to_save"):
        raise AdapterError(f"Adapter {adapter_dir} saves whole modules (modules_to_save); this cannot be converted.")
    if adapter_config.get("bias", "none") != "none":
        raise AdapterError(f"Adapter {adapter_dir} trains biases (bias={adapter_config['bias']!r}); not convertible.")
    targets = adapter_config.get("target_modules")
    if isinstance(targets, str) and targets not in _TARGET_NAMES:
        raise AdapterError(f"Adapter {adapter_dir} selects modules by a pattern ({targets!r}); it cannot be converted.")

    layout = QKVLayout.from_config(config)
    converted: dict[str, torch.Tensor] = {}
    for key, tensor in _read_adapter(adapter_dir).items():
        match = _ADAPTER_KEY.match(key)
        modules = _adapter_key_targets(match["module"]) if match else None
        if match is None or modules is None:
            raise AdapterError(f"Adapter tensor `{key}` does not belong to an InternLM2 module that can be converted.")
        prefix, rest = match["prefix"], match["rest"]
        if len(modules) == 3:  # wqkv: A is shared, B's rows are split (lora_B has rows first, like the weight)
            if rest.startswith("lora_A"):
                parts = (tensor.clone(), tensor.clone(), tensor.clone())
            elif rest.startswith("lora_B"):
                parts = split_wqkv(tensor, layout)
            else:
                raise AdapterError(f"Adapter tensor `{key}` is not a LoRA A or B matrix; it cannot be converted.")
            for module, part in zip(modules, parts, strict=True):
                converted[f"{prefix}{module}.{rest}"] = part.contiguous()
        else:
            converted[f"{prefix}{modules[0]}.{rest}"] = tensor.contiguous()

    new_config = dict(adapter_config)
    new_config["target_modules"] = _rename_targets(targets)
    for field in ("rank_pattern", "alpha_pattern"):
        if adapter_config.get(field):
            new_config[field] = _rename_pattern(adapter_config[field])
    out_dir.mkdir(parents=True, exist_ok=True)
    save_file(converted, str(out_dir / "adapter_model.safetensors"), metadata={"format": "pt"})
    (out_dir / "adapter_config.json").write_text(json.dumps(new_config, indent=2) + "\n", encoding="utf-8")
    return out_dir
