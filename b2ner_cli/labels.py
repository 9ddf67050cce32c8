"""Label sets from the command line, a labels file, or a JSONL record."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

from .answers import label_key
from .errors import InputError, LabelError
from .io.unicode import check_unicode
from .prompts import LabelSet

_SEPARATORS = (";", ",", "\n", "\r", "；", "，")


def make_label_set(names: Iterable[object], descriptions: Iterable[object] | None = None, *, where: str) -> LabelSet:
    """Validate names (non-empty strings, no duplicates, none of ``;``, ``,`` or a line break) and build a
    :class:`LabelSet`.

    ``where`` names the source in error messages (``--labels``, a file, a file line).
    """
    clean: list[str] = []
    seen: dict[str, str] = {}  # answers match labels ignoring case and spacing, so labels must differ beyond that
    for name in names:
        if not isinstance(name, str):
            raise LabelError(f"{where}: label {name!r} is not a string.", 'Labels are strings such as "person".')
        check_unicode(name, where, "label")
        stripped = name.strip()
        if not stripped:
            raise LabelError(f"{where}: empty label.", "Remove the empty entry (look for a doubled or trailing comma).")
        separator = next((c for c in stripped if c in _SEPARATORS), None)
        if separator is not None:
            renamed = " ".join(re.sub(r"\s*[;,；，]\s*", "/", stripped).split())
            raise LabelError(
                f"{where}: label {stripped!r} contains {separator!r}, which separates entities and labels in "
                "prompts and answers.",
                f'Rename it, e.g. use "/" or a space: "{renamed}".',
            )
        key = label_key(stripped)
        if key in seen:
            raise LabelError(
                f'{where}: duplicate label "{stripped}"'
                + (f' (same as "{seen[key]}" but for case or spacing).' if seen[key] != stripped else "."),
                "List each label once.",
            )
        seen[key] = stripped
        clean.append(stripped)
    if not clean:
        raise LabelError(f"{where}: no labels.", 'Give labels, e.g. --labels "person,organization,location".')
    descs: tuple[str, ...] | None = None
    if descriptions is not None:
        desc_list = []
        for name, desc in zip(clean, descriptions, strict=True):
            check_unicode(desc, where, f"description of {name}")
            if not isinstance(desc, str) or not desc.strip():
                raise LabelError(
                    f'{where}: label "{name}" has no description.',
                    "Give every label a one-sentence description, or use a plain list of labels.",
                )
            desc_list.append(desc.strip())
        descs = tuple(desc_list)
    return LabelSet(tuple(clean), descs)


def parse_labels_arg(value: str) -> LabelSet:
    """``--labels "person,organization,location"`` (full-width ``，`` is accepted too)."""
    return make_label_set(value.replace("，", ",").split(","), where="--labels")


class _RepeatedKeyObject(dict[str, object]):
    """A JSON object that repeats a key (``json`` keeps only the last value, hiding the duplicate)."""

    def __init__(self, pairs: list[tuple[str, object]], repeated: str) -> None:
        super().__init__(pairs)
        self.repeated = repeated


def json_object_pairs(pairs: list[tuple[str, object]]) -> dict[str, object]:
    """``object_pairs_hook`` for ``json.loads``: remembers a repeated key so that a labels object can reject it."""
    seen: set[str] = set()
    for key, _ in pairs:
        if key in seen:
            return _RepeatedKeyObject(pairs, key)
        seen.add(key)
    return dict(pairs)


def labels_from_json(value: object, *, where: str) -> LabelSet:
    """A JSON list of names, or an object mapping name -> description.

    Parse with ``object_pairs_hook=json_object_pairs`` so that a label repeated as a key is reported.
    """
    if isinstance(value, _RepeatedKeyObject):
        raise LabelError(f'{where}: duplicate label "{value.repeated.strip()}".', "List each label once.")
    if isinstance(value, Mapping):
        return make_label_set(value.keys(), value.values(), where=where)
    if isinstance(value, list):
        return make_label_set(value, where=where)
    raise LabelError(
        f"{where}: labels must be a JSON list of names or an object of name -> description.",
        'e.g. ["person", "location"] or {"person": "a human being"}',
    )


def load_labels_file(path: Path) -> LabelSet:
    """A JSON list, a JSON object (label -> description), or one label per line."""
    try:
        content = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"Labels file {path} does not exist.", "Check the path given to --labels-file.") from None
    except UnicodeDecodeError:
        raise InputError(f"Labels file {path} is not UTF-8 text.", "Save it as UTF-8.") from None
    except OSError as exc:
        raise InputError(f"Cannot read labels file {path}: {exc.strerror}.") from None
    stripped = content.lstrip("\ufeff").strip()
    if stripped[:1] in ("[", "{"):
        try:
            value = json.loads(stripped, object_pairs_hook=json_object_pairs)
        except json.JSONDecodeError as exc:
            raise InputError(
                f"Labels file {path}, line {exc.lineno}: invalid JSON ({exc.msg}).",
                "Fix the JSON, or write one label per line.",
            ) from None
        return labels_from_json(value, where=str(path))
    lines = [line for line in stripped.splitlines() if line.strip()]
    return make_label_set(lines, where=str(path))
