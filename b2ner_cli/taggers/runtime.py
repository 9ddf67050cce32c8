"""Encoder + head at work: batching windows, word vectors, and decoding back to character spans."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from .heads import Candidate
from .types import TaggedSpan
from .words import Window

if TYPE_CHECKING:
    from ..retrieval.knn import KnnMixer


def pick_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def autocast(device: torch.device) -> contextlib.AbstractContextManager[Any]:
    """bf16 autocast on CUDA; nothing elsewhere."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def token_batches(windows: Sequence[Window], batch_tokens: int, max_windows: int | None = None) -> list[list[int]]:
    """Window indices sorted by length and packed so that rows x longest row stays under ``batch_tokens``."""
    order = sorted(range(len(windows)), key=lambda i: len(windows[i].input_ids))
    batches: list[list[int]] = []
    current: list[int] = []
    for i in order:
        width = len(windows[i].input_ids)
        full = max_windows is not None and len(current) >= max_windows
        if current and ((len(current) + 1) * width > batch_tokens or full):
            batches.append(current)
            current = []
        current.append(i)
    if current:
        batches.append(current)
    return batches


def collate(windows: Sequence[Window], pad_id: int, device: torch.device) -> dict[str, Tensor]:
    width = max(len(w.input_ids) for w in windows)
    words = max(len(w.words) for w in windows)
    input_ids = torch.full((len(windows), width), pad_id, dtype=torch.long)
    attention = torch.zeros((len(windows), width), dtype=torch.long)
    word_tokens = torch.zeros((len(windows), words), dtype=torch.long)
    word_mask = torch.zeros((len(windows), words), dtype=torch.bool)
    for b, window in enumerate(windows):
        input_ids[b, : len(window.input_ids)] = torch.tensor(window.input_ids)
        attention[b, : len(window.input_ids)] = 1
        word_tokens[b, : len(window.words)] = torch.tensor(window.word_tokens)
        word_mask[b, : len(window.words)] = True
    batch = {"input_ids": input_ids, "attention_mask": attention, "word_tokens": word_tokens, "word_mask": word_mask}
    return {k: v.to(device) for k, v in batch.items()}


class TaggerModule(nn.Module):
    """The encoder and the head as one module (one state dict, one optimizer)."""

    def __init__(self, encoder: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = head

    def forward(self, batch: dict[str, Tensor], targets: dict[str, Tensor] | None = None,
                kept: Tensor | None = None) -> dict[str, Tensor]:  # fmt: skip
        hidden = self.encoder(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
        index = batch["word_tokens"].unsqueeze(-1).expand(-1, -1, hidden.shape[-1])
        words = hidden.gather(1, index)
        out: dict[str, Tensor] = self.head(words, batch["word_mask"], targets=targets, kept=kept)
        return out


@contextlib.contextmanager
def dropout_on(module: nn.Module) -> Iterator[None]:
    """Dropout layers in training mode (for MC dropout); everything else as it was."""
    changed = [m for m in module.modules() if isinstance(m, nn.Dropout) and not m.training]
    for m in changed:
        m.train()
    try:
        yield
    finally:
        for m in changed:
            m.eval()


def run_windows(
    model: TaggerModule,
    windows: Sequence[Window],
    *,
    pad_id: int,
    device: torch.device,
    kept: Tensor | None = None,
    method: str | None = None,
    mc_samples: int = 8,
    batch_tokens: int = 8192,
    knn: KnnMixer | None = None,
) -> list[list[Candidate]]:
    """Decoded candidates of every window, in window order (the model is put in eval mode).

    ``knn``: the kNN-NER datastore mixed into the head's distribution before decoding (retrieval/knn.py).
    """
    model.eval()
    head: Any = model.head
    results: list[list[Candidate]] = [[] for _ in windows]
    kept_dev = kept.to(device) if kept is not None else None
    with torch.inference_mode(), autocast(device):
        for indices in token_batches(windows, batch_tokens):
            batch = collate([windows[i] for i in indices], pad_id, device)
            out = model(batch, kept=kept_dev)
            if knn is not None:
                out = knn.apply(head, out)
            mc: list[dict[str, Tensor]] = []
            if method == "mc-dropout":
                with dropout_on(model):
                    mc = [model(batch, kept=kept_dev) for _ in range(mc_samples)]
            decoded = head.decode(out, batch["word_mask"], kept=kept_dev, method=method, mc=mc)
            for i, found in zip(indices, decoded, strict=True):
                results[i] = found
    return results


def to_spans(windows: Sequence[Window], decoded: Sequence[Sequence[Candidate]], labels: Sequence[str],
             documents: int) -> list[list[TaggedSpan]]:  # fmt: skip
    """Word-level candidates back to character spans of each document, sorted by position."""
    spans: list[list[TaggedSpan]] = [[] for _ in range(documents)]
    for window, found in zip(windows, decoded, strict=True):
        for first, last, cls, score, u in found:
            spans[window.doc].append(
                TaggedSpan(window.words[first][0], window.words[last][1], labels[cls - 1], float(score),
                           None if u is None else float(u))
            )  # fmt: skip
    for doc in spans:
        doc.sort(key=lambda s: (s.start, s.end, s.label))
    return spans
