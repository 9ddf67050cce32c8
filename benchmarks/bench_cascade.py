"""Throughput of the LinkNER cascade (tagger, then the LLM on routed documents) against LLM-only extraction.

Both sides run on the same synthetic documents on this CPU with small random models built here: a tagger (a random
BERT, hidden ``--hidden``, with a spanner head; what ``extract -m TAGGER`` runs) and a random Llama (hidden
``--llm-hidden``, answers capped at ``--max-new-tokens``) behind the B2NER LLM path. The threshold is chosen so that
about ``--route`` of the documents go to the LLM (random models have no meaningful uncertainty; the routed share
is what sets the cost). Prints documents/s of each side, the routed fractions reached and the speed-up.

    python benchmarks/bench_cascade.py                     # 200 documents, 25% routed
    python benchmarks/bench_cascade.py --route 0.1 --threads 1
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from b2ner_cli.benchmark import synthetic_corpus
from b2ner_cli.cascade import CascadeRecognizer, CascadeSpec
from b2ner_cli.cascade.merge import uncertainty_of
from b2ner_cli.engine.hf import HFGenerator
from b2ner_cli.io.readers import Document
from b2ner_cli.models.spec import ModelSpec
from b2ner_cli.pipeline import LLMRecognizer
from b2ner_cli.prompts import LabelSet
from b2ner_cli.runs.recognizer import Recognizer, stream
from b2ner_cli.runs.settings import ExtractSettings, RunStats, Task
from b2ner_cli.taggers import Tagger, TaggerTrainSettings
from b2ner_cli.taggers.card import FORMAT, FORMAT_VERSION
from b2ner_cli.taggers.heads import SpanHead
from b2ner_cli.taggers.recognizer import TaggerRecognizer
from b2ner_cli.taggers.runtime import TaggerModule
from b2ner_cli.testing import build_bert, build_model, build_tokenizer, build_wordpiece_tokenizer

LABELS = ("person", "organization", "location")


def build_tagger(texts: list[str], hidden: int) -> Tagger:
    tokenizer = build_wordpiece_tokenizer(texts, vocab_size=2000)
    encoder = build_bert(len(tokenizer), hidden=hidden, layers=2, heads=max(1, hidden // 32))
    settings = TaggerTrainSettings(head="spanner", max_length=256)
    torch.manual_seed(0)
    head = SpanHead(hidden, len(LABELS), max_span=settings.max_span_words, dropout=0.1)
    card = {"format": FORMAT, "format_version": FORMAT_VERSION, "encoder": {"ref": "random-bert"},
            "head": "spanner", "labels": list(LABELS), "settings": settings.to_dict()}  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        Tagger(TaggerModule(encoder, head).eval(), tokenizer, card, torch.device("cpu")).save(Path(tmp) / "tagger")
        return Tagger.load(Path(tmp) / "tagger", device="cpu")


def timed(recognizer: Recognizer, docs: list[Document], task: Task) -> tuple[float, RunStats]:
    stats = RunStats()
    start = time.perf_counter()
    records = list(stream(recognizer, docs, task, stats))
    assert len(records) == len(docs)
    return time.perf_counter() - start, stats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=200)
    parser.add_argument("--route", type=float, default=0.25, help="share of documents to send to the LLM")
    parser.add_argument("--hidden", type=int, default=64, help="hidden size of the random BERT")
    parser.add_argument("--llm-hidden", type=int, default=64, help="hidden size of the random Llama")
    parser.add_argument("--max-new-tokens", type=int, default=24)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    texts = [d.text for d in synthetic_corpus(args.docs, 0)]
    docs = [Document(str(i), text, None, "bench") for i, text in enumerate(texts)]
    tagger = TaggerRecognizer(build_tagger([d.text for d in synthetic_corpus(300, 1)] + texts, args.hidden))
    torch.manual_seed(0)
    llm_tokenizer = build_tokenizer([d.text for d in synthetic_corpus(200, 1)])
    llm_model = build_model(len(llm_tokenizer), hidden_size=args.llm_hidden)
    llm = LLMRecognizer(HFGenerator(llm_model, llm_tokenizer, max_new_tokens=args.max_new_tokens))
    task = Task.of(LabelSet(list(LABELS)), (), ExtractSettings())

    # the threshold that routes about --route of the documents: a quantile of each document's top uncertainty
    tagged = list(stream(tagger, docs, task, RunStats()))
    tops = sorted(max((uncertainty_of(e) for e in r.entities), default=0.0) for r in tagged)
    cut = min(len(tops) - 1, max(0, round(len(tops) * (1 - args.route)) - 1))
    threshold = tops[cut] if args.route < 1 else 0.0
    cascade = CascadeRecognizer(tagger, CascadeSpec(ModelSpec("random-llama"), threshold=threshold), llm=llm)

    timed(llm, docs[:8], task)  # warm-up
    timed(cascade, docs[:8], task)
    llm_s, _ = timed(llm, docs, task)
    cascade_s, stats = timed(cascade, docs, task)
    counts = stats.cascade
    routed_docs = counts["routed_documents"] / counts["documents"]
    routed_spans = counts["routed_spans"] / counts["spans"] if counts["spans"] else 0.0
    threads = torch.get_num_threads()
    print(f"{len(docs)} documents; tagger: random BERT hidden {args.hidden} + spanner head; LLM: random Llama hidden "
          f"{args.llm_hidden}, {args.max_new_tokens} new tokens at most; torch threads {threads}")  # fmt: skip
    print(f"LLM only (LLMRecognizer): {len(docs)} docs in {llm_s:.1f} s = {len(docs) / llm_s:.1f} docs/s")
    print(f"cascade (threshold {threshold:.3f}): {len(docs)} docs in {cascade_s:.1f} s = "
          f"{len(docs) / cascade_s:.1f} docs/s (tagger {counts['tagger_seconds']:.1f} s, "
          f"LLM {counts.get('llm_seconds', 0.0):.1f} s)")  # fmt: skip
    print(f"routed to the LLM: {100 * routed_docs:.1f}% of documents, {100 * routed_spans:.1f}% of tagger entities")
    print(f"speed-up: {llm_s / cascade_s:.2f}x documents/s")


if __name__ == "__main__":
    main()
