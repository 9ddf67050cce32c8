"""Batched greedy generation with a transformers causal LM (left padding, attention mask)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from transformers import GenerationConfig

from .base import Generation

DEFAULT_MAX_NEW_TOKENS = 512


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
        self.config = GenerationConfig(
            max_new_tokens=max_new_tokens,
            do_sample=False,
            num_beams=1,
            repetition_penalty=1.0,
            eos_token_id=self.eos_ids,
            pad_token_id=self.pad_id,
            bos_token_id=self.bos_id,
        )

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer.encode(text, add_special_tokens=False))

    def encode(self, instruction: str) -> list[int]:
        ids: list[int] = self.tokenizer.encode(instruction, add_special_tokens=False)
        if self.bos_id is not None and (not ids or ids[0] != self.bos_id):
            ids = [int(self.bos_id), *ids]
        return ids

    @torch.inference_mode()
    def generate(self, batch: Sequence[list[int]]) -> list[Generation]:
        if not batch:
            return []
        width = max(len(ids) for ids in batch)
        input_ids = torch.full((len(batch), width), self.pad_id, dtype=torch.long)
        attention_mask = torch.zeros((len(batch), width), dtype=torch.long)
        for row, ids in enumerate(batch):
            input_ids[row, width - len(ids) :] = torch.tensor(ids, dtype=torch.long)
            attention_mask[row, width - len(ids) :] = 1
        output = self.model.generate(
            input_ids=input_ids.to(self.device),
            attention_mask=attention_mask.to(self.device),
            generation_config=self.config,
        )
        new_tokens = output[:, width:].tolist()
        eos = set(self.eos_ids)
        results = []
        for tokens in new_tokens:
            end = next((i for i, t in enumerate(tokens) if t in eos), None)
            kept = tokens if end is None else tokens[:end]
            answer = self.tokenizer.decode(kept, skip_special_tokens=True, clean_up_tokenization_spaces=False)
            results.append(Generation(answer=answer, new_tokens=len(kept), finished=end is not None))
        return results

    def describe(self) -> dict[str, object]:
        return {
            "dtype": str(self.model.dtype).removeprefix("torch."),
            "device": str(self.device),
            **self.info,
            "generation": {
                "decoding": "greedy",
                "max_new_tokens": self.max_new_tokens,
                "eos_token_ids": self.eos_ids,
                "pad_token_id": self.pad_id,
            },
        }
