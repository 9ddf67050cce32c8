"""Validation of the bundled taxonomy data."""

from __future__ import annotations

from b2ner_cli.taxonomy.data import load, validate


def test_the_bundled_taxonomy_is_valid() -> None:
    assert validate(load()) == []
