"""The LinkNER cascade: a local tagger first, its uncertain entities (uncertainty > threshold) checked by the B2NER
LLM with its own extraction prompt, and a threshold sweep that prices F1 against the share routed to the LLM.

``spec`` (what to do, checks), ``merge`` (routing and merging, pure), ``recognizer`` (the seam), ``sweep`` (eval).
"""

from __future__ import annotations

from .merge import merge, routed, uncertain, uncertainty_of
from .recognizer import CascadeRecognizer
from .spec import DEFAULT_THRESHOLD, MODES, CascadeSpec, parse_thresholds

__all__ = [
    "DEFAULT_THRESHOLD",
    "MODES",
    "CascadeRecognizer",
    "CascadeSpec",
    "merge",
    "parse_thresholds",
    "routed",
    "uncertain",
    "uncertainty_of",
]
