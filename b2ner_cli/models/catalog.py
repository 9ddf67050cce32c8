"""What ``b2ner models`` reports: aliases, what is in the cache, and details of one model."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ..errors import ModelError
from .hub import looks_like_repo_id
from .registry import ModelEntry, all_entries, lookup


@dataclass(frozen=True)
class Cached:
    """One repo (or local directory) as found on disk."""

    ref: str
    present: bool
    path: Path | None = None
    revision: str | None = None
    size_bytes: int = 0

    def to_dict(self) -> dict[str, object]:
        return {
            "ref": self.ref,
            "cached": self.present,
            "path": str(self.path) if self.path else None,
            "revision": self.revision,
            "size_bytes": self.size_bytes,
        }


def _dir_size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def _hub_cache() -> dict[str, Cached]:
    from huggingface_hub import scan_cache_dir
    from huggingface_hub.errors import CacheNotFound

    from .hub import cache_dir

    try:
        info = scan_cache_dir(cache_dir())
    except CacheNotFound:
        return {}
    found = {}
    for repo in info.repos:
        if repo.repo_type != "model":
            continue
        newest = max(repo.revisions, key=lambda r: r.last_modified, default=None)
        found[repo.repo_id] = Cached(
            repo.repo_id,
            True,
            newest.snapshot_path if newest else None,
            newest.commit_hash if newest else None,
            repo.size_on_disk,
        )
    return found


def find_cached(ref: str, cache: dict[str, Cached] | None = None) -> Cached:
    path = Path(ref).expanduser()
    if path.exists():
        return Cached(ref, True, path, None, _dir_size(path))
    if looks_like_repo_id(ref):
        hit = (cache if cache is not None else _hub_cache()).get(ref)
        if hit is not None:
            return hit
    return Cached(ref, False)


@dataclass(frozen=True)
class ModelStatus:
    entry: ModelEntry
    backbone: Cached
    adapter: Cached | None

    def to_dict(self) -> dict[str, object]:
        return {
            **self.entry.to_dict(),
            "backbone_cache": self.backbone.to_dict(),
            "adapter_cache": self.adapter.to_dict() if self.adapter else None,
        }


def list_models() -> list[ModelStatus]:
    cache = _hub_cache()
    return [
        ModelStatus(
            entry, find_cached(entry.backbone, cache), find_cached(entry.adapter, cache) if entry.adapter else None
        )
        for entry in all_entries().values()
    ]


def model_info(name: str) -> dict[str, object]:
    """Details of an alias, Hub repo id or directory, from what is on disk (nothing is downloaded)."""
    from .placement import count_parameters

    entry = lookup(name) or ModelEntry(name, backbone=name)
    if lookup(name) is None and not Path(name).expanduser().exists() and not looks_like_repo_id(name):
        raise ModelError(
            f"`{name}` is not a model alias, a Hub repo id or a directory.", "Run `b2ner models list` for the aliases."
        )
    status = ModelStatus(entry, find_cached(entry.backbone), find_cached(entry.adapter) if entry.adapter else None)
    info: dict[str, object] = status.to_dict()
    if status.backbone.present and status.backbone.path and (status.backbone.path / "config.json").is_file():
        config = json.loads((status.backbone.path / "config.json").read_text(encoding="utf-8"))
        params = count_parameters(status.backbone.path, config)
        info.update(
            architecture=config.get("model_type"),
            parameters=params.total,
            estimated_weights_gib={
                "bfloat16": round(params.weight_bytes(2) / 2**30, 2),
                "4bit": round(params.weight_bytes(2, "4bit") / 2**30, 2),
                "float32": round(params.weight_bytes(4) / 2**30, 2),
            },
        )
    if status.adapter and status.adapter.present and status.adapter.path:
        config_file = status.adapter.path / "adapter_config.json"
        if config_file.is_file():
            adapter_config = json.loads(config_file.read_text(encoding="utf-8"))
            info["adapter_config"] = {
                k: adapter_config.get(k)
                for k in ("base_model_name_or_path", "r", "lora_alpha", "lora_dropout", "target_modules")
            }
    return info


def is_adapter_dir(name: str) -> bool:
    """True when ``name`` is a directory holding a PEFT adapter (``adapter_config.json``)."""
    folder = Path(name).expanduser()
    return folder.is_dir() and (folder / "adapter_config.json").is_file()


def _f1(metrics: object, metric: str) -> object:
    scores = metrics.get(metric) if isinstance(metrics, dict) else None
    return scores.get("f1") if isinstance(scores, dict) else None


def adapter_info(name: str) -> dict[str, object]:
    """What ``b2ner models info ADAPTER_DIR`` shows: its backbone, labels, dev scores, provenance and LoRA settings.

    The backbone and labels come from ``b2ner_adapter.json`` (written by ``b2ner finetune``), else the backbone from
    PEFT's ``adapter_config.json``.
    """
    from .resolve import ModelSource, adapter_backbone, adapter_metadata, read_json

    folder = Path(name).expanduser()
    config = read_json(ModelSource(name, folder), "adapter_config.json")
    meta = adapter_metadata(name) or {}
    named = adapter_backbone(meta)
    dev = meta.get("dev_metrics")
    version = meta.get("b2ner_version")
    return {
        "kind": "adapter",
        "path": str(folder),
        "backbone": named[0] if named else config.get("base_model_name_or_path"),
        "backbone_revision": named[1] if named else None,
        "labels": meta.get("labels"),
        "epoch": meta.get("epoch"),
        "selected_by": meta.get("selected_by"),
        "dev_b2ner_f1": _f1(dev, "b2ner"),
        "dev_strict_f1": _f1(dev, "strict"),
        "train": meta.get("train"),
        "dev": meta.get("dev"),
        "created_with": f"b2ner {version}" if version else None,
        "peft_type": config.get("peft_type"),
        "lora_r": config.get("r"),
        "lora_alpha": config.get("lora_alpha"),
        "lora_dropout": config.get("lora_dropout"),
        "target_modules": config.get("target_modules"),
        "size_bytes": _dir_size(folder),
    }
