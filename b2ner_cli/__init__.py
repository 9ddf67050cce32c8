"""b2ner: open zero-shot named entity recognition with the B2NER models.

Importing this package is cheap: torch and transformers load only when a model does.
"""

from __future__ import annotations

__version__ = "0.1.0"

from .answers import ParsedAnswer, parse_answer
from .api import Extractor
from .errors import AdapterError, B2nerError, InputError, LabelError, ModelError, UsageError
from .grounding import Entity, Unmatched, flatten, ground
from .io.readers import Document
from .pipeline import ExtractSettings, Record, RunStats, dry_run, extract
from .prompts import PROMPT_ID, Example, LabelSet, build_instruction, detect_lang

__all__ = [
    "PROMPT_ID",
    "AdapterError",
    "B2nerError",
    "Document",
    "Entity",
    "Example",
    "ExtractSettings",
    "Extractor",
    "InputError",
    "LabelError",
    "LabelSet",
    "ModelError",
    "ParsedAnswer",
    "Record",
    "RunStats",
    "Unmatched",
    "UsageError",
    "__version__",
    "build_instruction",
    "detect_lang",
    "dry_run",
    "extract",
    "flatten",
    "ground",
    "parse_answer",
]
