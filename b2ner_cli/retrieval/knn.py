"""kNN-NER (local-models.md, section 5): the tagger's own classifier inputs over the training data are stored with
their gold classes; at inference each span (span heads) or word (token heads) looks up its nearest stored keys and
their classes are mixed into the head's distribution before the head's usual decoding.

- Keys: what each head's classifier reads (``head.knn_keys``): spanner, the span vector fed to its last Linear;
  biaffine, [h_s(start) ; h_e(end)]; crf and pointer, the word vector. L2-normalised float32, so that the inner
  product is the cosine.
- Values: the gold class of each key (``head.knn_values``): span heads, the span's class (0 = O); crf, the BIO tag;
  pointer, the start class and the end class (two values per key).
- Which keys: every word (token heads); for span heads every gold span plus the non-entity spans, each kept with
  probability ``negative_rate`` (seeded), since a sentence of n words has about ``max_span`` x n spans.
- Query: cosine top-k, weights softmax(cos / T), p_kNN(y) = sum of the weights of neighbours of class y;
  p = lambda p_kNN + (1 - lambda) p_model (``head.knn_mix``). lambda = 0 is exactly the plain tagger.

Search is exact: FAISS's flat inner-product index when ``faiss`` is installed (``pip install 'b2ner[faiss]'``),
else a chunked matrix product in torch. Both return the same neighbours (up to ties).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import UsageError

if TYPE_CHECKING:
    from torch import Tensor

    from ..taggers.tagger import Tagger
    from ..taggers.types import TaggerExample

DEFAULT_NEGATIVE_RATE = 0.2
#: query rows x stored keys per similarity block of the torch search (about 256 MB of float32).
_BLOCK = 1 << 26
BACKENDS = ("auto", "torch", "faiss")


@dataclass(frozen=True)
class KnnSpec:
    """``--knn STORE`` with optional overrides of the store's settings (None: the store's, tuned or default)."""

    store: str
    k: int | None = None
    lam: float | None = None
    temperature: float | None = None

    def __post_init__(self) -> None:
        check_params(self.k, self.lam, self.temperature)

    def to_dict(self) -> dict[str, object]:
        return {"store": self.store, "k": self.k, "lambda": self.lam, "temperature": self.temperature}


@dataclass(frozen=True)
class KnnParams:
    k: int
    lam: float
    temperature: float

    def to_dict(self) -> dict[str, object]:
        return {"k": self.k, "lambda": self.lam, "temperature": self.temperature}


def check_params(k: int | None, lam: float | None, temperature: float | None) -> None:
    if k is not None and k < 1:
        raise UsageError(f"--knn-k must be at least 1, not {k}.")
    if lam is not None and not 0.0 <= lam <= 1.0:
        raise UsageError(f"--knn-lambda must be within 0..1, not {lam}.")
    if temperature is not None and not temperature > 0:
        raise UsageError(f"--knn-temperature must be positive, not {temperature}.")


def available_backend(backend: str = "auto") -> str:
    """The search backend to use: ``faiss`` when asked for (or ``auto`` and installed), else ``torch``."""
    if backend not in BACKENDS:
        raise UsageError(f"Unknown kNN search backend `{backend}`.", f"Choose one of: {', '.join(BACKENDS)}.")
    if backend == "torch":
        return "torch"
    try:
        import faiss  # noqa: F401
    except ImportError:
        if backend == "faiss":
            raise UsageError("The FAISS search backend is not installed.", "pip install 'b2ner[faiss]'") from None
        return "torch"
    return "faiss"


class KnnIndex:
    """Stored keys (L2-normalised, float32, [N, D]) and their classes ([N, V]) with exact cosine search."""

    def __init__(self, keys: Tensor, values: Tensor, classes: int, backend: str = "auto") -> None:
        import torch

        if keys.ndim != 2 or values.ndim != 2 or keys.shape[0] != values.shape[0]:
            raise ValueError("keys [N, D] and values [N, V] must have one row per stored key")
        self._keys: Tensor | None = torch.nn.functional.normalize(keys.float(), dim=-1).contiguous()
        self.values = values.long()
        self.classes = classes
        self.size = int(keys.shape[0])
        self.backend = available_backend(backend)
        self._faiss: Any = None
        if self.backend == "faiss" and self.size:
            import faiss

            self._faiss = faiss.IndexFlatIP(keys.shape[1])
            self._faiss.add(self._keys.numpy())
            self._keys = None  # FAISS holds its own copy: one copy of the keys in memory, not two

    @property
    def keys(self) -> Tensor:
        """The stored keys, L2-normalised [N, D]."""
        import torch

        if self._keys is not None:
            return self._keys
        return torch.from_numpy(self._faiss.reconstruct_n(0, self.size))

    def __len__(self) -> int:
        return self.size

    def search(self, queries: Tensor, k: int) -> tuple[Tensor, Tensor]:
        """Cosine similarities and indices of the ``min(k, N)`` nearest keys of each query, nearest first."""
        import torch

        queries = torch.nn.functional.normalize(queries.detach().float().cpu(), dim=-1).contiguous()
        k = min(k, len(self))
        if k == 0 or queries.shape[0] == 0:
            return torch.zeros((queries.shape[0], k)), torch.zeros((queries.shape[0], k), dtype=torch.long)
        if self._faiss is not None:
            scores, indices = self._faiss.search(queries.numpy(), k)
            return torch.from_numpy(scores), torch.from_numpy(indices).long()
        rows = max(1, _BLOCK // len(self))
        found_s, found_i = [], []
        keys = self.keys
        for at in range(0, queries.shape[0], rows):
            top = torch.topk(queries[at : at + rows] @ keys.T, k, dim=-1)
            found_s.append(top.values)
            found_i.append(top.indices)
        return torch.cat(found_s), torch.cat(found_i)

    def neighbours(self, queries: Tensor, k: int) -> tuple[Tensor, Tensor]:
        """Similarities [Q, k] and the neighbours' classes [Q, k, V]."""
        scores, indices = self.search(queries, k)
        return scores, self.values[indices]


