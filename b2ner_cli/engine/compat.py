"""What the installed transformers and the loaded model accept, found by looking rather than by version numbers.

transformers renamed two forward arguments over the versions b2ner supports (``transformers>=4.46``):

- the key/value cache: ``past_key_values`` everywhere up to 5.x, then ``cache`` (5.24 warns on the old name and
  announces its removal for 5.40); models loaded with remote code (InternLM2's own) keep ``past_key_values``;
- "compute the logits of the last N positions only": ``num_logits_to_keep`` (4.45-4.49), ``logits_to_keep`` (4.50+),
  absent from older or remote-code models;

and ``DynamicCache(config=...)`` only exists from 4.56 (earlier it takes no config). Each is read once from the
signature of the model's own ``forward`` (through a PEFT wrapper to the transformers model it wraps).

Torch-free at import.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ForwardArgs:
    """The names this model's ``forward`` takes for the cache and for "last positions only" (None: not supported)."""

    cache: str
    logits_to_keep: str | None

    def kwargs(self, cache: Any, keep_last: bool) -> dict[str, Any]:
        """Keyword arguments passing ``cache`` and, if ``keep_last`` (and supported), asking for last logits only."""
        extra: dict[str, Any] = {self.cache: cache}
        if keep_last and self.logits_to_keep is not None:
            extra[self.logits_to_keep] = 1
        return extra


def base_model(model: Any) -> Any:
    """The transformers model under a PEFT wrapper (the model itself otherwise)."""
    get_base = getattr(model, "get_base_model", None)
    return get_base() if callable(get_base) else model


def forward_parameters(model: Any) -> frozenset[str]:
    try:
        return frozenset(inspect.signature(base_model(model).forward).parameters)
    except (TypeError, ValueError):  # a forward with no readable signature
        return frozenset()


def forward_args(model: Any) -> ForwardArgs:
    params = forward_parameters(model)
    cache = "cache" if "cache" in params else "past_key_values"
    keep = next((name for name in ("logits_to_keep", "num_logits_to_keep") if name in params), None)
    return ForwardArgs(cache=cache, logits_to_keep=keep)


def new_dynamic_cache(config: Any) -> Any:
    """An empty ``DynamicCache``: given the model config where this transformers takes one (4.56+), else bare."""
    from transformers import DynamicCache

    if "config" in inspect.signature(DynamicCache.__init__).parameters:
        return DynamicCache(config=config)
    return DynamicCache()
