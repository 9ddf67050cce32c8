"""Counts in messages: ``1 document``, ``2 documents`` (shared by the core's notes and the CLI)."""

from __future__ import annotations


def count(n: int, noun: str, plural: str | None = None) -> str:
    """``1 document``, ``2 documents``; ``plural`` for irregular nouns (``entity``/``entities``)."""
    return f"{n} {noun}" if n == 1 else f"{n} {plural or noun + 's'}"
