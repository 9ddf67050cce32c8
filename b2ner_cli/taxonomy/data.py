"""The bundled taxonomy data (package ``taxonomy_data``): entity types and dataset label-set mappings.

Layout, all UTF-8:
- ``taxonomy.json``: name, version, description.
- ``types/*.jsonl``: one entity type per line: ``{"en", "zh", "parent", "description": {"en", "zh"},
  "aliases": [...], "examples": [...]}``. ``en`` is the canonical English name and the type's id; ``parent``
  is the parent's English name (null for a root); ``zh`` follows the ``父类->子类`` style.
- ``datasets/*.json``: ``{"name", "title", "language", "domain", "description", "labels": {raw tag: [English
  names]}}``. Which datasets use a type is derived from these mappings.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from importlib.abc import Traversable

from ..errors import B2nerError
from ..prompts import has_han

DATA_PACKAGE = "taxonomy_data"


@dataclass(frozen=True)
class EntityType:
    en: str
    zh: str
    parent: str | None
    description_en: str
    description_zh: str
    aliases: tuple[str, ...] = ()
    examples: tuple[str, ...] = ()
    source: str = ""  # the file it came from, for validation messages

    def name(self, lang: str) -> str:
        return self.zh if lang == "zh" else self.en

    def description(self, lang: str) -> str:
        return self.description_zh if lang == "zh" else self.description_en


@dataclass(frozen=True)
class Dataset:
    name: str
    title: str
    language: str
    domain: str
    description: str
    labels: dict[str, tuple[str, ...]]


@dataclass
class Taxonomy:
    version: str
    types: dict[str, EntityType]  # by English name
    datasets: dict[str, Dataset]
    problems: list[str] = field(default_factory=list)  # found while loading (bad lines, duplicates)
    by_zh: dict[str, EntityType] = field(default_factory=dict)
    children: dict[str | None, list[str]] = field(default_factory=dict)
    used_by: dict[str, list[str]] = field(default_factory=dict)  # English name -> dataset names

    def __post_init__(self) -> None:
        self.by_zh = {t.zh: t for t in self.types.values()}
        kids: dict[str | None, list[str]] = defaultdict(list)
        for t in self.types.values():
            kids[t.parent].append(t.en)
        self.children = dict(kids)
        used: dict[str, list[str]] = defaultdict(list)
        for d in sorted(self.datasets.values(), key=lambda d: d.name):
            for names in d.labels.values():
                for name in names:
                    if d.name not in used[name]:
                        used[name].append(d.name)
        self.used_by = dict(used)

    def get(self, name: str) -> EntityType | None:
        """By English or Chinese canonical name (English case-insensitively), or a unique Chinese leaf (公司)."""
        found = self.types.get(name) or self.by_zh.get(name) or self.types.get(name.strip().lower())
        if found is None and "->" not in name:
            leaves = [t for t in self.types.values() if t.zh.split("->")[-1] == name.strip()]
            found = leaves[0] if len(leaves) == 1 else None
        return found

    def path(self, entry: EntityType) -> list[EntityType]:
        """From the root down to ``entry``."""
        chain, seen = [entry], {entry.en}
        while chain[-1].parent and chain[-1].parent in self.types and chain[-1].parent not in seen:
            seen.add(chain[-1].parent)
            chain.append(self.types[chain[-1].parent])
        return chain[::-1]

    def dataset(self, name: str) -> Dataset | None:
        """By name or title, ignoring case and punctuation (``CoNLL-2003``, ``conll2003``, ``ncbi_disease``)."""
        key = _squash(name)
        return next((d for d in self.datasets.values() if key in (_squash(d.name), _squash(d.title))), None)


def _squash(text: str) -> str:
    return "".join(c for c in text.lower() if c.isalnum())


class TaxonomyError(B2nerError):
    """The bundled taxonomy data cannot be read."""


def _root() -> Traversable:
    return resources.files(DATA_PACKAGE)


def _sorted_files(folder: Traversable, suffix: str) -> list[Traversable]:
    if not folder.is_dir():
        return []
    return sorted((f for f in folder.iterdir() if f.name.endswith(suffix)), key=lambda f: f.name)


def _strings(value: object) -> tuple[str, ...]:
    return tuple(str(v) for v in value) if isinstance(value, list) else ()


def _entity(raw: dict[str, object], where: str) -> EntityType:
    description = raw.get("description")
    if not isinstance(description, dict):
        description = {}
    return EntityType(
        en=str(raw.get("en", "")).strip(),
        zh=str(raw.get("zh", "")).strip(),
        parent=(str(raw["parent"]).strip() if raw.get("parent") else None),
        description_en=str(description.get("en", "")).strip(),
        description_zh=str(description.get("zh", "")).strip(),
        aliases=_strings(raw.get("aliases")),
        examples=_strings(raw.get("examples")),
        source=where,
    )


@lru_cache(maxsize=1)
def load() -> Taxonomy:
    """The bundled taxonomy (read once per process)."""
    root = _root()
    try:
        meta = json.loads(root.joinpath("taxonomy.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise TaxonomyError(f"The bundled taxonomy is unreadable ({exc}).", "Reinstall b2ner.") from None
    problems: list[str] = []
    types: dict[str, EntityType] = {}
    for file in _sorted_files(root.joinpath("types"), ".jsonl"):
        for number, line in enumerate(file.read_text(encoding="utf-8").split("\n"), start=1):
            if not line.strip():
                continue
            where = f"types/{file.name}:{number}"
            try:
                raw = json.loads(line)
            except json.JSONDecodeError as exc:
                problems.append(f"{where}: invalid JSON ({exc.msg})")
                continue
            if not isinstance(raw, dict):
                problems.append(f"{where}: not a JSON object")
                continue
            entry = _entity(raw, where)
            if entry.en in types:
                problems.append(f"{where}: English name {entry.en!r} already defined at {types[entry.en].source}")
                continue
            types[entry.en] = entry
    datasets: dict[str, Dataset] = {}
    for file in _sorted_files(root.joinpath("datasets"), ".json"):
        where = f"datasets/{file.name}"
        try:
            raw = json.loads(file.read_text(encoding="utf-8"))
            labels = {str(k): tuple(str(n) for n in v) for k, v in raw["labels"].items()}
            datasets[raw["name"]] = Dataset(
                name=str(raw["name"]),
                title=str(raw.get("title", raw["name"])),
                language=str(raw.get("language", "")),
                domain=str(raw.get("domain", "")),
                description=str(raw.get("description", "")),
                labels=labels,
            )
        except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
            problems.append(f"{where}: unreadable ({type(exc).__name__}: {exc})")
    return Taxonomy(version=str(meta.get("version", "")), types=types, datasets=datasets, problems=problems)


def validate(taxonomy: Taxonomy) -> list[str]:
    """Every problem with the data: unique names per language, parents exist, no cycles, both languages and
    descriptions present, Chinese names in the 父类->子类 style, mappings point at existing entries."""
    problems = list(taxonomy.problems)
    seen_zh: dict[str, str] = {}
    for t in taxonomy.types.values():
        where = f"{t.source} ({t.en!r})"
        if not t.en or t.en != t.en.strip() or has_han(t.en):
            problems.append(f"{where}: missing or non-English English name")
        if not all(w == w.lower() or w.isupper() for w in t.en.split()):
            problems.append(f"{where}: English names are lowercase descriptive phrases (acronyms aside)")
        if not t.zh or not has_han(t.zh):
            problems.append(f"{where}: missing Chinese name")
        elif t.zh in seen_zh:
            problems.append(f"{where}: Chinese name {t.zh!r} also used by {seen_zh[t.zh]!r}")
        else:
            seen_zh[t.zh] = t.en
        if not t.description_en or not t.description_zh:
            problems.append(f"{where}: needs a description in both languages")
        if t.parent is not None:
            if t.parent not in taxonomy.types:
                problems.append(f"{where}: parent {t.parent!r} does not exist")
            else:
                parent = taxonomy.types[t.parent]
                if not t.zh.startswith(parent.zh.split("->")[0] + "->"):
                    problems.append(f"{where}: Chinese name {t.zh!r} should start with its root's {parent.zh!r}->")
        elif "->" in t.zh:
            problems.append(f"{where}: a root's Chinese name has no '->'")
    for t in taxonomy.types.values():  # cycles
        seen, current = {t.en}, t.parent
        while current is not None and current in taxonomy.types:
            if current in seen:
                problems.append(f"{t.source} ({t.en!r}): parent chain has a cycle through {current!r}")
                break
            seen.add(current)
            current = taxonomy.types[current].parent
    for d in taxonomy.datasets.values():
        if d.language not in ("en", "zh"):
            problems.append(f"datasets/{d.name}: language must be en or zh")
        if not d.labels:
            problems.append(f"datasets/{d.name}: no labels")
        for raw, names in d.labels.items():
            if not names:
                problems.append(f"datasets/{d.name}: tag {raw!r} maps to nothing")
            for name in names:
                if name not in taxonomy.types:
                    problems.append(f"datasets/{d.name}: tag {raw!r} maps to unknown type {name!r}")
    return problems
