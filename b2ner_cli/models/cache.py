"""What the two model caches hold, and removing from them: the Hugging Face cache and ``$B2NER_HOME/converted/``.

``b2ner models list --cache`` lists :func:`cache_items`; ``b2ner models rm NAME`` builds a :func:`removal_plan`
(shown first) and :func:`remove` carries it out. Nothing outside those two caches is ever removed: an alias or a
directory elsewhere only loses what was cached or converted from it.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import UsageError
from .hub import looks_like_repo_id
from .registry import lookup

#: where a conversion keeps the path of the folder it was converted from (see ``prepare.STAMP``).
STAMP = "b2ner-source.json"


@dataclass(frozen=True)
class CacheItem:
    """One cached repo (``kind`` "hub") or one converted model or adapter (``kind`` "converted")."""

    kind: str
    #: the repo id for the HF cache, the folder name for a conversion.
    name: str
    path: Path
    size_bytes: int
    #: seconds since the epoch (the newest access time of its files), None when unknown.
    last_used: float | None
    #: the HF repo type (model, dataset, space); the converted folder it came from for a conversion.
    detail: str = ""
    revisions: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, object]:
        return {
            "kind": self.kind,
            "name": self.name,
            "path": str(self.path),
            "size_bytes": self.size_bytes,
            "last_used": self.last_used,
            "detail": self.detail,
            "revisions": list(self.revisions),
        }


def _scan() -> Any:
    from huggingface_hub import scan_cache_dir
    from huggingface_hub.errors import CacheNotFound

    from .hub import cache_dir

    try:
        return scan_cache_dir(cache_dir())  # the cache as configured now (HF_HUB_CACHE is read at import)
    except CacheNotFound:
        return None


def _hub_items(scan: Any) -> list[CacheItem]:
    if scan is None:
        return []
    return [
        CacheItem(
            "hub",
            repo.repo_id,
            Path(repo.repo_path),
            repo.size_on_disk,
            repo.last_accessed,
            repo.repo_type,
            tuple(sorted(r.commit_hash for r in repo.revisions)),
        )
        for repo in sorted(scan.repos, key=lambda r: (r.repo_type, r.repo_id))
    ]


def _source_of(folder: Path) -> str:
    try:
        data = json.loads((folder / STAMP).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return ""
    source = data.get("source") if isinstance(data, dict) else None
    return source if isinstance(source, str) else ""


def _converted_items() -> list[CacheItem]:
    from .prepare import converted_root

    root = converted_root()
    folders = [root / "adapters" / p.name for p in _dirs(root / "adapters")]
    folders += [p for p in _dirs(root) if p.name != "adapters"]
    items = []
    for folder in sorted(folders):
        files = [f for f in folder.rglob("*") if f.is_file()]
        size = sum(f.stat().st_size for f in files)
        used = max((f.stat().st_atime for f in files), default=None)
        name = str(folder.relative_to(root))
        items.append(CacheItem("converted", name, folder, size, used, _source_of(folder)))
    return items


def _dirs(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return [p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")]


def cache_items() -> list[CacheItem]:
    """Every repo in the HF cache and every conversion in ``$B2NER_HOME/converted/``."""
    return _hub_items(_scan()) + _converted_items()


@dataclass
class RemovalPlan:
    """What ``models rm NAME`` removes; ``items`` in listing order."""

    name: str
    items: list[CacheItem] = field(default_factory=list)

    @property
    def size_bytes(self) -> int:
        return sum(item.size_bytes for item in self.items)


def _within(path: str | Path, folder: Path) -> bool:
    try:
        resolved, base = Path(path).resolve(), folder.resolve()
    except OSError:
        return False
    return resolved == base or base in resolved.parents


def removal_plan(name: str) -> RemovalPlan:
    """The HF cache repos and conversions that belong to ``name`` (an alias, a repo id, or a path in either cache,
    or a local model directory whose conversion is to go); raises when nothing cached belongs to it."""
    from huggingface_hub import constants

    from .prepare import converted_root

    hub = _hub_items(_scan())
    converted = _converted_items()
    repos: set[str] = set()
    folders: list[Path] = []  # local model directories (never removed): their conversions go
    entry = lookup(name)
    refs = [entry.backbone, *([entry.adapter] if entry.adapter else [])] if entry is not None else [name]
    chosen: list[CacheItem] = []
    for ref in refs:
        path = Path(ref).expanduser()
        if path.exists() and _within(path, Path(constants.HF_HUB_CACHE)):
            chosen += [item for item in hub if _within(path, item.path)]
        elif path.exists() and _within(path, converted_root()):
            chosen += [item for item in converted if _within(path, item.path)]
        elif path.exists():
            folders.append(path)
        elif looks_like_repo_id(ref):
            repos.add(ref)
    chosen += [item for item in hub if item.name in repos and item.detail == "model"]
    owners = [item.path for item in chosen if item.kind == "hub"] + folders
    chosen += [item for item in converted if item.detail and any(_within(item.detail, o) for o in owners)]
    unique = list({item.path: item for item in chosen}.values())
    if not unique:
        raise UsageError(
            f"Nothing in the caches belongs to `{name}`.",
            "Run `b2ner models list --cache` for what is cached (aliases, repo ids and paths are accepted).",
        )
    return RemovalPlan(name, unique)


def remove(plan: RemovalPlan) -> int:
    """Remove what ``plan`` lists (HF repos through huggingface_hub's delete strategy); the bytes freed."""
    scan = _scan()
    hashes = [h for item in plan.items if item.kind == "hub" for h in item.revisions]
    freed = 0
    if hashes and scan is not None:
        strategy = scan.delete_revisions(*hashes)
        freed += strategy.expected_freed_size
        strategy.execute()
    for item in plan.items:
        if item.kind == "hub" and item.path.exists() and not item.revisions:  # a repo with no revision left
            shutil.rmtree(item.path, ignore_errors=True)
        if item.kind == "converted":
            shutil.rmtree(item.path, ignore_errors=True)
            item.path.with_name(item.path.name + ".lock").unlink(missing_ok=True)
            freed += item.size_bytes
    return freed
