"""Load a backbone (+ LoRA adapter) and its tokenizer, placed per :mod:`placement`."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import AdapterError, ModelError
from . import placement
from .hub import looks_like_repo_id
from .placement import Hardware, Plan, safetensors_shapes
from .resolve import ModelSource, Resolved, read_json, resolve_spec
from .spec import ModelSpec

Note = Callable[[str], None]


@dataclass
class LoadedModel:
    model: Any
    tokenizer: Any
    resolved: Resolved
    plan: Plan
    merged: bool = False

    def info(self) -> dict[str, object]:
        backbone, adapter = self.resolved.backbone, self.resolved.adapter
        return {
            "backbone": backbone.ref,
            "backbone_repo": backbone.repo_id,
            "backbone_revision": backbone.revision,
            "backbone_path": str(backbone.path),
            "adapter": adapter.ref if adapter else None,
            "adapter_repo": adapter.repo_id if adapter else None,
            "adapter_revision": adapter.revision if adapter else None,
            "adapter_path": str(adapter.path) if adapter else None,
            "adapter_merged": self.merged,
            **self.plan.describe(),
        }


def quiet_library_logs() -> None:
    """Library chatter (bitsandbytes' optional CPU kernels, transformers' notices) stays off stderr."""
    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)
    for category in (FutureWarning, DeprecationWarning):
        warnings.filterwarnings("ignore", category=category, module=r"(transformers|peft|torch|accelerate)(\.|$)")
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def detect_hardware() -> Hardware:
    import psutil
    import torch

    ram = int(psutil.virtual_memory().available)
    if not torch.cuda.is_available():
        return Hardware(cuda=False, ram_available=ram)
    count = torch.cuda.device_count()
    return Hardware(
        cuda=True,
        gpu_free=tuple(int(torch.cuda.mem_get_info(i)[0]) for i in range(count)),
        bf16=bool(torch.cuda.is_bf16_supported()),
        ram_available=ram,
        gpu_names=tuple(torch.cuda.get_device_name(i) for i in range(count)),
    )


def load_tokenizer(source: ModelSource, path: Path | None = None, trust_remote_code: bool = False) -> Any:
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(path or source.path), trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as exc:
        raise ModelError(
            f"Model `{source.ref}` has no usable tokenizer ({str(exc).splitlines()[0]}).",
            "The model directory needs its tokenizer files (tokenizer.json or tokenizer.model).",
        ) from None


@dataclass
class Located:
    """A model resolved, planned and converted, its tokenizer loaded; the weights not yet read."""

    resolved: Resolved
    plan: Plan
    #: the folder the weights load from (the Llama-layout conversion of an InternLM2 checkpoint).
    weights_dir: Path
    #: the adapter folder to attach (its converted copy for an InternLM2 adapter), or None.
    adapter_dir: Path | None
    tokenizer: Any

    def info(self) -> dict[str, object]:
        return LoadedModel(None, self.tokenizer, self.resolved, self.plan).info()


def locate(spec: ModelSpec, *, quiet: bool = False, note: Note | None = None,
           hardware: Hardware | None = None) -> Located:  # fmt: skip
    """Resolve, check, plan and convert a backbone and its adapter, and load the tokenizer: all but the weights
    (which :func:`load` reads, and an engine such as vLLM may read itself)."""
    note = note or (lambda _: None)
    quiet_library_logs()
    resolved = resolve_spec(spec, quiet=quiet)
    backbone = resolved.backbone
    config = read_json(backbone, "config.json")
    # Plan first (from safetensors headers or the config): refuse before any conversion or weight read.
    params = placement.count_parameters(backbone.path, config)
    chosen = placement.plan(
        params, hardware or detect_hardware(), quantize=spec.quantize, device=spec.device, dtype=spec.dtype,
        max_memory=spec.max_memory_dict(), name=f"Model `{backbone.ref}`",
    )  # fmt: skip
    for line in chosen.notes:
        note(line)
    weights_dir, adapter_dir = backbone.path, resolved.adapter.path if resolved.adapter else None
    internlm2 = config.get("model_type") == "internlm2" and not spec.trust_remote_code
    if internlm2:
        from .prepare import prepare

        weights_dir, adapter_dir = prepare(backbone, resolved.adapter, note=note)
    if resolved.adapter is not None and adapter_dir is not None:
        check_adapter_fits(resolved.adapter, adapter_dir, backbone, weights_dir, note)
    if internlm2:
        from .internlm2 import load_internlm2_tokenizer

        tokenizer = load_internlm2_tokenizer(backbone.path)
    else:
        tokenizer = load_tokenizer(backbone, weights_dir, spec.trust_remote_code)
    return Located(resolved, chosen, weights_dir, adapter_dir, tokenizer)


def load(
    spec: ModelSpec,
    *,
    trainable: bool = False,
    quiet: bool = False,
    note: Note | None = None,
    hardware: Hardware | None = None,
) -> LoadedModel:
    """Resolve, check, place and load a backbone with its adapter. ``note`` receives stderr-worthy notes."""
    located = locate(spec, quiet=quiet, note=note, hardware=hardware)
    note = note or (lambda _: None)
    resolved, chosen, tokenizer = located.resolved, located.plan, located.tokenizer
    backbone, weights_dir, adapter_dir = resolved.backbone, located.weights_dir, located.adapter_dir
    loaded = _load_weights(backbone, weights_dir, chosen, spec.trust_remote_code)
    if trainable and chosen.quantize is not None:
        from peft import prepare_model_for_kbit_training

        loaded = prepare_model_for_kbit_training(loaded, use_gradient_checkpointing=False)
    merged = False
    if resolved.adapter is not None and adapter_dir is not None:
        loaded = attach_adapter(loaded, resolved.adapter, adapter_dir, backbone, trainable=trainable)
        merge = spec.merge if spec.merge is not None else should_merge(chosen, trainable)
        if merge and chosen.quantize is None:
            loaded, merged = loaded.merge_and_unload(), True
        elif spec.merge:
            note("--merge ignored: a quantized model keeps its adapter separate.")
    if not trainable:
        loaded.eval()
    return LoadedModel(loaded, tokenizer, resolved, chosen, merged)


def should_merge(plan: Plan, trainable: bool = False) -> bool:
    """The default for ``--merge``: on for bf16/fp16 without quantization, where a merged projection is one kernel
    instead of three; off for float32 (CPU) and 4/8-bit, and never for training."""
    return not trainable and plan.quantize is None and plan.dtype in ("bfloat16", "float16")


def _load_weights(source: ModelSource, path: Path, chosen: Plan, trust_remote_code: bool) -> Any:
    import torch
    from transformers import AutoModelForCausalLM

    kwargs: dict[str, Any] = {"dtype": getattr(torch, chosen.dtype)}
    if chosen.max_memory is not None:
        kwargs.update(device_map="auto", max_memory=chosen.max_memory)
    else:
        kwargs["device_map"] = {"": 0 if chosen.device == "cuda" else "cpu"}
    if chosen.quantize is not None:
        kwargs["quantization_config"] = _bnb_config(chosen.quantize)
    try:
        return AutoModelForCausalLM.from_pretrained(str(path), trust_remote_code=trust_remote_code, **kwargs)
    except (OSError, ValueError, KeyError) as exc:
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        hint = "Check that the directory holds a complete Hugging Face model (config.json and weights)."
        if "trust_remote_code" in message:
            hint = "This architecture is not built into transformers; --trust-remote-code runs the repo's own code."
        raise ModelError(f"Model `{source.ref}` could not be loaded as a causal LM ({message}).", hint) from None


def _bnb_config(quantize: str) -> Any:
    import torch
    from transformers import BitsAndBytesConfig

    try:
        import bitsandbytes  # noqa: F401
    except Exception as exc:  # ImportError, or a broken native library
        raise ModelError(
            f"{quantize} loading needs bitsandbytes, which cannot run here ({str(exc).splitlines()[0]}).",
            "pip install -U bitsandbytes (it needs a supported GPU or CPU), or use --quantize none with enough memory.",
        ) from None
    if quantize == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True)
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=torch.bfloat16,
    )


def check_adapter_fits(
    adapter: ModelSource, adapter_dir: Path, backbone: ModelSource, weights_dir: Path, note: Note
) -> None:
    """Before any weight loads: the adapter's LoRA tensors must fit the backbone's modules, shape for shape."""
    config = read_json(ModelSource(adapter.ref, adapter_dir), "adapter_config.json")
    trained_on = config.get("base_model_name_or_path")
    adapter_file = adapter_dir / "adapter_model.safetensors"
    model_files = sorted(weights_dir.glob("*.safetensors"))
    if not adapter_file.is_file() or not model_files:
        return  # .bin checkpoints: PEFT's own load reports a mismatch (see attach_adapter)
    model_shapes = safetensors_shapes(model_files)
    base = f"trained on {trained_on}" if isinstance(trained_on, str) and trained_on else "its base model unknown"
    for key, shape in safetensors_shapes([adapter_file]).items():
        for part, axis in ((".lora_A.", 1), (".lora_B.", 0)):
            if part not in key:
                continue
            module = key.split(part)[0].removeprefix("base_model.model.")
            weight = model_shapes.get(f"{module}.weight")
            if weight is None:
                raise AdapterError(
                    f"Adapter `{adapter.ref}` ({base}) targets {module}, which model `{backbone.ref}` does not have.",
                    "Use the adapter with the backbone it was trained on.",
                )
            expected = weight[1] if axis == 1 else weight[0]
            if shape[axis] != expected:
                raise AdapterError(
                    f"Adapter `{adapter.ref}` ({base}) does not fit model `{backbone.ref}`: {module} is "
                    f"{weight[0]}x{weight[1]} in the model but the adapter expects "
                    f"{'?x' + str(shape[1]) if axis == 1 else str(shape[0]) + 'x?'}.",
                    "Use the adapter with the backbone it was trained on.",
                )
    if (
        isinstance(trained_on, str)
        and looks_like_repo_id(trained_on)
        and backbone.repo_id is not None
        and trained_on != backbone.repo_id
    ):
        note(f"Adapter `{adapter.ref}` was trained on {trained_on}; it is being used on {backbone.repo_id}.")


def attach_adapter(
    model: Any, adapter: ModelSource, adapter_dir: Path, backbone: ModelSource, *, trainable: bool = False
) -> Any:
    """PEFT LoRA on ``model`` (left unmerged, as upstream runs it; ``trainable`` to finetune it further)."""
    from peft import PeftModel

    config = read_json(ModelSource(adapter.ref, adapter_dir), "adapter_config.json")
    targets = config.get("target_modules")
    if isinstance(targets, str):
        targets = [targets]
    if isinstance(targets, list):
        present = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
        missing = [t for t in targets if t not in present]
        if missing:
            raise AdapterError(
                f"Adapter `{adapter.ref}` targets modules {', '.join(missing)} "
                f"that model `{backbone.ref}` does not have.",
                "Use the adapter with the backbone it was trained on.",
            )
    try:
        return PeftModel.from_pretrained(model, str(adapter_dir), is_trainable=trainable)
    except RuntimeError as exc:
        lines = str(exc).strip().splitlines()
        detail = next((line.strip() for line in lines if "size mismatch" in line), lines[0] if lines else "")
        raise AdapterError(
            f"Adapter `{adapter.ref}` does not fit model `{backbone.ref}`: {detail}",
            "Use the adapter with the backbone it was trained on.",
        ) from None
