"""Lone surrogates: JSON may spell a half pair (``"\\ud800"``), which Python decodes into a string that no UTF-8
writer can encode. Readers check what they parse and refuse it as one line naming the field."""

from __future__ import annotations

import re

from ..errors import InputError

_SURROGATE = re.compile("[\ud800-\udfff]")


def lone_surrogate(value: object, field: str = "") -> tuple[str, str] | None:
    """The first (field path, character) holding a lone surrogate in a parsed JSON value, or None.

    Paths read like ``text``, ``entities[0].label`` or ``labels[1]``; keys are checked as well as values.
    """
    if isinstance(value, str):
        match = _SURROGATE.search(value)
        return (field or "value", match.group()) if match else None
    if isinstance(value, dict):
        for key, item in value.items():
            path = f"{field}.{key}" if field else str(key)
            found = lone_surrogate(key, path) or lone_surrogate(item, path)
            if found:
                return found
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found = lone_surrogate(item, f"{field}[{index}]")
            if found:
                return found
    return None


def check_unicode(value: object, where: str, field: str = "") -> None:
    """Raise an InputError when ``value`` (a parsed JSON value) holds a lone surrogate."""
    found = lone_surrogate(value, field)
    if found:
        path, char = found
        raise InputError(
            f'{where}: "{path}" holds a lone surrogate (\\u{ord(char):04x}), which is not valid Unicode.',
            "Fix the \\uXXXX escape in the file: a surrogate must be half of a pair, e.g. \\ud83d\\ude00.",
        )
