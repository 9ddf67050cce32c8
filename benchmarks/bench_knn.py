"""kNN-NER: search latency and memory by store size, and tagger F1 with and without kNN on a small noisy task.

Part 1 (search): random keys of a BERT-base tagger's width (768), L2-normalised, at 10k, 100k and 1M stored keys;
a batch of ``--queries`` queries (the spans of a few sentences), k = 64. Exact search in torch (what b2ner uses
without FAISS: blocked matrix product + top-k) against FAISS's exact flat inner-product index (what b2ner uses with
``b2ner[faiss]``) and FAISS's approximate IVF index (nlist = sqrt(N) trained on 40 nlist keys, nprobe 16;
recall@64 against the exact neighbours; random keys have no clusters, the worst case for IVF). Prints build
seconds, query milliseconds per batch and per query, and the memory the index holds.

Part 2 (accuracy): a synthetic task (English templates, persons, places, organisations) whose training labels are
noisy (each gold entity relabelled at random with probability ``--noise``, dropped with probability
``--noise / 2``); dev and test are clean and hold held-out name/template combinations. A tiny BERT tagger (spanner
head, WordPiece tokenizer trained on the spot, random init: there is no Hub here) is trained on the noisy data; the
store is built from the same noisy data and ``--tune``d on dev; the test F1 is printed without kNN (lambda 0) and
with the tuned setting, several seeds.

    python benchmarks/bench_knn.py                      # both parts
    python benchmarks/bench_knn.py --part search --sizes 10000,100000
    python benchmarks/bench_knn.py --part f1 --seeds 3
"""

from __future__ import annotations

import argparse
import gc
import random
import resource
import statistics
import tempfile
import time
from pathlib import Path

import torch

from b2ner_cli.retrieval.knn import KnnIndex


def rss() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * resource.getpagesize()


def timed(fn, repeats: int) -> float:  # type: ignore[no-untyped-def]
    best = float("inf")
    for _ in range(repeats):
        began = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - began)
    return best


def measure(name: str, size: int, build, search, exact: torch.Tensor | None, queries: int, repeats: int):  # type: ignore[no-untyped-def]
    """Build an index (timed, with the resident memory it adds), check its neighbours against ``exact`` and time a
    batch of queries; prints one row and returns the neighbours found."""
    gc.collect()
    before = rss()
    began = time.perf_counter()
    index = build()
    seconds_build = time.perf_counter() - began
    held = (rss() - before) / 2**20
    found = search(index)
    recall = 1.0 if exact is None else _recall(found, exact)
    seconds = timed(lambda: search(index), repeats)
    print(f"{size:>9} {name:<14} {seconds_build:>8.2f} {seconds * 1e3:>9.1f} {seconds * 1e3 / queries:>9.3f} "
          f"{held:>9.0f} {recall:>7.3f}")  # fmt: skip
    return found


def search_part(sizes: list[int], dim: int, queries: int, k: int, repeats: int) -> None:
    try:
        import faiss
    except ImportError:
        faiss = None
    print(f"Search: {dim} dimensions, {queries} queries per batch, k = {k}, best of {repeats}; torch threads "
          f"{torch.get_num_threads()}")  # fmt: skip
    print(f"{'keys':>9} {'backend':<14} {'build s':>8} {'batch ms':>9} {'ms/query':>9} {'index MB':>9} {'recall':>7}")
    generator = torch.Generator().manual_seed(0)
    for size in sizes:
        keys = torch.nn.functional.normalize(torch.randn(size, dim, generator=generator), dim=-1)
        values = torch.zeros(size, 1, dtype=torch.long)
        q = torch.randn(queries, dim, generator=generator)
        exact = measure("torch exact", size, lambda: KnnIndex(keys, values, 2, backend="torch"),  # noqa: B023
                        lambda index: index.search(q, k)[1], None, queries, repeats)  # noqa: B023  # fmt: skip
        if faiss is None:
            print(f"{size:>9} faiss          (not installed: pip install 'b2ner[faiss]')")
            continue
        measure("faiss flat", size, lambda: KnnIndex(keys, values, 2, backend="faiss"),  # noqa: B023
                lambda index: index.search(q, k)[1], exact, queries, repeats)  # noqa: B023  # fmt: skip
        nlist = int(size**0.5)
        qn = torch.nn.functional.normalize(q, dim=-1).numpy()

        def ivf_index(nlist: int = nlist, data=keys.numpy()):  # type: ignore[no-untyped-def]
            ivf = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, nlist, faiss.METRIC_INNER_PRODUCT)
            ivf.train(data[: min(len(data), 40 * nlist)])
            ivf.add(data)
            ivf.nprobe = 16
            return ivf

        measure("faiss ivf", size, ivf_index, lambda index: torch.from_numpy(index.search(qn, k)[1]),  # noqa: B023
                exact, queries, repeats)  # fmt: skip

    print("index MB: resident memory the index added (torch and faiss flat hold one normalised float32 copy, "
          "N x D x 4 bytes); recall: share of the exact 64 neighbours found.")


def _recall(found: torch.Tensor, exact: torch.Tensor) -> float:
    hits = sum(len(set(a.tolist()) & set(b.tolist())) for a, b in zip(found, exact, strict=True))
    return hits / exact.numel()


# ---------------------------------------------------------------------------------------------- accuracy

PERSONS = ["Alice Moore", "Bob Stone", "Carol", "David Lee", "Emma Hart", "Frank Wu", "Grace", "Henry Ford",
           "Irene Adler", "Jack", "Karen Lin", "Leo Gold"]  # fmt: skip
