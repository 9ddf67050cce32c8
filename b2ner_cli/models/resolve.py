"""From what the user typed (an alias, a Hub repo id, or a directory) to local folders to load."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import AdapterError, ModelError
from . import hub
from .registry import DEFAULT_MODEL, lookup
from .spec import ModelSpec


@dataclass(frozen=True)
class ModelSource:
    """A model or adapter on disk: what the user asked for, where it is, and the revision it came from."""

    ref: str
    path: Path
    #: the resolved commit hash for Hub downloads; None for local directories.
    revision: str | None = None
    repo_id: str | None = None


@dataclass(frozen=True)
class Resolved:
    backbone: ModelSource
    adapter: ModelSource | None
    alias: str | None = None


def resolve(
    model: str | None = None,
    adapter: str | None = None,
    *,
    revision: str | None = None,
    adapter_revision: str | None = None,
    no_adapter: bool = False,
    offline: bool = False,
    quiet: bool = False,
    trust_remote_code: bool = False,
    for_download: bool = False,
) -> Resolved:
    """Resolve ``--model``/``--adapter`` (aliases bring their own adapter unless one is given or refused).

    Without ``--model``, an adapter that ``b2ner finetune`` wrote names its own backbone and revision.
    """
    if model is None and adapter is not None:
        meta = adapter_metadata(adapter)
        named = adapter_backbone(meta)
        if named is not None:
            model, revision = named[0], revision or named[1]
    name = model or DEFAULT_MODEL
    entry = lookup(name)
    backbone_ref, adapter_ref = name, adapter
    if entry is not None:
        backbone_ref = entry.backbone
        revision = revision or entry.revision
        if adapter is None:
            adapter_ref = entry.adapter
            adapter_revision = adapter_revision or entry.adapter_revision
    if no_adapter:
        adapter_ref = None
    backbone = locate(
        backbone_ref, revision, kind="model", display=name, offline=offline, quiet=quiet, with_code=trust_remote_code,
        for_download=for_download,
    )  # fmt: skip
    located_adapter = None
    if adapter_ref is not None:
        shown = adapter or f"{name}'s adapter"
        located_adapter = locate(
            adapter_ref, adapter_revision, kind="adapter", display=shown, offline=offline, quiet=quiet,
            for_download=for_download,
        )  # fmt: skip
    return Resolved(backbone, located_adapter, alias=name if entry else None)


def resolve_spec(spec: ModelSpec, *, quiet: bool = False) -> Resolved:
    """:func:`resolve` for a :class:`ModelSpec`."""
    return resolve(
        spec.model, spec.adapter, revision=spec.revision, adapter_revision=spec.adapter_revision,
        no_adapter=spec.no_adapter, offline=spec.offline, quiet=quiet, trust_remote_code=spec.trust_remote_code,
    )  # fmt: skip


ADAPTER_METADATA = "b2ner_adapter.json"


def adapter_backbone(meta: dict[str, Any] | None) -> tuple[str, str | None] | None:
    """The backbone (and its revision) an adapter's metadata names; ``base_model`` is the pre-0.2 key."""
    if not meta:
        return None
    for key in ("backbone", "base_model"):
        if isinstance(meta.get(key), str):
            revision = meta.get(f"{key}_revision")
            return meta[key], revision if isinstance(revision, str) else None
    return None


def local_adapter(
    model: str | None, adapter: str | None, *, adapter_revision: str | None = None, no_adapter: bool = False
) -> str | None:
    """The directory of the adapter a run would use (``--adapter``, else the alias's), when it is already on disk.

    Nothing is downloaded: a Hub adapter counts only when the cache holds it. None when the run has no adapter.
    """
    if no_adapter:
        return None
    ref, revision = adapter, adapter_revision
    if ref is None:
        entry = lookup(model or DEFAULT_MODEL)
        if entry is None or entry.adapter is None:
            return None
        ref, revision = entry.adapter, adapter_revision or entry.adapter_revision
    path = Path(ref).expanduser()
    if path.is_dir():
        return str(path)
    if hub.looks_like_repo_id(ref):
        snapshot = hub.cached_snapshot(ref, revision)
        return str(snapshot) if snapshot is not None else None
    return None


def adapter_metadata(adapter: str) -> dict[str, Any] | None:
    """What ``b2ner finetune`` recorded next to an adapter (backbone, labels, metrics), if it is there."""
    path = Path(adapter).expanduser() / ADAPTER_METADATA
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise AdapterError(f"Adapter `{adapter}` has an unreadable {ADAPTER_METADATA} ({exc}).") from None
    return data if isinstance(data, dict) else None


def locate(
    ref: str,
    revision: str | None,
    *,
    kind: hub.Kind,
    display: str,
    offline: bool = False,
    quiet: bool = False,
    with_code: bool = False,
    for_download: bool = False,
) -> ModelSource:
    path = Path(ref).expanduser()
    if path.exists():
        source = ModelSource(ref=display, path=path)
    elif hub.looks_like_repo_id(ref):
        snapshot = hub.fetch(
            ref, revision=revision, kind=kind, display=display, offline=offline, quiet=quiet, with_code=with_code,
            for_download=for_download,
        )  # fmt: skip
        source = ModelSource(ref=display, path=snapshot, revision=snapshot.name, repo_id=ref)
    else:
        error, what = (AdapterError, "Adapter") if kind == "adapter" else (ModelError, "Model")
        raise error(
            f"{what} `{display}` is not a directory, a model alias or a Hub repo id.",
            "Run `b2ner models list` for the aliases, or pass a directory or an id like org/name.",
        )
    return check_adapter_dir(source) if kind == "adapter" else check_model_dir(source)


def check_model_dir(source: ModelSource) -> ModelSource:
    if not source.path.is_dir() or not (source.path / "config.json").is_file():
        raise ModelError(
            f"Model `{source.ref}` is not a model directory: it has no config.json.",
            "Pass the directory that save_pretrained() wrote, with config.json, weights and tokenizer files.",
        )
    return source


def check_adapter_dir(source: ModelSource) -> ModelSource:
    if not source.path.is_dir() or not (source.path / "adapter_config.json").is_file():
        raise AdapterError(
            f"Adapter `{source.ref}` is not a PEFT adapter directory: it has no adapter_config.json.",
            "Pass --adapter the directory that a PEFT save_pretrained() wrote.",
        )
    return source


def read_json(source: ModelSource, name: str) -> dict[str, object]:
    error = AdapterError if name == "adapter_config.json" else ModelError
    try:
        config = json.loads((source.path / name).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise error(f"`{source.ref}` has an unreadable {name} ({exc}).") from None
    if not isinstance(config, dict):
        raise error(f"`{source.ref}` has a {name} that is not a JSON object.")
    return config
