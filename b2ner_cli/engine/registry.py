"""Which engine generates: a name -> factory registry, torch-free at import.

``"vllm"`` (where vLLM is installed) loads the model itself: :class:`b2ner_cli.engine.vllm.VllmGenerator`.
``"hf"`` is :class:`b2ner_cli.engine.hf.HFGenerator` (the default: shared-prefix cache, finished rows leave the
batch); ``"continuous"`` is :class:`b2ner_cli.engine.continuous.ContinuousGenerator` (transformers' continuous
batching), listed only where the installed transformers has it. ``"auto"`` picks one for the loaded model:
continuous on CUDA where it is available *and* measured faster (``CONTINUOUS_FASTER_ON_CUDA``), hf otherwise.
On CPU continuous batching is far slower than the hf engine (see benchmarks/README.md); on a GPU it has not been
measured yet, so ``auto`` is hf everywhere until ``benchmarks/gpu_check.py --engines`` shows otherwise.

Plugins and tests add engines with :func:`register_engine`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..errors import UsageError
from .base import Generator

#: ``factory(model, tokenizer, *, max_new_tokens, info) -> Generator``.
EngineFactory = Callable[..., Generator]

#: the built-in choices, for help texts (no import of transformers; ``ENGINES`` tells which are usable here).
ENGINE_CHOICES = ("auto", "hf", "continuous", "vllm")

#: set True once a GPU measurement (benchmarks/gpu_check.py --engines) shows continuous batching faster than hf.
CONTINUOUS_FASTER_ON_CUDA = False


def _hf(model: Any, tokenizer: Any, *, max_new_tokens: int, info: dict[str, object] | None) -> Generator:
    from .hf import HFGenerator

    return HFGenerator(model, tokenizer, max_new_tokens=max_new_tokens, info=info)


def _continuous(model: Any, tokenizer: Any, *, max_new_tokens: int, info: dict[str, object] | None) -> Generator:
    from .continuous import ContinuousGenerator

    return ContinuousGenerator(model, tokenizer, max_new_tokens=max_new_tokens, info=info)


def continuous_available() -> bool:
    """Whether transformers' continuous batching is installed (imports transformers, not at module import)."""
    try:
        from .continuous import ContinuousGenerator
    except ImportError:
        return False
    return ContinuousGenerator.available()


_FACTORIES: dict[str, EngineFactory] = {"hf": _hf}
_CONDITIONAL: dict[str, tuple[EngineFactory, Callable[[], bool]]] = {"continuous": (_continuous, continuous_available)}


def register_engine(name: str, factory: EngineFactory) -> None:
    """Make ``name`` an engine (replacing one of that name). ``"auto"`` is reserved."""
    if name == "auto":
        raise ValueError('"auto" is not an engine name: it picks one')
    _CONDITIONAL.pop(name, None)
    _FACTORIES[name] = factory


def _vllm_available() -> bool:
    from .vllm import available

    return available()


def engines() -> list[str]:
    """The engine names usable here (``continuous`` only where the installed transformers has it, ``vllm`` only
    where vLLM is installed)."""
    usable = [*_FACTORIES, *(name for name, (_, ok) in _CONDITIONAL.items() if ok())]
    return usable + (["vllm"] if _vllm_available() else [])


class _Engines:
    """``ENGINES``: the usable engine names, read when asked (so a registered engine shows up; listing them may
    import transformers, to see whether it has continuous batching)."""

    def __iter__(self) -> Any:
        return iter(engines())

    def __contains__(self, name: object) -> bool:
        return name in engines()

    def __repr__(self) -> str:
        return repr(engines())


ENGINES = _Engines()


def auto_engine(model: Any) -> str:
    """The engine ``"auto"`` stands for with this model."""
    device = getattr(getattr(model, "device", None), "type", None)
    if device == "cuda" and CONTINUOUS_FASTER_ON_CUDA and "continuous" in engines():
        return "continuous"
    return "hf"


def create_generator(
    name: str, model: Any, tokenizer: Any, *, max_new_tokens: int, info: dict[str, object] | None = None
) -> Generator:
    """A generator of engine ``name`` (or ``"auto"``) for a loaded model; UsageError for an unknown name."""
    chosen = auto_engine(model) if name == "auto" else name
    factory = _FACTORIES.get(chosen)
    if factory is None and chosen in _CONDITIONAL:
        conditional, ok = _CONDITIONAL[chosen]
        if not ok():
            raise UsageError(
                f"Engine `{chosen}` needs transformers' continuous batching, which this transformers lacks.",
                "Upgrade transformers (5.x), or use --engine hf.",
            )
        factory = conditional
    if factory is None:
        known = ", ".join(["auto", *engines()])
        raise UsageError(f"Unknown engine `{name}`.", f"Choose one of: {known}.")
    return factory(model, tokenizer, max_new_tokens=max_new_tokens, info=info)
