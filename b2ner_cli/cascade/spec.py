"""What a cascade is asked to do (torch-free): the LLM to route to, the threshold, the merge mode; the checks that
refuse a wrong combination before anything loads; the metadata block a run records; sweep threshold parsing."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import UsageError

if TYPE_CHECKING:
    from ..models.spec import ModelSpec

DEFAULT_THRESHOLD = 0.4
MODES = ("span", "sentence")
#: the counts a cascade run keeps in ``RunStats.cascade`` (the seconds stay there; the rest go to the meta block).
COUNTS = ("documents", "routed_documents", "spans", "routed_spans")


@dataclass(frozen=True)
class CascadeSpec:
    """A tagger first, then ``llm`` on the documents holding an entity whose uncertainty exceeds ``threshold``.

    ``mode="span"``: an uncertain entity the LLM also returns (overlapping) takes the LLM's label and boundaries,
    one it does not return is dropped. ``mode="sentence"``: the LLM's entities replace the routed document's.
    ``llm`` is loaded only when some document is routed.
    """

    llm: ModelSpec
    threshold: float = DEFAULT_THRESHOLD
    mode: str = "span"

    def __post_init__(self) -> None:
        check_threshold(self.threshold)
        if self.mode not in MODES:
            raise UsageError(f"Unknown cascade mode `{self.mode}`.", f"Choose one of: {', '.join(MODES)}.")


def check_threshold(value: float, flag: str = "--threshold") -> None:
    if math.isnan(value) or not 0.0 <= value <= 1.0:
        raise UsageError(f"{flag} must be between 0 and 1, not {value:g}.", "Uncertainties lie in 0..1.")


def cascade_from_flags(
    llm: str | None,
    *,
    adapter: str | None = None,
    threshold: float | None = None,
    mode: str | None = None,
    base: ModelSpec,
) -> CascadeSpec | None:
    """The cascade the command-line flags ask for (None without ``--cascade``); the LLM is placed like ``base``."""
    from dataclasses import replace

    if llm is None:
        given = [flag for flag, value in (("--threshold", threshold), ("--cascade-mode", mode),
                                          ("--cascade-adapter", adapter)) if value is not None]  # fmt: skip
        if given:
            raise UsageError(f"{given[0]} only applies to a cascade.", "Add --cascade LLM (with -m TAGGER_DIR).")
        return None
    llm_spec = replace(base, model=llm, adapter=adapter, revision=None, adapter_revision=None, no_adapter=False,
                       kind="auto", cascade=None, knn=None)  # fmt: skip
    return CascadeSpec(llm_spec, DEFAULT_THRESHOLD if threshold is None else threshold, mode or "span")


def check_cascade(tagger: ModelSpec) -> None:
    """Refuse, before anything loads: no tagger as ``-m``, a tagger (or another cascade) as the LLM."""
    from dataclasses import replace

    from ..runs.recognizer import recognizer_kind

    cascade = tagger.cascade
    if cascade is None:
        return
    llm = cascade.llm
    if tagger.model is None or recognizer_kind(replace(tagger, cascade=None)) == "llm":
        shown = f"`{tagger.model}` is not a tagger" if tagger.model else "no -m was given"
        raise UsageError(f"--cascade needs a tagger as -m ({shown}).",
                         "Pass -m TAGGER_DIR (from `b2ner finetune --head`) and the LLM as --cascade.")  # fmt: skip
    if llm.model is not None and recognizer_kind(llm) in ("tagger", "cascade"):
        raise UsageError(f"--cascade takes an LLM, but `{llm.model}` is a tagger.",
                         "Pass the B2NER model (an alias, Hub id or directory) as --cascade.")  # fmt: skip
    check_threshold(cascade.threshold)


def cascade_block(cascade: CascadeSpec, uncertainty: str, counts: Mapping[str, float]) -> dict[str, object]:
    """The ``cascade`` block of a run's metadata (these keys are a contract)."""
    return {
        "llm": cascade.llm.model,
        "adapter": cascade.llm.adapter,
        "threshold": cascade.threshold,
        "uncertainty": uncertainty,
        "mode": cascade.mode,
        **{key: int(counts.get(key, 0)) for key in COUNTS},
    }


def parse_thresholds(text: str) -> tuple[float, ...]:
    """``--sweep-threshold``: ``0,0.1,0.5`` or ``start:stop:step`` (stop included), sorted, each in 0..1."""
    from ..evaluation.sweep import parse_thresholds as parse

    return tuple(parse(text, "--sweep-threshold"))


def cascade_summary(counts: Mapping[str, float]) -> str:
    """The line ``extract`` prints on stderr: how much went to the LLM, and how long each side took."""
    documents, routed_documents = int(counts.get("documents", 0)), int(counts.get("routed_documents", 0))
    spans, routed_spans = int(counts.get("spans", 0)), int(counts.get("routed_spans", 0))

    def share(part: int, whole: int) -> str:
        return f"{100 * part / whole:.1f}%" if whole else "0.0%"

    return (
        f"Cascade: {routed_documents} of {documents} documents ({share(routed_documents, documents)}) and "
        f"{routed_spans} of {spans} entities ({share(routed_spans, spans)}) went to the LLM; "
        f"tagger {counts.get('tagger_seconds', 0.0):.2f}s, LLM {counts.get('llm_seconds', 0.0):.2f}s."
    )
