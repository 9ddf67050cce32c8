"""The tagger directory: its card (``b2ner_tagger.json``), and writing the whole directory atomically."""

from __future__ import annotations

import json
import os
import secrets
import shutil
from pathlib import Path
from typing import Any

from ..errors import ModelError

CARD = "b2ner_tagger.json"
HEAD_WEIGHTS = "head.safetensors"
METRICS = "metrics.jsonl"
FORMAT = "b2ner-tagger"
FORMAT_VERSION = 1


def is_tagger_dir(path: str | os.PathLike[str]) -> bool:
    """True when ``path`` is a directory holding a tagger card."""
    folder = Path(path).expanduser()
    return folder.is_dir() and (folder / CARD).is_file()


def read_card(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The card of a tagger directory, checked for format and version."""
    folder = Path(path).expanduser()
    if not is_tagger_dir(folder):
        raise ModelError(
            f"`{path}` is not a tagger directory: it has no {CARD}.",
            "Pass a directory written by `b2ner finetune --head ...`.",
        )
    try:
        card = json.loads((folder / CARD).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(f"Tagger `{path}` has an unreadable {CARD} ({exc}).") from None
    if not isinstance(card, dict) or card.get("format") != FORMAT:
        raise ModelError(f"Tagger `{path}` has a {CARD} that is not a b2ner tagger card.")
    version = card.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise ModelError(
            f"Tagger `{path}` uses card format version {version}; this b2ner reads up to {FORMAT_VERSION}.",
            "Upgrade b2ner to load this tagger.",
        )
    return card


def partial_dir(output: Path) -> Path:
    """Where a training run builds its output (and keeps its checkpoint) before moving it into place."""
    return output.parent / f".{output.name}.partial"


def move_into_place(built: Path, output: Path) -> None:
    """Rename ``built`` to ``output``; an existing ``output`` is set aside first and removed only afterwards."""
    old: Path | None = None
    if output.exists() or output.is_symlink():
        old = output.parent / f".{output.name}.old-{secrets.token_hex(4)}"
        os.replace(output, old)
    try:
        os.replace(built, output)
    except BaseException:
        if old is not None:
            os.replace(old, output)
        raise
    if old is not None:
        if old.is_dir() and not old.is_symlink():
            shutil.rmtree(old, ignore_errors=True)
        else:
            old.unlink(missing_ok=True)
