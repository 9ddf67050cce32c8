"""A trained tagger loaded from its directory: ``Tagger.load(path).predict(texts)``."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ModelError, UsageError
from .card import HEAD_WEIGHTS, read_card
from .types import UNCERTAINTY, TaggedSpan, TaggerTrainSettings

if TYPE_CHECKING:
    from ..retrieval.knn import KnnMixer


class Tagger:
    """An encoder and a task head that predict entities of a fixed label set, with scores and uncertainty."""

    def __init__(self, model: Any, tokenizer: Any, card: dict[str, Any], device: Any, path: Path | None = None) -> None:
        self.path = path
        self.model = model
        self.tokenizer = tokenizer
        self.card = card
        self.device = device
        self.labels: tuple[str, ...] = tuple(card["labels"])
        self.head: str = card["head"]
        self.settings = TaggerTrainSettings.from_dict(card.get("settings", {}))

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, device: str = "auto") -> Tagger:
        """Load a directory written by ``train_tagger`` (safetensors only; nothing is unpickled)."""
        from safetensors.torch import load_file
        from transformers import AutoModel, AutoTokenizer

        from ..models.loading import quiet_library_logs
        from .heads import build_head
        from .runtime import TaggerModule, pick_device

        quiet_library_logs()
        folder = Path(path).expanduser()
        card = read_card(folder)
        settings = TaggerTrainSettings.from_dict(card.get("settings", {}))
        try:
            tokenizer = AutoTokenizer.from_pretrained(folder)
            encoder = AutoModel.from_pretrained(folder, use_safetensors=True)
            state = load_file(str(folder / HEAD_WEIGHTS))
        except (OSError, ValueError) as exc:
            raise ModelError(f"Tagger `{path}` cannot be loaded ({exc}).", "Train it again.") from None
        head = build_head(card["head"], encoder.config.hidden_size, len(card["labels"]), settings,
                          dropout=_dropout(encoder.config))  # fmt: skip
        head.load_state_dict(state)
        target = pick_device(device)
        model = TaggerModule(encoder, head).to(target).eval()
        return cls(model, tokenizer, card, target, folder)

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write this tagger to ``path`` (built next to it, then renamed into place; nothing is pickled)."""
        import shutil

        from ..io.writers import write_json_atomic
        from .card import CARD, move_into_place

        output = Path(path).expanduser()
        output.parent.mkdir(parents=True, exist_ok=True)
        work = output.parent / f".{output.name}.saving"
        if work.exists():
            shutil.rmtree(work)
        work.mkdir()
        write_files(work, self.model.encoder, self.tokenizer, self.model.head)
        write_json_atomic(work / CARD, self.card)
        move_into_place(work, output)
        return output

    def kept_classes(self, labels: Sequence[str] | None) -> Any:
        """Class ids (0 = O) kept for a label subset; None for all labels."""
        import torch

        if labels is None:
            return None
        unknown = [label for label in labels if label not in self.labels]
        if unknown:
            raise UsageError(
                f"This tagger does not know the label{'s' if len(unknown) > 1 else ''} "
                f"{', '.join(f'`{x}`' for x in unknown)}.",
                f"Its labels are: {', '.join(self.labels)}.",
            )
        ids = sorted({self.labels.index(label) + 1 for label in labels})
        return torch.tensor([0, *ids], dtype=torch.long)

    def predict(
        self,
        texts: Sequence[str],
        *,
        labels: Sequence[str] | None = None,
        uncertainty: str = "confidence",
        batch_tokens: int = 8192,
        mc_samples: int = 8,
        knn: KnnMixer | None = None,
    ) -> list[list[TaggedSpan]]:
        """Entities of each text, sorted by position, as character offsets of that text.

        ``labels`` keeps a subset: spans of the other labels are removed before the overlap step (see heads.py),
        so a kept-label span is never lost to an overlapping span of a dropped label; labels and scores are
        those of the full label set.
        ``uncertainty`` is confidence | entropy | evidential | mc-dropout (crf: always None).
        ``knn``: a kNN-NER datastore of this tagger mixed into its distribution (see :func:`check_knn_uncertainty`).
        """
        from .runtime import run_windows, to_spans
        from .words import make_windows

        if uncertainty not in UNCERTAINTY:
            choices = ", ".join(UNCERTAINTY)
            raise UsageError(f"Unknown uncertainty method `{uncertainty}`.", f"Choose one of: {choices}.")
        if mc_samples < 1:
            raise UsageError(f"mc_samples must be at least 1, not {mc_samples}.")
        if batch_tokens < 1:
            raise UsageError(f"batch_tokens must be at least 1, not {batch_tokens}.")
        if knn is not None:
            check_knn_uncertainty(self.head, uncertainty)
        kept = self.kept_classes(labels)
        if not texts:
            return []
        windows = make_windows(self.tokenizer, texts, self.settings.max_length)
        method = None if self.head == "crf" else uncertainty
        decoded = run_windows(
            self.model, windows, pad_id=_pad_id(self.tokenizer), device=self.device, kept=kept, method=method,
            mc_samples=mc_samples, batch_tokens=batch_tokens, knn=knn,
        )  # fmt: skip
        return to_spans(windows, decoded, self.labels, len(texts))

    def describe(self) -> dict[str, Any]:
        """How predictions were made, for run metadata."""
        encoder = self.card.get("encoder", {})
        dtype = "bfloat16 (autocast)" if self.device.type == "cuda" else "float32"
        return {
            "tagger": None if self.path is None else str(self.path),
            "encoder": encoder.get("ref"),
            "encoder_repo": encoder.get("repo_id"),
            "revision": encoder.get("revision"),
            "head": self.head,
            "labels": list(self.labels),
            "loss": self.settings.loss,
            "device": str(self.device),
            "dtype": dtype,
            "b2ner_version": self.card.get("b2ner_version"),
        }


def check_knn_uncertainty(head: str, method: str) -> None:
    """With kNN the uncertainty comes from the mixed distribution, so only confidence and entropy apply."""
    if head != "crf" and method not in ("confidence", "entropy"):
        raise UsageError(
            f"--uncertainty {method} cannot be used with --knn: it reads the head's own scores, not the mixed "
            "distribution.",
            "Use --uncertainty confidence or entropy with --knn.",
        )


def write_files(folder: Path, encoder: Any, tokenizer: Any, head: Any) -> None:
    """The encoder (config + safetensors), its tokenizer files and ``head.safetensors``."""
    from safetensors.torch import save_file

    encoder.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    save_file({k: v.detach().contiguous().cpu() for k, v in head.state_dict().items()}, str(folder / HEAD_WEIGHTS))


def _dropout(config: Any) -> float:
    value = getattr(config, "hidden_dropout_prob", None)
    return float(value) if isinstance(value, (int, float)) else 0.1


def _pad_id(tokenizer: Any) -> int:
    pad = tokenizer.pad_token_id
    return int(pad) if pad is not None else 0
