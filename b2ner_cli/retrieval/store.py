"""The datastore: ``store.json`` (what made it, and the kNN settings), ``vectors.safetensors`` (one L2-normalised
float32 vector per training sentence), ``sentences.jsonl`` (each sentence's text and gold answer in B2NER grammar)
and ``knn.safetensors`` (the kNN-NER keys and values, see knn.py).

A sentence vector is the mean of the tagger encoder's last-layer outputs over the sentence's real subwords (special
and padding tokens excluded). Sentence search is exact cosine top-k in torch. Nothing is pickled.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import InputError, ModelError, UsageError
from ..taggers.card import CARD, HEAD_WEIGHTS, move_into_place, read_card
from ..taggers.types import SPAN_HEADS, TaggerExample
from .knn import DEFAULT_NEGATIVE_RATE

if TYPE_CHECKING:
    from torch import Tensor

    from ..taggers.tagger import Tagger
    from .knn import KnnIndex, KnnParams, KnnSpec

STORE_JSON = "store.json"
VECTORS = "vectors.safetensors"
SENTENCES = "sentences.jsonl"
KNN = "knn.safetensors"
FORMAT = "b2ner-store"
FORMAT_VERSION = 1
#: defaults recorded for kNN interpolation (k neighbours, lambda, temperature T); not used by demonstrations.
DEFAULT_K = 64
DEFAULT_LAMBDA = 0.3
DEFAULT_TEMPERATURE = 0.05

Progress = Callable[[int, int], None]
#: what a kNN key is, per head (recorded in store.json).
KEY_DESCRIPTION = {
    "spanner": "span vector fed to the classifier's last Linear, L2-normalised, float32",
    "biaffine": "[h_start ; h_end] biaffine projections of the span's first and last word, L2-normalised, float32",
    "crf": "word vector fed to the emission layer, L2-normalised, float32",
    "pointer": "word vector fed to the start and end classifiers, L2-normalised, float32",
}


@dataclass(frozen=True)
class StoreSummary:
    """What ``b2ner index --json`` prints."""

    store: str
    sentences: int
    dimension: int
    tagger: str
    #: kNN-NER keys stored (spans or words) and their width.
    keys: int = 0
    key_dimension: int = 0
    #: the --tune result (best settings, dev F1 with them and with lambda 0), when tuned.
    tuned: dict[str, object] | None = None

    def to_dict(self) -> dict[str, object]:
        return {"store": self.store, "sentences": self.sentences, "dimension": self.dimension, "tagger": self.tagger,
                "keys": self.keys, "key_dimension": self.key_dimension, "tuned": self.tuned}  # fmt: skip


@dataclass(frozen=True)
class Sentence:
    text: str
    #: gold answer in B2NER grammar: ``label: mention; ...`` or ``None``.
    answer: str


def tagger_fingerprint(path: str | os.PathLike[str]) -> str:
    """sha256 of the tagger's card and head weights: a store is only valid with the tagger that made it."""
    folder = Path(path).expanduser()
    read_card(folder)
    digest = hashlib.sha256()
    for name in (CARD, HEAD_WEIGHTS):
        try:
            data = (folder / name).read_bytes()
        except OSError as exc:
            raise ModelError(f"Tagger `{path}` cannot be read ({exc}).") from None
        digest.update(name.encode() + b"\0" + len(data).to_bytes(8, "little") + data)
    return digest.hexdigest()


def sentence_vectors(tagger: Tagger, texts: Sequence[str], *, batch_size: int = 32,
                     progress: Progress | None = None) -> Tensor:  # fmt: skip
    """``[len(texts), hidden]`` float32 on the CPU, L2-normalised: mean-pooled last-layer encoder outputs over
    each text's real subwords (the first ``max_length`` subwords of a longer text)."""
    import torch

    from ..taggers.runtime import autocast

    encoder: Any = tagger.model.encoder
    encoder.eval()
    hidden = int(encoder.config.hidden_size)
    out = torch.zeros((len(texts), hidden), dtype=torch.float32)
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))  # similar lengths pad less
    done = 0
    with torch.inference_mode(), autocast(tagger.device):
        for first in range(0, len(order), batch_size):
            indices = order[first : first + batch_size]
            encoded = tagger.tokenizer(
                [texts[i] for i in indices], truncation=True, max_length=tagger.settings.max_length, padding=True,
                return_special_tokens_mask=True, return_tensors="pt",
            )  # fmt: skip
            mask = encoded["attention_mask"].bool() & ~encoded["special_tokens_mask"].bool()
            states = encoder(input_ids=encoded["input_ids"].to(tagger.device),
                             attention_mask=encoded["attention_mask"].to(tagger.device)).last_hidden_state  # fmt: skip
            weights = mask.to(tagger.device).unsqueeze(-1).float()
            pooled = (states.float() * weights).sum(1) / weights.sum(1).clamp(min=1.0)
            out[indices] = pooled.cpu()
            done += len(indices)
            if progress is not None:
                progress(done, len(texts))
    return torch.nn.functional.normalize(out, dim=-1)


