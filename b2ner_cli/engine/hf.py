"""Batched greedy generation with a transformers causal LM (left padding, attention mask).

The default path shares work across a batch: every B2NER prompt of a label set starts with the same tokens
(instruction + label set), so their key/value cache is computed once, kept, and copied into each batch; only
each document's own tokens and answer are computed. Finished rows leave the batch. ``prefix_cache=False``
runs transformers' own ``generate`` instead (the reference the cached path is tested against).
"""

from __future__ import annotations

import copy
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import torch
from transformers import GenerationConfig

from .base import DEFAULT_MAX_NEW_TOKENS, BatchTooLarge, Generation

#: prefixes shorter than this are not worth caching.
MIN_PREFIX_TOKENS = 8
#: a row whose last REPEAT_SPAN tokens repeat REPEAT_TIMES in a row is stopped as a runaway.
REPEAT_SPAN, REPEAT_TIMES = 8, 3


def left_pad(rows: Sequence[list[int]], pad: int, width: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows right-aligned in a (len(rows), width) tensor filled with ``pad``, and the mask of real tokens."""
    width = width or max(len(ids) for ids in rows)
    padded = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for row, ids in enumerate(rows):
        if ids:
            padded[row, width - len(ids) :] = torch.tensor(ids, dtype=torch.long)
            mask[row, width - len(ids) :] = 1
    return padded, mask


def common_prefix_length(batch: Sequence[list[int]]) -> int:
    first = batch[0]
    length = min(len(ids) for ids in batch)
    for ids in batch[1:]:
        n = 0
        while n < length and ids[n] == first[n]:
            n += 1
        length = n
    return length


def new_token_cap(prompt_tokens: int, limit: int) -> int:
    """Answers list mentions of the input: bound them by the prompt's length (generously), within ``limit``."""
    return min(limit, max(64, 32 + 4 * prompt_tokens))


def is_runaway(tokens: Sequence[int]) -> bool:
    span = REPEAT_SPAN
    if len(tokens) < span * REPEAT_TIMES:
        return False
    tail = list(tokens[-span:])
    return all(list(tokens[-(k + 1) * span : -k * span]) == tail for k in range(1, REPEAT_TIMES))


def _as_list(value: Any) -> list[int]:
    if value is None:
        return []
    return [int(v) for v in value] if isinstance(value, (list, tuple)) else [int(value)]


class HFGenerator:
    """Greedy decoding, stopping at EOS, with every sequence of a batch left-padded.

    Position ids follow the attention mask, so a padded row decodes like the same prompt alone.
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
        info: dict[str, object] | None = None,
        prefix_cache: bool = True,
    ) -> None:
        if max_new_tokens < 1:
            raise ValueError("max_new_tokens must be positive")
        self.model = model
        self.tokenizer = tokenizer
        self.max_new_tokens = max_new_tokens
        eos = _as_list(getattr(model.generation_config, "eos_token_id", None)) + _as_list(tokenizer.eos_token_id)
        self.eos_ids = list(dict.fromkeys(eos))
        if not self.eos_ids:
            raise ValueError("the tokenizer and the model define no end-of-sequence token")
        pad = tokenizer.pad_token_id
        self.pad_id = int(pad) if pad is not None else self.eos_ids[0]
        self.bos_id = tokenizer.bos_token_id
        self.device = model.get_input_embeddings().weight.device
        self.info = dict(info or {})
        self.prefix_cache = prefix_cache
        self._prefixes: OrderedDict[tuple[int, ...], Any] = OrderedDict()
        self._last_prompt: list[int] = []
        self.prefix_hits = 0
        self.config = GenerationConfig(
            max_new_tokens=max_new_tokens,
            do_sample=False,
            num_beams=1,
            repetition_penalty=1.0,
            eos_token_id=self.eos_ids,
            pad_token_id=self.pad_id,
            bos_token_id=self.bos_id,
        )

    def suggest_batch_tokens(self) -> int | None:
        """On a GPU, a batch token budget from the memory left free after loading; None on CPU."""
        if self.device.type != "cuda":
            return None
        from ..models.placement import kv_token_budget

        free = int(torch.cuda.mem_get_info(self.device)[0])
        return kv_token_budget(free, self.model.config.to_dict(), torch.finfo(self.model.dtype).bits // 8)

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer.encode(text, add_special_tokens=False))

    def encode(self, instruction: str) -> list[int]:
        ids: list[int] = self.tokenizer.encode(instruction, add_special_tokens=False)
        if self.bos_id is not None and (not ids or ids[0] != self.bos_id):
            ids = [int(self.bos_id), *ids]
        return ids

    def generate(self, batch: Sequence[list[int]]) -> list[Generation]:
        if not batch:
            return []
        try:
            if self.prefix_cache:
                return self._generate_cached(batch)
            return self._generate_reference(batch)
        except torch.OutOfMemoryError:
            if self.device.type == "cuda":
                torch.cuda.empty_cache()
            raise BatchTooLarge(len(batch)) from None

    def _decode(self, tokens: list[int], finished: bool, runaway: bool = False) -> Generation:
        answer = self.tokenizer.decode(tokens, skip_special_tokens=True, clean_up_tokenization_spaces=False)
        return Generation(answer=answer, new_tokens=len(tokens), finished=finished, runaway=runaway)

    @torch.inference_mode()
    def _generate_reference(self, batch: Sequence[list[int]]) -> list[Generation]:
        """transformers' ``generate`` on the left-padded batch (no prefix sharing, no runaway rule)."""
        input_ids, attention_mask = left_pad(batch, self.pad_id)
        width = input_ids.shape[1]
        output = self.model.generate(
            input_ids=input_ids.to(self.device),
            attention_mask=attention_mask.to(self.device),
            generation_config=self.config,
        )
        eos = set(self.eos_ids)
        results = []
        for tokens in output[:, width:].tolist():
            end = next((i for i, t in enumerate(tokens) if t in eos), None)
            results.append(self._decode(tokens if end is None else tokens[:end], end is not None))
        return results

    def _prefix(self, ids: tuple[int, ...]) -> Any:
        """The key/value cache of a shared prefix (a few are kept, most recent last)."""
        cached = self._prefixes.get(ids)
        if cached is not None:
            self.prefix_hits += 1
        else:
            from transformers import DynamicCache

            cached = DynamicCache(config=self.model.config)
            prefix = torch.tensor([ids], dtype=torch.long, device=self.device)
            self.model(input_ids=prefix, past_key_values=cached, use_cache=True)
            self._prefixes[ids] = cached
            while len(self._prefixes) > 8:
                self._prefixes.popitem(last=False)
        self._prefixes.move_to_end(ids)
        return cached

    def _shared_length(self, batch: Sequence[list[int]]) -> int:
        """How many leading tokens all rows share: the batch's common prefix, or (for a single row) what it shares
        with the previous prompt, so that one-by-one runs reuse the label set's prefix too."""
        others = batch[1:] if len(batch) > 1 else [self._last_prompt]
        shared = common_prefix_length([batch[0], *others]) if others[0] else 0
        shared = min(shared, min(len(ids) for ids in batch) - 1)  # every row keeps one token to feed
        self._last_prompt = list(batch[-1])
        if shared < MIN_PREFIX_TOKENS:
            return 0
        # Reuse a kept prefix that all rows start with (the label set's instruction), rather than computing the
        # batch's own, possibly longer, common prefix.
        head = tuple(batch[0][:shared])
        reusable = [len(k) for k in self._prefixes if len(k) >= MIN_PREFIX_TOKENS and head[: len(k)] == k]
        return max(reusable, default=shared)

    @torch.inference_mode()
    def _generate_cached(self, batch: Sequence[list[int]]) -> list[Generation]:
        """Greedy decoding over [shared prefix from cache][left-padded rest], dropping rows as they finish."""
        shared = self._shared_length(batch)
        n = len(batch)
        input_ids, rest_mask = left_pad([ids[shared:] for ids in batch], self.pad_id)
        mask = torch.cat([torch.ones((n, shared), dtype=torch.long), rest_mask], dim=-1)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)[:, shared:]
        if shared:
            cache = copy.deepcopy(self._prefix(tuple(batch[0][:shared])))
            cache.batch_repeat_interleave(n)
        else:
            from transformers import DynamicCache

            cache = DynamicCache(config=self.model.config)
        input_ids, mask, positions = input_ids.to(self.device), mask.to(self.device), positions.to(self.device)
        caps = [new_token_cap(len(ids), self.max_new_tokens) for ids in batch]
        generated: list[list[int]] = [[] for _ in range(n)]
        done: list[Generation | None] = [None] * n
        alive = list(range(n))  # original row of each row still in the batch
        eos = set(self.eos_ids)
        while True:
            logits = self.model(
                input_ids=input_ids, attention_mask=mask, position_ids=positions, past_key_values=cache, use_cache=True
            ).logits[:, -1, :]
            next_tokens = logits.argmax(dim=-1).tolist()
            keep = []
            for i, (row, token) in enumerate(zip(alive, next_tokens, strict=True)):
                if token in eos:
                    done[row] = self._decode(generated[row], True)
                    continue
                generated[row].append(token)
                if is_runaway(generated[row]):
                    done[row] = self._decode(generated[row], False, runaway=True)
                elif len(generated[row]) >= caps[row]:
                    done[row] = self._decode(generated[row], False)
                else:
                    keep.append(i)
            if not keep:
                break
            if len(keep) < len(alive):
                index = torch.tensor(keep, device=self.device)
                cache.batch_select_indices(index)
                mask, positions = mask[index], positions[index]
                alive = [alive[i] for i in keep]
                next_tokens = [next_tokens[i] for i in keep]
            input_ids = torch.tensor(next_tokens, dtype=torch.long, device=self.device).unsqueeze(-1)
            mask = torch.cat([mask, torch.ones((len(alive), 1), dtype=mask.dtype, device=self.device)], dim=-1)
            positions = positions[:, -1:] + 1
        return [g for g in done if g is not None]

    def describe(self) -> dict[str, object]:
        return {
            "dtype": str(self.model.dtype).removeprefix("torch."),
            "device": str(self.device),
            **self.info,
            "generation": {
                "decoding": "greedy",
                "max_new_tokens": self.max_new_tokens,
                "prefix_cache": self.prefix_cache,
                "stop_rules": "EOS; per answer at most min(max_new_tokens, max(64, 32 + 4 x its own prompt tokens)); "
                f"a run of {REPEAT_SPAN} tokens repeated {REPEAT_TIMES} times ends it (runaway)",
                "eos_token_ids": self.eos_ids,
                "pad_token_id": self.pad_id,
            },
        }