PLACES = ["Paris", "Berlin", "New York", "Tokyo", "Rome", "Oslo", "Cairo", "Lima", "Hong Kong", "Madrid"]
ORGS = ["Acme Corp", "Globex", "Initech", "Umbrella", "Stark Industries", "Wayne Enterprises", "Hooli", "Vandelay"]
TEMPLATES = [
    "{p} lives in {l} .", "Yesterday {p} flew to {l} for {o} .", "In {l} , {p} met friends from {o} .",
    "{p} joined {o} last year .", "{o} opened an office in {l} .", "{p} and {q} visited {l} .",
    "Reporters in {l} asked {p} about {o} .", "{o} hired {p} in {l} .",
]  # fmt: skip
LABELS = ("person", "location", "organization")


def sentence(template: str, rng: random.Random) -> tuple[str, list[tuple[int, int, str]]]:
    fills = {"p": (rng.choice(PERSONS), "person"), "q": (rng.choice(PERSONS), "person"),
             "l": (rng.choice(PLACES), "location"), "o": (rng.choice(ORGS), "organization")}  # fmt: skip
    text, entities = "", []
    for piece in template.replace("{", "\0{").replace("}", "}\0").split("\0"):
        if piece.startswith("{"):
            name, label = fills[piece[1]]
            entities.append((len(text), len(text) + len(name), label))
            text += name
        else:
            text += piece
    return text, entities


def task(seed: int, train: int, noise: float) -> tuple[list, list, list]:  # type: ignore[type-arg]
    from b2ner_cli.taggers import TaggerExample

    rng = random.Random(seed)
    seen: set[str] = set()
    noisy, dev, test = [], [], []
    while len(noisy) < train:
        text, gold = sentence(rng.choice(TEMPLATES), rng)
        seen.add(text)
        kept = []
        for start, end, label in gold:
            roll = rng.random()
            if roll < noise / 2:
                continue  # dropped
            if roll < noise / 2 + noise:
                label = rng.choice([x for x in LABELS if x != label])
            kept.append((start, end, label))
        noisy.append(TaggerExample(text, tuple(kept)))
    while len(dev) < 100 or len(test) < 200:
        text, gold = sentence(rng.choice(TEMPLATES), rng)
        if text in seen:
            continue
        seen.add(text)
        (dev if len(dev) < 100 else test).append(TaggerExample(text, tuple(gold)))
    return noisy, dev, test


def f1_part(seeds: int, train: int, noise: float, epochs: int) -> None:
    import json

    from b2ner_cli.retrieval.knn import KnnMixer
    from b2ner_cli.retrieval.store import build_store, open_store
    from b2ner_cli.taggers import Tagger, TaggerTrainSettings, train_tagger
    from b2ner_cli.taggers.scoring import strict_f1
    from b2ner_cli.testing import build_bert, build_wordpiece_tokenizer, save

    print(f"\nAccuracy: {train} noisy training sentences (noise {noise}: relabelled {noise:.0%}, dropped "
          f"{noise / 2:.0%}), 100 clean dev, 200 clean test; tiny BERT (hidden 64, 2 layers), spanner, {epochs} "
          "epochs; store --tune'd on dev; strict test F1")  # fmt: skip
    print(f"{'seed':>4} {'plain':>7} {'kNN':>7} {'gain':>7}  tuned (k, lambda, T)")
    gains = []
    for seed in range(seeds):
        noisy, dev, test = task(seed, train, noise)
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            tokenizer = build_wordpiece_tokenizer([e.text for e in noisy + dev + test])
            encoder = save(build_bert(len(tokenizer), hidden=64, seed=seed), tokenizer, root / "encoder")
            settings = TaggerTrainSettings(head="spanner", epochs=epochs, batch_size=16, encoder_lr=1e-3,
                                           head_lr=3e-3, max_span_words=4, seed=seed)  # fmt: skip
            train_tagger(str(encoder), noisy, root / "tagger", settings, device="cpu")

            def write(path: Path, rows: list) -> Path:  # type: ignore[type-arg]
                with path.open("w", encoding="utf-8") as handle:
                    for i, e in enumerate(rows):
                        entities = [{"start": s, "end": t, "label": lab} for s, t, lab in e.entities]
                        handle.write(json.dumps({"id": str(i), "text": e.text, "entities": entities}) + "\n")
                return path

            summary = build_store(write(root / "train.jsonl", noisy), root / "tagger", root / "store",
                                  tune=write(root / "dev.jsonl", dev), device="cpu")  # fmt: skip
            tagger = Tagger.load(root / "tagger", device="cpu")
            store = open_store(root / "store")
            params = store.params()
            mixer = KnnMixer(store.knn_index(), params)
            gold = [list(e.entities) for e in test]
            texts = [e.text for e in test]
            plain = strict_f1(gold, [[(s.start, s.end, s.label) for s in d] for d in tagger.predict(texts)])["f1"]
            mixed = tagger.predict(texts, knn=mixer)
            knn = strict_f1(gold, [[(s.start, s.end, s.label) for s in d] for d in mixed])["f1"]
            gains.append(knn - plain)
            assert summary.tuned is not None
            print(f"{seed:>4} {plain * 100:>7.2f} {knn * 100:>7.2f} {(knn - plain) * 100:>+7.2f}  "
                  f"({params.k}, {params.lam}, {params.temperature})")  # fmt: skip
    print(f"mean gain {statistics.mean(gains) * 100:+.2f} F1 over {seeds} seeds")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=["all", "search", "f1"], default="all")
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--queries", type=int, default=256)
    parser.add_argument("--k", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--train", type=int, default=300)
    parser.add_argument("--noise", type=float, default=0.3)
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    if args.part in ("all", "search"):
        search_part([int(x) for x in args.sizes.split(",")], args.dim, args.queries, args.k, args.repeats)
    if args.part in ("all", "f1"):
        f1_part(args.seeds, args.train, args.noise, args.epochs)


if __name__ == "__main__":
    main()
