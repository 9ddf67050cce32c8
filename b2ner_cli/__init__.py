"""b2ner: open zero-shot named entity recognition with the B2NER models.

Importing this package is cheap: torch and transformers load only when a model does.
"""

from __future__ import annotations

__version__ = "0.1.0"

from .answers import ParsedAnswer, parse_answer
from .api import Extractor
from .cascade import CascadeRecognizer, CascadeSpec
from .errors import AdapterError, B2nerError, InputError, LabelError, ModelError, UsageError
from .grounding import flatten, ground
from .io.readers import Document
from .models.spec import ModelSpec
from .pipeline import LLMRecognizer, dry_run, extract
from .prompts import PROMPT_ID, Example, LabelSet, build_instruction, detect_lang
from .records import Entity, Record, Unmatched
from .runs.recognizer import Recognizer, load_recognizer, register_recognizer
from .runs.run import OutputSpec, RunResult, RunSpec, execute
from .runs.settings import ExtractSettings, RunStats, Task

__all__ = [
    "PROMPT_ID",
    "AdapterError",
    "B2nerError",
    "CascadeRecognizer",
    "CascadeSpec",
    "Document",
    "Entity",
    "Example",
    "ExtractSettings",
    "Extractor",
    "InputError",
    "LLMRecognizer",
    "LabelError",
    "LabelSet",
    "ModelError",
    "ModelSpec",
    "OutputSpec",
    "ParsedAnswer",
    "Recognizer",
    "Record",
    "RunResult",
    "RunSpec",
    "RunStats",
    "Task",
    "Unmatched",
    "UsageError",
    "__version__",
    "build_instruction",
    "detect_lang",
    "dry_run",
    "execute",
    "extract",
    "flatten",
    "ground",
    "load_recognizer",
    "parse_answer",
    "register_recognizer",
]
