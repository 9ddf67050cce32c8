"""The transformers engine: use from several threads, last-position logits, argument names by feature detection,
per-token log-probabilities."""

from __future__ import annotations

import math
import threading
import warnings

import pytest
from conftest import TAUGHT

from b2ner_cli.api import Extractor
from b2ner_cli.engine.compat import ForwardArgs, base_model, forward_args
from b2ner_cli.prompts import LabelSet, build_instruction

EN = ("person", "organization", "location")
OTHER = ("date", "event", "product", "award")
TEXTS = [
    "Barack Obama visited Microsoft in Seattle .",
    "Angela Merkel met Emmanuel Macron in Berlin .",
    "The river flows .",
    "Marie Curie won the Nobel Prize in Physics in 1903 together with Pierre Curie .",
    "Ada met Bob .",
    "x y z",
]


@pytest.fixture(scope="module")
def generator(tiny):
    from b2ner_cli.engine.hf import HFGenerator

    extractor = Extractor.load(str(tiny.base), str(tiny.adapter), device="cpu", max_new_tokens=20)
    assert isinstance(extractor.generator, HFGenerator)
    return extractor.generator


def encoded(generator, labels: tuple[str, ...]) -> list[list[int]]:
    return [generator.encode(build_instruction(text, LabelSet(labels), "en")) for text in TEXTS]


def fresh(generator, **kwargs):
    from b2ner_cli.engine.hf import HFGenerator

    return HFGenerator(generator.model, generator.tokenizer, max_new_tokens=20, **kwargs)


def test_two_threads_on_one_generator_answer_as_sequential_calls(generator) -> None:
    work = {"en": encoded(generator, EN), "other": encoded(generator, OTHER)}
    # sequential reference, on its own generator (its own prefix store): batches of 3, then one by one
    reference = fresh(generator)
    expected = {
        name: reference.generate(batch[:3]) + [reference.generate([ids])[0] for ids in batch[3:]]
        for name, batch in work.items()
    }
    assert expected["en"][0].answer == TAUGHT[0][2]  # the taught answer, so the comparison is not of empty answers

    shared = fresh(generator)
    barrier = threading.Barrier(2)
    got: dict[str, list] = {}
    errors: list[BaseException] = []

    def run(name: str) -> None:
        try:
            barrier.wait()
            batch = work[name]
            results = []
            for _ in range(3):  # the prefix store is filled, evicted and read by both threads meanwhile
                results = shared.generate(batch[:3]) + [shared.generate([ids])[0] for ids in batch[3:]]
            got[name] = results
        except BaseException as error:  # reported below, in the test's thread
            errors.append(error)

    threads = [threading.Thread(target=run, args=(name,)) for name in work]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert not errors, errors
    assert got == expected
    # each thread's one-by-one calls reused its own label set's prefix (the previous prompt is kept per thread)
    assert shared.prefix_hits >= 2 * 3 * 3


def test_prefill_computes_the_last_positions_logits_only(generator) -> None:
    head = base_model(generator.model).get_output_embeddings()
    lengths: list[int] = []
    hook = head.register_forward_hook(lambda module, args, output: lengths.append(output.shape[1]))
    batch = encoded(generator, EN)[:4]
    try:
        keeping = fresh(generator)
        kept = keeping.generate(batch)
        prefill_kept = lengths[:2]  # the shared prefix, then the batch's own tokens
        lengths.clear()
        full = fresh(generator)
        full.forward_args = ForwardArgs(cache=full.forward_args.cache, logits_to_keep=None)
        everything = full.generate(batch)
        prefill_full = lengths[:2]
    finally:
        hook.remove()
    assert keeping.forward_args.logits_to_keep == "logits_to_keep"
    assert prefill_kept == [1, 1]
    # without it: the whole shared prefix, then the batch's padded remainder (positions = widths)
    assert prefill_full[0] >= 8 and prefill_full[1] == max(len(ids) for ids in batch) - prefill_full[0] > 1
    assert [g.answer for g in kept] == [g.answer for g in everything]
    assert kept[0].answer == TAUGHT[0][2]


def test_no_deprecation_warning_on_this_transformers(generator) -> None:
    batch = encoded(generator, EN)[:3]
    quiet = fresh(generator)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        results = quiet.generate(batch) + quiet.generate(batch[:1])
    assert results[0].answer == TAUGHT[0][2]


def test_argument_names_follow_the_forward_signature() -> None:
    class Old:
        def forward(self, input_ids=None, past_key_values=None, num_logits_to_keep=0): ...

    class Remote:
        def forward(self, input_ids=None, past_key_values=None, **kwargs): ...

    class New:
        def forward(self, input_ids=None, cache=None, logits_to_keep=0, **kwargs): ...

    class Wrapped:  # as PEFT wraps a transformers model
        def forward(self, *args, **kwargs): ...

        def get_base_model(self):
            return New()

    assert forward_args(Old()) == ForwardArgs("past_key_values", "num_logits_to_keep")
    assert forward_args(Remote()) == ForwardArgs("past_key_values", None)
    assert forward_args(Wrapped()) == ForwardArgs("cache", "logits_to_keep")
    assert ForwardArgs("cache", "logits_to_keep").kwargs("C", keep_last=True) == {"cache": "C", "logits_to_keep": 1}
    assert ForwardArgs("past_key_values", None).kwargs("C", keep_last=True) == {"past_key_values": "C"}


def test_token_logprobs_are_the_models_own_probabilities(generator) -> None:
    """Checked against one teacher-forced forward pass over prompt + answer, computed here independently."""
    import torch

    batch = encoded(generator, EN)[:4]
    results = fresh(generator).generate(batch)
    model = generator.model
    for ids, result in zip(batch, results, strict=True):
        assert len(result.tokens) == len(result.token_logprobs) == result.new_tokens
        assert generator.tokenizer.decode(list(result.tokens)) == result.answer
        full = torch.tensor([ids + list(result.tokens)])
        with torch.inference_mode():
            logits = model(input_ids=full).logits[0].float()
        steps = torch.log_softmax(logits[len(ids) - 1 : -1], dim=-1)  # the step choosing each answer token
        expected = steps[torch.arange(len(result.tokens)), torch.tensor(result.tokens)].tolist()
        assert result.token_logprobs == pytest.approx(expected, abs=1e-4)
    # a greedy token is the most likely of the vocabulary, so its probability is at least 1 / vocabulary size
    floor = -math.log(len(generator.tokenizer))
    assert all(floor <= lp <= 0 for result in results for lp in result.token_logprobs)


def test_reference_path_reports_the_same_tokens_and_logprobs(generator) -> None:
    batch = encoded(generator, EN)
    cached = fresh(generator).generate(batch)
    reference = fresh(generator, prefix_cache=False).generate(batch)
    assert [g.tokens for g in cached] == [g.tokens for g in reference]
    for ours, theirs in zip(cached, reference, strict=True):
        assert ours.token_logprobs == pytest.approx(theirs.token_logprobs, abs=1e-4)
