"""Few-shot examples from a user's file."""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import InputError
from ..prompts import Example


def _answer_from_entities(entities: object, where: str) -> str:
    if not isinstance(entities, list):
        raise InputError(f'{where}: "entities" must be a list.')
    pieces = []
    for entity in entities:
        if not isinstance(entity, dict):
            raise InputError(f"{where}: each entity must be an object with a label and a text.")
        label = entity.get("label", entity.get("type"))
        mention = entity.get("text", entity.get("name"))
        if not isinstance(label, str) or not isinstance(mention, str):
            raise InputError(
                f'{where}: an entity needs string "label" (or "type") and "text" (or "name") fields.',
            )
        if label in ("", "NA"):
            continue
        pieces.append(f"{label}: {mention}")
    return "; ".join(pieces) or "None"


def example_from_record(record: object, where: str) -> Example:
    """``{"text", "answer"}`` or ``{"text"|"sentence", "entities": [{"label"|"type", "text"|"name"}]}``."""
    if not isinstance(record, dict):
        raise InputError(f"{where}: expected a JSON object.")
    text = record.get("text", record.get("sentence"))
    if not isinstance(text, str) or not text.strip():
        raise InputError(f'{where}: an example needs a "text" (or "sentence") string.')
    if isinstance(record.get("answer"), str):
        return Example(text=text, answer=record["answer"].strip() or "None")
    if "entities" in record:
        return Example(text=text, answer=_answer_from_entities(record["entities"], where))
    raise InputError(f'{where}: an example needs an "answer" string or an "entities" list.')


def load_examples(path: Path) -> list[Example]:
    """Examples from JSONL (one per line) or a JSON array (B2NERD split files)."""
    try:
        content = path.read_text(encoding="utf-8").lstrip("\ufeff")
    except FileNotFoundError:
        raise InputError(f"Examples file {path} does not exist.", "Check the path given to --examples.") from None
    except UnicodeDecodeError:
        raise InputError(f"Examples file {path} is not UTF-8 text.") from None
    if content.lstrip().startswith("["):
        try:
            records = json.loads(content)
        except json.JSONDecodeError as exc:
            raise InputError(f"{path}, line {exc.lineno}: invalid JSON ({exc.msg}).") from None
        examples = [example_from_record(r, f"{path}, item {i}") for i, r in enumerate(records, start=1)]
    else:
        examples = []
        # split on "\n" only: str.splitlines() would also break inside JSON strings at U+2028, NEL, etc.
        for number, line in enumerate(content.split("\n"), start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InputError(f"{path}, line {number}: invalid JSON ({exc.msg}).") from None
            examples.append(example_from_record(record, f"{path}, line {number}"))
    if not examples:
        raise InputError(f"Examples file {path} holds no examples.")
    return examples