class Store:
    """An opened datastore: its metadata, vectors and sentences."""

    def __init__(self, path: Path, meta: dict[str, Any], vectors: Tensor, sentences: list[Sentence]) -> None:
        self.path = path
        self.meta = meta
        self.vectors = vectors
        self.sentences = sentences

    @property
    def fingerprint(self) -> str:
        return str(self.meta["tagger_fingerprint"])

    @property
    def tagger_path(self) -> str:
        return str(self.meta["tagger"])

    def search(self, queries: Tensor, k: int) -> tuple[Tensor, Tensor]:
        """Exact cosine top-k: ``(scores, indices)``, each ``[len(queries), min(k, size)]``, best first."""
        import torch

        if k < 1:
            raise UsageError(f"k must be at least 1, not {k}.")
        queries = torch.nn.functional.normalize(queries.float().cpu(), dim=-1)
        scores = queries @ self.vectors.T
        top = torch.topk(scores, min(k, self.vectors.shape[0]), dim=-1)
        return top.values, top.indices

    def knn_index(self, backend: str = "auto") -> KnnIndex:
        """The kNN-NER keys and values, read from knn.safetensors and checked."""
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        from .knn import KnnIndex

        info = self.meta.get("knn")
        if not isinstance(info, dict) or not (self.path / KNN).is_file():
            raise UsageError(
                f"Store {self.path} has no kNN keys (it was built by an older b2ner).",
                f"Rebuild it: b2ner index TRAIN -m {self.tagger_path} -o {self.path} --overwrite.",
            )
        try:
            tensors = load_file(str(self.path / KNN))
            keys, values = tensors["keys"], tensors["values"]
            classes = int(info["classes"])
        except (OSError, KeyError, TypeError, ValueError, SafetensorError) as exc:
            raise InputError(f"Store {self.path} cannot be read ({exc}).",
                             "Build it again with `b2ner index`.") from None  # fmt: skip
        rows = keys.shape[0]
        if keys.ndim != 2 or values.ndim != 2 or rows != values.shape[0] or rows != info.get("keys"):
            raise InputError(f"Store {self.path} is inconsistent: {rows} kNN keys for {values.shape[0]} values.",
                             "Build it again with `b2ner index`.")  # fmt: skip
        if keys.shape[0] == 0:
            raise UsageError(f"Store {self.path} holds no kNN keys: no training word could be read by the tagger.",
                             "Index training data with sentences and entities.")  # fmt: skip
        if int(values.max()) >= classes or int(values.min()) < 0:
            raise InputError(f"Store {self.path} is inconsistent: a kNN value lies outside its {classes} classes.",
                             "Build it again with `b2ner index`.")  # fmt: skip
        return KnnIndex(keys, values, classes, backend)

    def params(self, spec: KnnSpec | None = None) -> KnnParams:
        """The kNN settings: the run's overrides, else the store's (tuned or default)."""
        from .knn import KnnParams

        defaults = self.meta.get("defaults", {})
        k = spec.k if spec is not None and spec.k is not None else int(defaults.get("k", DEFAULT_K))
        lam = spec.lam if spec is not None and spec.lam is not None else float(defaults.get("lambda", DEFAULT_LAMBDA))
        t = spec.temperature if spec is not None and spec.temperature is not None else None
        temperature = t if t is not None else float(defaults.get("temperature", DEFAULT_TEMPERATURE))
        return KnnParams(k, lam, temperature)

    def check_tagger(self, tagger_path: str | os.PathLike[str]) -> None:
        """Refuse a tagger other than the one that made this store (by fingerprint)."""
        check_fingerprint(self.path, self.meta, tagger_path)


