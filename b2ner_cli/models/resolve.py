"""Where a model or an adapter lives: today a local directory (Hub ids come with the registry)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ..errors import AdapterError, ModelError


@dataclass(frozen=True)
class ModelSource:
    """A resolved model or adapter: the directory to load and what the user asked for."""

    ref: str
    path: Path
    revision: str | None = None


def resolve_model(ref: str) -> ModelSource:
    path = Path(ref).expanduser()
    if not path.exists():
        raise ModelError(
            f"Model `{ref}` is not a directory on this machine.",
            "Pass --model a local directory holding a Hugging Face causal LM (config.json, weights, tokenizer).",
        )
    if not path.is_dir() or not (path / "config.json").is_file():
        raise ModelError(
            f"Model `{ref}` is not a model directory: it has no config.json.",
            "Pass the directory that save_pretrained() wrote, with config.json, weights and tokenizer files.",
        )
    return ModelSource(ref=ref, path=path)


def resolve_adapter(ref: str) -> ModelSource:
    path = Path(ref).expanduser()
    if not path.is_dir() or not (path / "adapter_config.json").is_file():
        raise AdapterError(
            f"Adapter `{ref}` is not a PEFT adapter directory: it has no adapter_config.json.",
            "Pass --adapter the directory that a PEFT save_pretrained() wrote.",
        )
    return ModelSource(ref=ref, path=path)


def read_adapter_config(source: ModelSource) -> dict[str, object]:
    try:
        config = json.loads((source.path / "adapter_config.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise AdapterError(f"Adapter `{source.ref}` has an unreadable adapter_config.json ({exc}).") from None
    if not isinstance(config, dict):
        raise AdapterError(f"Adapter `{source.ref}` has an adapter_config.json that is not a JSON object.")
    return config
