"""Which model to load and how: one frozen value that commands build, workers and ranks receive, and runs record."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from ..engine.base import DEFAULT_MAX_NEW_TOKENS
from .placement import DeviceChoice, DtypeChoice, Quantize

if TYPE_CHECKING:
    from ..cascade.spec import CascadeSpec
    from ..retrieval.knn import KnnSpec

EngineChoice = str  # "auto" or a name in the engine registry


@dataclass(frozen=True)
class ModelSpec:
    """Everything that says which model (and adapter) to load and how to place and run it.

    ``model`` is an alias (``b2ner-7b``), a Hub repo id or a directory; None means the default model, or the
    backbone an adapter from ``b2ner finetune`` names. Hashable and picklable (sent to worker processes).
    """

    model: str | None = None
    adapter: str | None = None
    revision: str | None = None
    adapter_revision: str | None = None
    no_adapter: bool = False
    offline: bool = False
    device: DeviceChoice = "auto"
    dtype: DtypeChoice = "auto"
    quantize: Quantize = "auto"
    #: per-device memory budgets (device -> bytes) for spreading a model over GPUs.
    max_memory: tuple[tuple[int | str, int], ...] | None = None
    #: merge the adapter into the backbone; None: merge for bf16/fp16 without quantization (one kernel per
    #: projection instead of three), keep it separate otherwise (float32 on CPU, 4/8-bit).
    merge: bool | None = None
    trust_remote_code: bool = False
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS
    engine: EngineChoice = "auto"
    #: how the model is used: "auto" (detected from the model directory), "llm", or a registered recognizer kind.
    kind: str = "auto"
    #: a LinkNER cascade: ``model`` is a tagger whose uncertain entities go to this LLM (kind ``cascade``).
    cascade: CascadeSpec | None = None
    #: kNN-NER: ``model`` is a tagger whose distribution is mixed with its datastore's neighbours (``--knn``).
    knn: KnnSpec | None = None

    @staticmethod
    def memory(values: Mapping[int | str, int] | None) -> tuple[tuple[int | str, int], ...] | None:
        """``max_memory`` as the spec stores it (from ``parse_max_memory``'s dict)."""
        return tuple(values.items()) if values else None

    def max_memory_dict(self) -> dict[int | str, int] | None:
        return dict(self.max_memory) if self.max_memory else None

    def to_dict(self) -> dict[str, object]:
        """For the run manifest (JSON-ready)."""
        data = asdict(self)
        data["max_memory"] = {str(k): v for k, v in self.max_memory} if self.max_memory else None
        return data


def build_model_spec(
    model: str | None,
    adapter: str | None = None,
    *,
    revision: str | None = None,
    adapter_revision: str | None = None,
    no_adapter: bool = False,
    offline: bool = False,
    device: DeviceChoice = "auto",
    dtype: DtypeChoice = "auto",
    quantize: Quantize = "auto",
    max_memory: Mapping[int | str, int] | None = None,
    merge: bool | None = None,
    trust_remote_code: bool = False,
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
    engine: EngineChoice = "auto",
    cascade: str | None = None,
    cascade_adapter: str | None = None,
    threshold: float | None = None,
    cascade_mode: str | None = None,
    knn: KnnSpec | None = None,
) -> ModelSpec:
    """The model that extract's model options name (the CLI's flags, the Python API's keywords, serve's): with its
    LinkNER cascade, placed like ``model`` and checked, and its kNN store."""
    from dataclasses import replace

    from ..cascade.spec import cascade_from_flags, check_cascade

    spec = ModelSpec(
        model, adapter, revision=revision, adapter_revision=adapter_revision, no_adapter=no_adapter, offline=offline,
        device=device, dtype=dtype, quantize=quantize, max_memory=ModelSpec.memory(max_memory), merge=merge,
        trust_remote_code=trust_remote_code, max_new_tokens=max_new_tokens, engine=engine, knn=knn,
    )  # fmt: skip
    chosen = cascade_from_flags(cascade, adapter=cascade_adapter, threshold=threshold, base=spec, mode=cascade_mode)
    if chosen is not None:
        spec = replace(spec, cascade=chosen)
        check_cascade(spec)
    return spec
