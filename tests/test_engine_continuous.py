"""The continuous-batching engine (transformers' paged cache and scheduler): same answers as ``generate``."""

from __future__ import annotations

import pytest
from conftest import TAUGHT

from b2ner_cli.engine.base import cut_runaway
from b2ner_cli.engine.continuous import ContinuousGenerator
from b2ner_cli.prompts import LabelSet, build_instruction

EN = ("person", "organization", "location")


def test_runaway_cut_where_the_rule_would_have_stopped() -> None:
    loop = [7, 8, 9, 10, 11, 12, 13, 14]
    tokens = [1, 2, *loop, *loop, *loop, *loop, 5]
    # the third copy of the 8-token loop ends at index 2 + 24 = 26: stopped there, as the HF engine stops
    assert cut_runaway(tokens) == 26
    assert cut_runaway([1, 2, *loop, *loop, 3]) is None
    assert cut_runaway([]) is None


needs_cb = pytest.mark.skipif(not ContinuousGenerator.available(), reason="no continuous batching in this transformers")


@needs_cb
@pytest.mark.slow
def test_greedy_answers_equal_transformers_generate(tiny) -> None:
    from b2ner_cli.api import Extractor
    from b2ner_cli.engine.hf import HFGenerator

    loaded = Extractor.load(str(tiny.base), str(tiny.adapter), device="cpu", max_new_tokens=20).generator
    assert isinstance(loaded, HFGenerator)
    continuous = ContinuousGenerator(loaded.model, loaded.tokenizer, max_new_tokens=20)
    reference = HFGenerator(loaded.model, loaded.tokenizer, max_new_tokens=20, prefix_cache=False)
    cached = HFGenerator(loaded.model, loaded.tokenizer, max_new_tokens=20)
    texts = [text for text, labels, _ in TAUGHT if labels == EN] + ["Angela Merkel met Emmanuel Macron .", "x y z"]
    batch = [loaded.encode(build_instruction(t, LabelSet(EN), "en")) for t in texts]
    batch.append(loaded.encode(build_instruction("李明昨天去了北京。", LabelSet(("人名", "地名")), "zh")))
    try:
        ours = continuous.generate(batch) + continuous.generate(batch[:1])  # the second call reuses the manager
        assert continuous._manager is not None and continuous._manager.is_running()
    finally:
        continuous.close()
    assert continuous._manager is None
    theirs = reference.generate(batch) + reference.generate(batch[:1])
    assert ours[0].answer == TAUGHT[0][2]
    assert ours[len(texts)].answer == TAUGHT[2][2]
    # the reference has no runaway rule: compare it on answers that did not run away, the cached engine on all
    kept = [not g.runaway for g in ours]
    assert [g.answer for g, k in zip(ours, kept, strict=True) if k] == [
        g.answer for g, k in zip(theirs, kept, strict=True) if k
    ]
    mine = cached.generate(batch) + cached.generate(batch[:1])
    assert [(g.answer, g.tokens, g.finished, g.runaway) for g in ours] == [
        (g.answer, g.tokens, g.finished, g.runaway) for g in mine
    ]
    for a, b in zip(ours, mine, strict=True):
        assert a.token_logprobs == pytest.approx(b.token_logprobs, abs=1e-4)
        assert len(a.token_logprobs) == len(a.tokens) == a.new_tokens
    assert continuous.describe()["generation"]["engine"] == "continuous"  # type: ignore[index]


@needs_cb
@pytest.mark.slow
def test_caps_and_eos_per_request() -> None:
    """A random model rarely says EOS: every answer runs to its own prompt's cap (or is cut as a runaway)."""
    from b2ner_cli.engine.hf import new_token_cap
    from b2ner_cli.testing import build_model, build_tokenizer

    tokenizer = build_tokenizer()
    model = build_model(len(tokenizer), seed=3)
    generator = ContinuousGenerator(model, tokenizer, max_new_tokens=70)
    short = [1, *tokenizer.encode("x y", add_special_tokens=False)]  # cap 64 (the floor)
    long = [1, *tokenizer.encode("Paris " * 12, add_special_tokens=False)]  # cap min(70, 32 + 4 * len) = 70
    assert new_token_cap(len(short), 70) == 64 and new_token_cap(len(long), 70) == 70
    try:
        results = generator.generate([short, long])
    finally:
        generator.close()
    for result, cap in zip(results, (64, 70), strict=True):
        assert result.runaway or result.new_tokens == cap
        assert not result.finished
        assert 2 not in result.tokens  # EOS never inside an answer