def knn_distribution(scores: Tensor, classes_of: Tensor, classes: int, temperature: float) -> Tensor:
    """p_kNN [Q, V, C]: softmax(cos / T) over each query's neighbours, summed per class.

    ``scores`` [Q, k] cosines, ``classes_of`` [Q, k, V] the neighbours' classes.
    """
    import torch

    q, k, v = classes_of.shape
    weights = torch.softmax(scores.float() / temperature, dim=-1)  # [Q, k]
    p = torch.zeros((q, v, classes), dtype=torch.float32)
    if k == 0:
        return p
    p.scatter_add_(2, classes_of.permute(0, 2, 1), weights.unsqueeze(1).expand(q, v, k).contiguous())
    return p


class KnnMixer:
    """An index and its settings, applied to a head's outputs: ``mixer.apply(head, out)``."""

    def __init__(self, index: KnnIndex, params: KnnParams) -> None:
        self.index = index
        self.params = params

    def query(self, head: Any, out: dict[str, Tensor], k: int) -> tuple[Tensor, Tensor, Tensor]:
        """The valid positions [B, P] and, for those, the cosines [Q, k] and classes [Q, k, V] of their
        neighbours."""
        keys, valid = head.knn_keys(out)
        valid = valid.bool()
        scores, classes_of = self.index.neighbours(keys[valid], k)
        return valid, scores, classes_of

    @staticmethod
    def mix(head: Any, out: dict[str, Tensor], valid: Tensor, scores: Tensor, classes_of: Tensor,
            params: KnnParams, classes: int) -> dict[str, Tensor]:  # fmt: skip
        """A copy of ``out`` with the interpolated distribution in it (invalid positions get p_kNN = 0)."""
        import torch

        k = min(params.k, scores.shape[1])
        p = knn_distribution(scores[:, :k], classes_of[:, :k], classes, params.temperature)
        full = torch.zeros((*valid.shape, p.shape[1], classes), dtype=torch.float32, device=valid.device)
        full[valid] = p.to(valid.device)
        mixed = dict(out)
        head.knn_mix(mixed, full, params.lam)
        return mixed

    def apply(self, head: Any, out: dict[str, Tensor]) -> dict[str, Tensor]:
        valid, scores, classes_of = self.query(head, out, self.params.k)
        return self.mix(head, out, valid, scores, classes_of, self.params, self.index.classes)


