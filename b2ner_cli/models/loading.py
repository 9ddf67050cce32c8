"""Load a backbone (+ LoRA adapter) and its tokenizer, and wrap them in a generator."""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from typing import Any, Literal

from ..errors import AdapterError, ModelError
from .resolve import ModelSource, read_adapter_config, resolve_adapter, resolve_model

DeviceChoice = Literal["auto", "cpu", "cuda"]


@dataclass
class LoadedModel:
    model: Any
    tokenizer: Any
    backbone: ModelSource
    adapter: ModelSource | None

    def info(self) -> dict[str, object]:
        return {
            "model": self.backbone.ref,
            "model_path": str(self.backbone.path),
            "model_revision": self.backbone.revision,
            "adapter": self.adapter.ref if self.adapter else None,
            "adapter_path": str(self.adapter.path) if self.adapter else None,
            "adapter_revision": self.adapter.revision if self.adapter else None,
        }


def quiet_library_logs() -> None:
    """Library chatter (bitsandbytes' optional CPU kernels, transformers' notices) stays off stderr."""
    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)
    for category in (FutureWarning, DeprecationWarning):
        warnings.filterwarnings("ignore", category=category, module=r"(transformers|peft|torch|accelerate)(\.|$)")
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def _pick_device_and_dtype(device: DeviceChoice) -> tuple[str, Any]:
    import torch

    if device == "cuda" and not torch.cuda.is_available():
        raise ModelError("--device cuda was given but no CUDA GPU is visible.", "Use --device auto or --device cpu.")
    if device in ("auto", "cuda") and torch.cuda.is_available():
        return "cuda", torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return "cpu", torch.float32


def load_tokenizer(source: ModelSource) -> Any:
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(source.path))
    except (OSError, ValueError) as exc:
        raise ModelError(
            f"Model `{source.ref}` has no usable tokenizer ({str(exc).splitlines()[0]}).",
            "The model directory needs its tokenizer files (tokenizer.json or tokenizer.model).",
        ) from None
    return tokenizer


def load(model_ref: str, adapter_ref: str | None = None, *, device: DeviceChoice = "auto") -> LoadedModel:
    """Load a local causal LM directory, optionally with a PEFT LoRA adapter on top."""
    backbone = resolve_model(model_ref)
    adapter = resolve_adapter(adapter_ref) if adapter_ref else None
    adapter_config = read_adapter_config(adapter) if adapter else None
    quiet_library_logs()
    tokenizer = load_tokenizer(backbone)
    from transformers import AutoModelForCausalLM

    target, dtype = _pick_device_and_dtype(device)
    try:
        model = AutoModelForCausalLM.from_pretrained(str(backbone.path), dtype=dtype)
    except (OSError, ValueError, KeyError) as exc:
        raise ModelError(
            f"Model `{model_ref}` could not be loaded as a causal LM ({str(exc).splitlines()[0]}).",
            "Check that the directory holds a complete Hugging Face model (config.json and weights).",
        ) from None
    model.to(target)  # type: ignore[arg-type]
    if adapter is not None and adapter_config is not None:
        model = attach_adapter(model, adapter, adapter_config, model_ref)
    model.eval()
    return LoadedModel(model=model, tokenizer=tokenizer, backbone=backbone, adapter=adapter)


def attach_adapter(model: Any, adapter: ModelSource, config: dict[str, object], model_ref: str) -> Any:
    """PEFT LoRA on ``model``; a clear error naming both when the adapter does not fit."""
    from peft import PeftModel

    targets = config.get("target_modules")
    if isinstance(targets, str):
        targets = [targets]
    if isinstance(targets, list):
        present = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
        missing = [t for t in targets if t not in present]
        if missing:
            raise AdapterError(
                f"Adapter `{adapter.ref}` targets modules {', '.join(missing)} that model `{model_ref}` does not have.",
                "Use the adapter with the backbone it was trained on.",
            )
    try:
        return PeftModel.from_pretrained(model, str(adapter.path), is_trainable=False)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()
        detail = next((line.strip() for line in first if "size mismatch" in line), first[0] if first else "")
        raise AdapterError(
            f"Adapter `{adapter.ref}` does not fit model `{model_ref}`: {detail}",
            "Use the adapter with the backbone it was trained on.",
        ) from None
