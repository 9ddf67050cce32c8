"""``b2ner finetune --head``: read the same training data as LLM finetuning and train a tagger.

``finetune`` builds a :class:`TaggerJobSpec` and calls :func:`train_tagger_job`, which refuses the LoRA-only
options, reads gold data (our JSONL, ``b2ner extract`` output as it is, B2NERD, CoNLL), fingerprints the files
(sha256, kept in the tagger card) and trains.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import InputError, UsageError
from ..prompts import LabelSet
from .encoders import resolve_encoder
from .types import TaggerExample, TaggerTrainResult, TaggerTrainSettings

Note = Callable[[str], None]


@dataclass(frozen=True)
class TaggerJobSpec:
    train_file: Path
    output: Path
    settings: TaggerTrainSettings = field(default_factory=TaggerTrainSettings)
    #: an alias (see ``encoders.ENCODERS``), a Hub repo id or a directory; None for the default encoder.
    encoder: str | None = None
    revision: str | None = None
    dev_file: Path | None = None
    #: the labels to learn (default: every label in the training data).
    labels: LabelSet | None = None
    offline: bool = False
    resume: bool = False
    overwrite: bool = False
    device: str = "auto"
    #: LoRA-only flags the command line gave (refused with a tagger head).
    lora_flags: tuple[str, ...] = ()


def file_sha256(path: Path) -> str:
    """sha256 of a file, or of a folder's files (sorted relative paths and contents)."""
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        if path.is_dir():
            digest.update(str(file.relative_to(path)).encode("utf-8") + b"\0")
        with file.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def read_examples(path: Path) -> list[TaggerExample]:
    """Tagger examples from any gold format ``read_gold`` reads (``b2ner extract`` output included)."""
    from ..evaluation.readers import read_gold

    return [
        TaggerExample(r.text, tuple(sorted((e.start, e.end, e.label) for e in r.entities))) for r in read_gold(path)
    ]


def check_job(spec: TaggerJobSpec) -> None:
    """Refuse LoRA-only flags and an occupied output before any data is read."""
    if spec.lora_flags:
        flag = spec.lora_flags[0]
        raise UsageError(
            f"{flag} is a LoRA option; it cannot be used with --head (which trains a tagger).",
            f"Drop {flag}, or drop --head to finetune a LoRA adapter.",
        )
    spec.settings.check()
    output = spec.output
    if not spec.resume and not spec.overwrite and output.exists() and (not output.is_dir() or any(output.iterdir())):
        raise UsageError(
            f"Output directory {output} is not empty.",
            "Pass --overwrite to replace it, or --resume to continue the run that is there.",
        )


def train_tagger_job(
    spec: TaggerJobSpec,
    *,
    note: Note,
    on_step: Callable[[dict[str, Any]], None] | None = None,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
) -> TaggerTrainResult:
    """Train the tagger a spec describes; the best epoch by dev strict F1 (or the last) ends in ``spec.output``."""
    from .train import train_tagger

    check_job(spec)
    train = read_examples(spec.train_file)
    if not train:
        raise InputError(f"{spec.train_file} holds no training examples.",
                         "Give a JSONL, B2NERD or CoNLL file with annotated sentences.")  # fmt: skip
    if not any(e.entities for e in train):
        raise UsageError("The training data has no entities at all.", "Annotate some entities before finetuning.")
    dev = read_examples(spec.dev_file) if spec.dev_file else []
    labels: Sequence[str] | None = spec.labels.names if spec.labels else None
    if spec.labels is not None and spec.labels.descriptions is not None:
        note("a tagger learns label names only; the label descriptions are not used.")
    known = set(labels) if labels is not None else {label for e in train for _, _, label in e.entities}
    unknown = sorted({label for e in dev for _, _, label in e.entities} - known)
    if unknown:
        note(f"dev labels unknown to training: {', '.join(unknown)}")
    fingerprint = {"train_sha256": file_sha256(spec.train_file)}
    if spec.dev_file is not None:
        fingerprint["dev_sha256"] = file_sha256(spec.dev_file)
    result = train_tagger(
        resolve_encoder(spec.encoder), train, spec.output, spec.settings, dev=dev, labels=labels,
        offline=spec.offline, revision=spec.revision, resume=spec.resume, device=spec.device, on_step=on_step,
        on_epoch=on_epoch, data_fingerprint=fingerprint,
    )  # fmt: skip
    skipped = {k: v for k, v in result.skipped.items() if v}
    if skipped:
        counts = ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in skipped.items())
        note(f"gold entities left out of training: {counts}")
    return result
