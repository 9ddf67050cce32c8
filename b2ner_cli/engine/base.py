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
