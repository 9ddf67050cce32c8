"""The generator interface the pipeline talks to."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

#: the default cap on answer tokens per prompt (here, torch-free, so the CLI can show it without importing torch).
DEFAULT_MAX_NEW_TOKENS = 512


def encode_prompt(tokenizer: Any, instruction: str) -> list[int]:
    """Token ids of BOS + instruction: exactly one BOS (from the tokenizer, never from the text), none when the
    tokenizer has no BOS token."""
    ids: list[int] = list(tokenizer.encode(instruction, add_special_tokens=False))
    bos = getattr(tokenizer, "bos_token_id", None)
    if bos is not None and (not ids or ids[0] != bos):
        ids = [int(bos), *ids]
    return ids


#: a row whose last REPEAT_SPAN tokens repeat REPEAT_TIMES in a row is stopped as a runaway.
REPEAT_SPAN, REPEAT_TIMES = 8, 3


def is_runaway(tokens: Sequence[int]) -> bool:
    span = REPEAT_SPAN
    if len(tokens) < span * REPEAT_TIMES:
        return False
    tail = list(tokens[-span:])
    return all(list(tokens[-(k + 1) * span : -k * span]) == tail for k in range(1, REPEAT_TIMES))


def cut_runaway(tokens: Sequence[int]) -> int | None:
    """The length at which the runaway rule would have stopped these tokens, None if it would not have (for
    engines that generate first and apply the rule afterwards)."""
    for end in range(1, len(tokens) + 1):
        if is_runaway(tokens[:end]):
            return end
    return None


def as_id_list(value: Any) -> list[int]:
    """A token id setting (an id, a list of ids, or None) as a list."""
    if value is None:
        return []
    return [int(v) for v in value] if isinstance(value, (list, tuple)) else [int(value)]


class TokenizedEngine:
    """What every engine does with b2ner's own tokenizer (``self.tokenizer``) and EOS ids (``self.eos_ids``):
    count, encode, split an answer by token, and turn generated tokens into a :class:`Generation`."""

    tokenizer: Any
    eos_ids: list[int]

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer.encode(text, add_special_tokens=False))

    def encode(self, instruction: str) -> list[int]:
        return encode_prompt(self.tokenizer, instruction)

    def token_texts(self, tokens: Sequence[int]) -> list[str]:
        """The answer's text split by token (see :func:`b2ner_cli.engine.scores.token_texts`)."""
        from .scores import token_texts

        return token_texts(self.tokenizer, tokens)

    def _decode(self, tokens: list[int], logprobs: list[float], finished: bool, runaway: bool = False) -> Generation:
        answer = self.tokenizer.decode(tokens, skip_special_tokens=True, clean_up_tokenization_spaces=False)
        return Generation(
            answer=answer,
            new_tokens=len(tokens),
            finished=finished,
            runaway=runaway,
            tokens=tuple(tokens),
            token_logprobs=tuple(logprobs),
        )

    def _finish(self, tokens: list[int], logprobs: list[float]) -> Generation:
        """An answer generated without b2ner's stop rules applied on the way: cut at the first EOS, then where the
        runaway rule would have stopped it."""
        eos = set(self.eos_ids)
        end = next((i for i, t in enumerate(tokens) if t in eos), None)
        if end is not None:
            tokens, logprobs = tokens[:end], logprobs[:end]
        runaway_at = cut_runaway(tokens)
        if runaway_at is not None:
            return self._decode(tokens[:runaway_at], logprobs[:runaway_at], False, runaway=True)
        return self._decode(tokens, logprobs, end is not None)


class BatchTooLarge(Exception):
    """The device ran out of memory for this batch; the pipeline splits it in two and tries again."""


@dataclass(frozen=True)
class Generation:
    """What the model answered for one prompt."""

    answer: str
    #: new tokens generated, the EOS excluded.
    new_tokens: int
    #: False when generation stopped at the new-token cap (or as a runaway) instead of at EOS.
    finished: bool
    #: True when it was stopped for repeating itself.
    runaway: bool = False
    #: the answer's token ids, the EOS excluded (empty where an engine does not report them).
    tokens: tuple[int, ...] = ()
    #: natural log of the probability of each of ``tokens`` when it was chosen (log-softmax of that step's
    #: logits, in float32); same length as ``tokens``, or empty where the engine cannot report them.
    token_logprobs: tuple[float, ...] = ()


class Generator(Protocol):
    """Encodes instructions (BOS included) and answers batches of them greedily."""

    max_new_tokens: int

    def count_tokens(self, text: str) -> int:
        """Tokens of a piece of text on its own (no BOS)."""
        ...

    def encode(self, instruction: str) -> list[int]:
        """Token ids of BOS + instruction (exactly one BOS)."""
        ...

    def generate(self, batch: Sequence[list[int]]) -> list[Generation]:
        """Greedy answers for a batch of encoded prompts, in the batch's order."""
        ...

    def token_texts(self, tokens: Sequence[int]) -> list[str]:
        """The text each generated token adds to the answer (joined, they are the answer); for mention scores."""
        ...

    def suggest_batch_tokens(self) -> int | None:
        """A batch token budget from the device memory left free after loading; None to keep the default."""
        ...

    def describe(self) -> dict[str, object]:
        """How results were made: model, adapter, revisions, dtype, device, generation settings."""
        ...
