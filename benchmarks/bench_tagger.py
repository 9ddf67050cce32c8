"""Inference throughput of a b2ner tagger (spanner head) against transformers' token-classification pipeline.

Both sides use the same BERT-base-shaped encoder (12 layers, hidden 768, random weights, a WordPiece tokenizer
trained on the corpus on the spot) on the same synthetic documents. The baseline is
``pipeline("token-classification", aggregation_strategy="simple", batch_size=32)`` over a
``BertForTokenClassification`` holding the same encoder weights; b2ner's ``Tagger.predict`` sorts windows by
length and packs them under a token budget chosen to hold about 32 documents per batch. Prints documents/s for
both and the ratio.

Then the recognizer level, on the first ``--llm-docs`` of the same documents: the tagger through
``TaggerRecognizer`` (what ``extract -m TAGGER`` runs) next to the B2NER LLM path (``LLMRecognizer`` over a tiny
random Llama, hidden ``--llm-hidden``, answers capped at ``--max-new-tokens``), each with its parameter count: a
shape check of the two paths, not a comparison with B2NER's 7B model.

    python benchmarks/bench_tagger.py                # 1,000 documents
    python benchmarks/bench_tagger.py --docs 200     # a quick look
    python benchmarks/bench_tagger.py --threads 1    # steadier figures on a busy shared machine
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from b2ner_cli.benchmark import synthetic_corpus
from b2ner_cli.taggers import Tagger, TaggerTrainSettings
from b2ner_cli.taggers.card import FORMAT, FORMAT_VERSION
from b2ner_cli.taggers.heads import SpanHead
from b2ner_cli.taggers.runtime import TaggerModule
from b2ner_cli.testing import build_bert, build_wordpiece_tokenizer

LABELS = ("person", "organization", "location")


def conll_corpus(count: int) -> list[str]:
    """The sentences of ../shared/data/conll2003-train-200.txt (tokens joined by spaces), repeated to ``count``."""
    path = Path(__file__).resolve().parents[2] / "shared" / "data" / "conll2003-train-200.txt"
    sentences, tokens = [], []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            if tokens:
                sentences.append(" ".join(tokens))
            tokens = []
        elif not line.startswith("-DOCSTART-"):
            tokens.append(line.split()[0])
    if tokens:
        sentences.append(" ".join(tokens))
    return [sentences[i % len(sentences)] for i in range(count)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--layers", type=int, default=12)
    parser.add_argument("--hidden", type=int, default=768)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--slice", type=int, default=256, help="documents per alternation between the two sides")
    parser.add_argument("--llm-docs", type=int, default=200, help="documents for the recognizer-level comparison")
    parser.add_argument("--llm-hidden", type=int, default=64, help="hidden size of the tiny random Llama")
    parser.add_argument("--max-new-tokens", type=int, default=24)
    parser.add_argument(
        "--corpus", choices=("synthetic", "conll2003"), default="synthetic",
        help="synthetic: short news-like sentences of similar length; conll2003: the real CoNLL-2003 sentences of "
        "../shared/data (lengths vary as in real text), repeated up to --docs",
    )  # fmt: skip
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    from transformers import BertConfig, BertForTokenClassification, pipeline

    docs = conll_corpus(args.docs) if args.corpus == "conll2003" else [d.text for d in synthetic_corpus(args.docs, 0)]
    tokenizer = build_wordpiece_tokenizer([d.text for d in synthetic_corpus(500, 1)] + docs, vocab_size=4000)
    encoder = build_bert(len(tokenizer), hidden=args.hidden, layers=args.layers, heads=max(1, args.hidden // 64))
    lengths = [len(ids) for ids in tokenizer(docs)["input_ids"]]
    print(
        f"corpus: {len(docs)} documents, {statistics.mean(lengths):.1f} subwords on average (max {max(lengths)}); "
        f"encoder: random BERT {args.layers} layers, hidden {args.hidden}, "
        f"{sum(p.numel() for p in encoder.parameters()):,} parameters; torch threads {torch.get_num_threads()}"
    )

    settings = TaggerTrainSettings(head="spanner", max_length=256)
    torch.manual_seed(0)
    head = SpanHead(args.hidden, len(LABELS), max_span=settings.max_span_words, dropout=0.1)
    card = {"format": FORMAT, "format_version": FORMAT_VERSION, "encoder": {"ref": "random-bert-base"},
            "head": "spanner", "labels": list(LABELS), "settings": settings.to_dict()}  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        Tagger(TaggerModule(encoder, head).eval(), tokenizer, card, torch.device("cpu")).save(Path(tmp) / "tagger")
        tagger = Tagger.load(Path(tmp) / "tagger", device="cpu")

    tags = ["O", *(f"{p}-{label}" for label in LABELS for p in "BI")]
    base_config = {k: v for k, v in encoder.config.to_dict().items() if k not in ("id2label", "label2id")}
    config = BertConfig(**base_config, id2label=dict(enumerate(tags)), label2id={t: i for i, t in enumerate(tags)})
    baseline = BertForTokenClassification(config).eval()
    weights = {k: v for k, v in encoder.state_dict().items() if not k.startswith("pooler.")}
    baseline.bert.load_state_dict(weights, strict=True)  # the same encoder weights on both sides
    pipe = pipeline(
        "token-classification", model=baseline, tokenizer=tokenizer, device=-1, aggregation_strategy="simple"
    )

    budget = args.batch_size * round(statistics.mean(lengths))
    tagger.predict(docs[:64], batch_tokens=budget)  # warm-up
    pipe(docs[:64], batch_size=args.batch_size)

    # Alternate the two sides over slices of the corpus, so that load from other processes on a shared machine
    # falls on both alike.
    ours_s = base_s = 0.0
    done = 0
    for at in range(0, len(docs), args.slice):
        part = docs[at : at + args.slice]
        start = time.perf_counter()
        ours = tagger.predict(part, batch_tokens=budget)
        ours_s += time.perf_counter() - start
        start = time.perf_counter()
        theirs = pipe(part, batch_size=args.batch_size)
        base_s += time.perf_counter() - start
        assert len(ours) == len(theirs) == len(part)
        done += len(part)

    ours_dps, base_dps = len(docs) / ours_s, len(docs) / base_s
    print(f"baseline (transformers token-classification pipeline, batch {args.batch_size}): "
          f"{len(docs)} docs in {base_s:.1f} s = {base_dps:.1f} docs/s")  # fmt: skip
    print(f"b2ner Tagger.predict (spanner, length-sorted, {budget} subwords per batch): "
          f"{len(docs)} docs in {ours_s:.1f} s = {ours_dps:.1f} docs/s")  # fmt: skip
    print(f"speed-up: {ours_dps / base_dps:.2f}x documents/s (target: >= 1.5x)")
    recognizers(tagger, docs[: args.llm_docs], budget, args)


def recognizers(tagger: Tagger, docs: list[str], budget: int, args: argparse.Namespace) -> None:
    """documents/s of the tagger and of the LLM path behind the same recognizer seam, on the same documents."""
    from b2ner_cli.api import Extractor
    from b2ner_cli.engine.hf import HFGenerator
    from b2ner_cli.runs.settings import ExtractSettings, RunStats
    from b2ner_cli.taggers.recognizer import TaggerRecognizer
    from b2ner_cli.testing import build_model, build_tokenizer

    torch.manual_seed(0)
    llm_tokenizer = build_tokenizer([d.text for d in synthetic_corpus(200, 1)])
    llm = build_model(len(llm_tokenizer), hidden_size=args.llm_hidden)
    sides = {
        "tagger (TaggerRecognizer, spanner)": (
            Extractor(TaggerRecognizer(tagger), ExtractSettings(batch_tokens=budget)),
            sum(p.numel() for p in tagger.model.parameters()),
        ),
        f"LLM path (LLMRecognizer, random Llama hidden {args.llm_hidden})": (
            Extractor(HFGenerator(llm, llm_tokenizer, max_new_tokens=args.max_new_tokens),
                      ExtractSettings(batch_size=args.batch_size)),
            sum(p.numel() for p in llm.parameters()),
        ),
    }  # fmt: skip
    for name, (extractor, params) in sides.items():
        extractor.extract(docs[:8], list(LABELS))  # warm-up
        stats = RunStats()
        start = time.perf_counter()
        extractor.extract(docs, list(LABELS), stats=stats)
        seconds = time.perf_counter() - start
        print(f"{name}, {params:,} parameters: {len(docs)} docs in {seconds:.1f} s = {len(docs) / seconds:.1f} docs/s")


if __name__ == "__main__":
    main()
