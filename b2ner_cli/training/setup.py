"""The model to finetune: a registry model's adapter continued, any backbone + adapter, or a fresh LoRA."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..models.loading import LoadedModel, Note, load
from ..models.spec import ModelSpec

#: B2NER trains LoRA on the fused query/key/value projection; on the Llama layout that is q, k and v.
LLAMA_TARGETS = ["q_proj", "k_proj", "v_proj"]


@dataclass
class LoraSettings:
    r: int = 32
    alpha: int = 64
    dropout: float = 0.05
    target_modules: list[str] | None = None


def default_targets(model: Any) -> list[str] | str:
    names = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    return LLAMA_TARGETS if set(LLAMA_TARGETS) <= names else "all-linear"


def trainable_model(
    spec: ModelSpec, lora: LoraSettings, *, note: Note | None = None, seed: int = 42, quiet: bool = False
) -> tuple[Any, LoadedModel, dict[str, Any]]:
    """The trainable model, what was loaded, and the metadata to store with the adapter."""
    loaded = load(spec, trainable=True, note=note, quiet=quiet)
    from peft import LoraConfig, get_peft_model  # after load(), which quiets the libraries' logs first

    backbone = loaded.resolved.backbone
    trainable = loaded.model
    started_from = loaded.resolved.adapter.ref if loaded.resolved.adapter else None
    if loaded.resolved.adapter is None:
        import torch

        torch.manual_seed(seed)  # a fresh LoRA's initial weights follow --seed
        config = LoraConfig(
            r=lora.r,
            lora_alpha=lora.alpha,
            lora_dropout=lora.dropout,
            target_modules=lora.target_modules or default_targets(loaded.model),
            bias="none",
            task_type="CAUSAL_LM",
        )
        trainable = get_peft_model(loaded.model, config)
    ref = backbone.ref
    name = str(Path(ref).expanduser().resolve()) if Path(ref).expanduser().exists() else ref
    metadata = {
        "backbone": name,
        "backbone_repo": backbone.repo_id,
        "backbone_revision": backbone.revision,
        "started_from_adapter": started_from,
        "quantization": loaded.plan.quantize,
    }
    return trainable, loaded, metadata


def parameter_counts(model: Any) -> dict[str, int]:
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"total": total, "trainable": trainable}
