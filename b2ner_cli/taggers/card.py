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


def tagger_info(path: str | os.PathLike[str]) -> dict[str, Any]:
    """What ``b2ner models info TAGGER_DIR`` shows: head, encoder and revision, labels, dev scores, provenance."""
    folder = Path(path).expanduser()
    card = read_card(folder)
    encoder = card.get("encoder", {})
    dev = card.get("dev", {})
    settings = card.get("settings", {})
    size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    return {
        "kind": "tagger",
        "path": str(folder),
        "head": card.get("head"),
        "encoder": encoder.get("ref"),
        "encoder_repo": encoder.get("repo_id"),
        "encoder_revision": encoder.get("revision"),
        "encoder_type": encoder.get("model_type"),
        "labels": list(card.get("labels", [])),
        "loss": settings.get("loss"),
        "max_span_words": settings.get("max_span_words"),
        "dev_best_epoch": dev.get("best_epoch"),
        "dev_best_f1": dev.get("best_f1"),
        "dev_f1_per_epoch": [item.get("f1") for item in dev.get("per_epoch", [])],
        "data": card.get("data"),
        "created_with": f"b2ner {card.get('b2ner_version')}",
        "created_at": card.get("created_at"),
        "size_bytes": size,
    }


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
