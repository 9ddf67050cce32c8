"""Model aliases: the published B2NER models, plus the user's own in ``$B2NER_HOME/models.json``.

An alias names a backbone (Hub repo id or local directory) and, optionally, a LoRA adapter, each with an
optional revision. ``models.json`` maps alias -> {"backbone", "adapter", "revision", "adapter_revision",
"description"}; user aliases may not reuse a built-in name.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from ..errors import UsageError

DEFAULT_MODEL = "b2ner-7b"
CONFIG_NAME = "models.json"


@dataclass(frozen=True)
class ModelEntry:
    name: str
    backbone: str
    adapter: str | None = None
    revision: str | None = None
    adapter_revision: str | None = None
    description: str = ""
    builtin: bool = False

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


BUILTIN: dict[str, ModelEntry] = {
    entry.name: entry
    for entry in (
        ModelEntry(
            "b2ner-7b",
            backbone="internlm/internlm2_5-7b",
            adapter="Umean/B2NER-Internlm2.5-7B-LoRA",
            description="default; ~15 GB in bf16, ~5 GB in 4-bit",
            builtin=True,
        ),
        ModelEntry(
            "b2ner-20b",
            backbone="internlm/internlm2-20b",
            adapter="Umean/B2NER-Internlm2-20B-LoRA",
            description="~40 GB in bf16, ~12 GB in 4-bit",
            builtin=True,
        ),
    )
}


def b2ner_home() -> Path:
    """``$B2NER_HOME``, else ``~/.b2ner``."""
    return Path(os.environ.get("B2NER_HOME") or Path.home() / ".b2ner").expanduser()


def config_path() -> Path:
    return b2ner_home() / CONFIG_NAME


def user_entries() -> dict[str, ModelEntry]:
    path = config_path()
    if not path.is_file():
        return {}
    where = str(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"Cannot read {where}: {exc}.") from None
    except json.JSONDecodeError as exc:
        raise UsageError(f"{where}, line {exc.lineno}: invalid JSON ({exc.msg}).", "Fix or remove the file.") from None
    if not isinstance(data, dict):
        raise UsageError(f"{where}: expected a JSON object of alias -> model.", _EXAMPLE)
    entries = {}
    for name, spec in data.items():
        if name in BUILTIN:
            raise UsageError(f"{where}: alias `{name}` is built in and cannot be redefined.", "Pick another name.")
        if not isinstance(spec, dict) or not isinstance(spec.get("backbone"), str):
            raise UsageError(f'{where}: alias `{name}` needs a "backbone" (a Hub repo id or a directory).', _EXAMPLE)
        fields = {k: spec.get(k) for k in ("adapter", "revision", "adapter_revision")}
        for key, value in fields.items():
            if value is not None and not isinstance(value, str):
                raise UsageError(f'{where}: alias `{name}`: "{key}" must be a string.')
        entries[name] = ModelEntry(
            name,
            backbone=spec["backbone"],
            description=str(spec.get("description", "")),
            **fields,  # type: ignore[arg-type]
        )
    return entries


_EXAMPLE = (
    'e.g. {"my-ner": {"backbone": "internlm/internlm2_5-7b", "adapter": "/data/my-lora", '
    '"description": "B2NER finetuned on our tags"}}'
)


def all_entries() -> dict[str, ModelEntry]:
    return {**BUILTIN, **user_entries()}


def lookup(name: str) -> ModelEntry | None:
    return all_entries().get(name)