def check_fingerprint(store: Path, meta: dict[str, Any], tagger_path: str | os.PathLike[str]) -> None:
    """UsageError unless ``tagger_path`` is the tagger that made the store (its card and head weights)."""
    ours = str(meta.get("tagger_fingerprint"))
    theirs = tagger_fingerprint(tagger_path)
    if theirs != ours:
        raise UsageError(
            f"Store {store} was made by tagger {ours[:12]}, not by `{tagger_path}` ({theirs[:12]}).",
            f"Rebuild it: b2ner index TRAIN -m {tagger_path} -o {store} --overwrite.",
        )


def read_store_meta(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A store's ``store.json`` (what made it), checked; the vectors and keys are not read."""
    folder = Path(path).expanduser()
    if not (folder / STORE_JSON).is_file():
        raise InputError(f"{path} is not a b2ner store: it has no {STORE_JSON}.",
                         "Build one with `b2ner index TRAIN -m TAGGER -o STORE`.")  # fmt: skip
    try:
        meta = json.loads((folder / STORE_JSON).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise InputError(f"Store {path} cannot be read ({exc}).", "Build it again with `b2ner index`.") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise InputError(f"{path}/{STORE_JSON} is not a b2ner store file.")
    version = meta.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise InputError(f"Store {path} uses format version {version}; this b2ner reads up to {FORMAT_VERSION}.",
                         "Upgrade b2ner, or build the store again.")  # fmt: skip
    return meta


def check_knn_store(path: str | os.PathLike[str], tagger: str | os.PathLike[str]) -> dict[str, Any]:
    """Before a ``--knn`` run loads anything: the store exists, holds kNN keys, and was made by ``tagger``."""
    if not (Path(path).expanduser() / STORE_JSON).is_file():
        raise UsageError(f"--knn {path} is not a b2ner store (it has no {STORE_JSON}).",
                         f"Build one with `b2ner index TRAIN -m {tagger} -o STORE`.")  # fmt: skip
    meta = read_store_meta(path)
    check_fingerprint(Path(path).expanduser(), meta, tagger)
    if not isinstance(meta.get("knn"), dict):
        raise UsageError(f"Store {path} has no kNN keys (it was built by an older b2ner).",
                         f"Rebuild it: b2ner index TRAIN -m {tagger} -o {path} --overwrite.")  # fmt: skip
    return meta


def open_store(path: str | os.PathLike[str], tagger: str | os.PathLike[str] | None = None) -> Store:
    """Read a store directory; with ``tagger``, check that this tagger made it (else the store's own tagger)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    folder = Path(path).expanduser()
    meta = read_store_meta(folder)
    try:
        lines = (folder / SENTENCES).read_text(encoding="utf-8").splitlines()
        sentences = [Sentence(row["text"], row["answer"]) for row in map(json.loads, lines)]
        vectors = load_file(str(folder / VECTORS))["vectors"]
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, SafetensorError) as exc:
        raise InputError(f"Store {path} cannot be read ({exc}).", "Build it again with `b2ner index`.") from None
    if vectors.ndim != 2 or vectors.shape[0] != len(sentences) or len(sentences) != meta.get("sentences"):
        raise InputError(f"Store {path} is inconsistent: {vectors.shape[0]} vectors for {len(sentences)} sentences.",
                         "Build it again with `b2ner index`.")  # fmt: skip
    store = Store(folder, meta, vectors.float(), sentences)
    store.check_tagger(tagger if tagger is not None else store.tagger_path)
    return store


def check_store_output(output: Path, overwrite: bool, inputs: Sequence[Path] = ()) -> None:
    """Refuse an existing non-empty ``output`` without ``--overwrite``, a file, or an output holding an input."""
    if output.exists() and not output.is_dir():
        raise UsageError(f"-o {output} is a file; a store is a directory.", "Give -o a new directory.")
    if output.is_dir() and any(output.iterdir()):
        if not overwrite:
            raise UsageError(f"Output directory {output} is not empty.", "Pass --overwrite to replace it.")
        real = output.resolve()
        for source in inputs:
            if real == source.resolve() or real in source.resolve().parents or real in Path.cwd().resolve().parents \
                    or real == Path.cwd().resolve():  # fmt: skip
                raise UsageError(f"--overwrite would replace {output}, which holds an input or the current directory.",
                                 "Give -o a new directory.")  # fmt: skip


def build_store(
    train: Path,
    tagger_path: str | os.PathLike[str],
    output: Path,
    *,
    overwrite: bool = False,
    batch_size: int = 32,
    device: str = "auto",
    negative_rate: float = DEFAULT_NEGATIVE_RATE,
    seed: int = 0,
    tune: Path | None = None,
    progress: Progress | None = None,
) -> StoreSummary:
    """Index the sentences of ``train`` (any format ``read_gold`` reads) with the tagger into ``output`` (built in a
    directory beside it, then renamed into place): sentence vectors for demonstrations, kNN-NER keys and values
    for interpolation; with ``tune``, the kNN settings that score best on that dev file become the store's."""
    from safetensors.torch import save_file

    from .. import __version__
    from ..evaluation.readers import read_gold
    from ..io.writers import write_json_atomic
    from ..taggers.tagger import Tagger
    from .knn import KnnIndex, datastore_entries

    output = Path(output).expanduser()
    tagger_dir = Path(tagger_path).expanduser()
    check_store_output(output, overwrite, [train, tagger_dir])
    fingerprint = tagger_fingerprint(tagger_dir)
    records = [r for r in read_gold(train) if r.text.strip()]
    if not records:
        raise InputError(f"{train} has no sentences to index.", "Give a training file with at least one sentence.")
    examples = [TaggerExample(r.text, tuple(sorted((e.start, e.end, e.label) for e in r.entities))) for r in records]
    dev = _dev_examples(tune) if tune is not None else None
    tagger = Tagger.load(tagger_dir, device=device)
    total = 2 * len(records) + (len(dev) if dev is not None else 0)
    done = [0]

    def step(count: int) -> None:
        done[0] += count
        if progress is not None:
            progress(done[0], total)

    vectors = sentence_vectors(tagger, [r.text for r in records], batch_size=batch_size,
                               progress=lambda n, _: step(n - done[0]))  # fmt: skip
    keys, values, skipped = datastore_entries(tagger, examples, negative_rate=negative_rate, seed=seed, progress=step)
    classes = int(tagger.model.head.knn_classes)
    tuned = None
    defaults: dict[str, object] = {"k": DEFAULT_K, "lambda": DEFAULT_LAMBDA, "temperature": DEFAULT_TEMPERATURE}
    if dev is not None and tune is not None:
        from .tune import tune_knn

        result = tune_knn(tagger, KnnIndex(keys, values, classes), dev, progress=step)
        defaults = result.best.to_dict()
        tuned = {"dev": str(tune), **result.to_dict()}
    output.parent.mkdir(parents=True, exist_ok=True)
    work = output.parent / f".{output.name}.indexing"
    if work.exists():
        shutil.rmtree(work)
    work.mkdir()
    try:
        save_file({"vectors": vectors.contiguous()}, str(work / VECTORS))
        save_file({"keys": keys, "values": values}, str(work / KNN))
        with open(work / SENTENCES, "w", encoding="utf-8") as fh:
            for record in records:
                fh.write(json.dumps({"id": record.id, "text": record.text, "answer": record.answer()},
                                    ensure_ascii=False) + "\n")  # fmt: skip
        meta = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "tagger": str(tagger_dir.resolve()),
            "tagger_fingerprint": fingerprint,
            "train": str(train),
            "sentences": len(records),
            "dimension": int(vectors.shape[1]),
            "vector": "mean-pooled last-layer encoder output over real subwords, L2-normalised, float32",
            "defaults": defaults,
            "tuned": tuned,
            "knn": {
                "head": tagger.head,
                "keys": int(keys.shape[0]),
                "dimension": int(keys.shape[1]),
                "values_per_key": int(values.shape[1]),
                "classes": classes,
                "key": KEY_DESCRIPTION[tagger.head],
                "negative_rate": negative_rate if tagger.head in SPAN_HEADS else None,
                "seed": seed,
                "skipped": skipped,
            },
            "b2ner_version": __version__,
        }
        write_json_atomic(work / STORE_JSON, meta)
        move_into_place(work, output)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return StoreSummary(str(output), len(records), int(vectors.shape[1]), str(tagger_dir), int(keys.shape[0]),
                        int(keys.shape[1]), tuned)


def _dev_examples(path: Path) -> list[TaggerExample]:
    from ..evaluation.readers import read_gold

    dev = [TaggerExample(r.text, tuple(sorted((e.start, e.end, e.label) for e in r.entities)))
           for r in read_gold(path) if r.text.strip()]  # fmt: skip
    if not dev:
        raise InputError(f"--tune {path} has no sentences to score.", "Give a dev file with gold entities.")
    return dev