# ---------------------------------------------------------------------------------------------- building


def datastore_entries(
    tagger: Tagger,
    examples: Sequence[TaggerExample],
    *,
    negative_rate: float = DEFAULT_NEGATIVE_RATE,
    seed: int = 0,
    batch_tokens: int = 8192,
    progress: Callable[[int], None] | None = None,
) -> tuple[Tensor, Tensor, dict[str, int]]:
    """Keys [N, D] (normalised float32, CPU) and values [N, V] of the training ``examples`` through the tagger,
    and what was left out (as training counts it)."""
    import torch

    from ..taggers.runtime import autocast, collate, token_batches
    from ..taggers.tagger import _pad_id
    from ..taggers.train import fit_to_head
    from ..taggers.types import SPAN_HEADS
    from ..taggers.words import attach_entities, make_windows

    if not 0.0 <= negative_rate <= 1.0:
        raise UsageError(f"--negative-rate must be within 0..1, not {negative_rate}.")
    model: Any = tagger.model
    head: Any = model.head
    model.eval()
    label_ids = {label: i + 1 for i, label in enumerate(tagger.labels)}
    windows = make_windows(tagger.tokenizer, [e.text for e in examples], tagger.settings.max_length)
    skipped = attach_entities(windows, [e.entities for e in examples], label_ids)
    skipped.update(fit_to_head(windows, tagger.settings))
    generator = torch.Generator().manual_seed(seed)
    keys: list[Tensor] = []
    values: list[Tensor] = []
    pad = _pad_id(tagger.tokenizer)
    span = tagger.head in SPAN_HEADS
    with torch.inference_mode(), autocast(tagger.device):
        for indices in token_batches(windows, batch_tokens):
            chosen = [windows[i] for i in indices]
            batch = collate(chosen, pad, tagger.device)
            out = model(batch)
            key, valid = head.knn_keys(out)
            gold = head.knn_values(head.targets([w.entities for w in chosen], batch["word_mask"].shape[1]))
            keep = valid.bool().cpu()
            if span:  # all gold spans; non-entity spans sampled
                negative = gold[..., 0] == 0
                sampled = torch.rand(keep.shape, generator=generator) < negative_rate
                keep &= ~negative | sampled
            keys.append(torch.nn.functional.normalize(key.float().cpu()[keep], dim=-1))
            values.append(gold[keep])
            if progress is not None:
                progress(len({w.doc for w in chosen}))
    width = int(keys[0].shape[1]) if keys else 0
    all_keys = torch.cat(keys) if keys else torch.zeros((0, width))
    all_values = torch.cat(values) if values else torch.zeros((0, 1), dtype=torch.long)
    return all_keys.contiguous(), all_values.contiguous(), skipped


def iter_grid(ks: Sequence[int], lams: Sequence[float], temperatures: Sequence[float]) -> Iterator[KnnParams]:
    for k in ks:
        for temperature in temperatures:
            for lam in lams:
                yield KnnParams(k, lam, temperature)


def default_grid(stored: int) -> tuple[list[int], list[float], list[float]]:
    """The --tune grid: k in {4, 16, 64, 256, all} (up to the store's size), lambda in 0..0.9, T in 0.01..0.5
    (log-spaced, with the published settings' range 0.001..0.07 covered at its upper end)."""
    ks = sorted({min(k, stored) for k in (4, 16, 64, 256)} | ({stored} if stored <= 1024 else set()))
    lams = [round(0.1 * i, 1) for i in range(10)]
    temperatures = [0.01, 0.02, 0.05, 0.1, 0.2, 0.5]
    return [k for k in ks if k >= 1], lams, temperatures
