"""Bridges to other NLP libraries, one module each (``spacy``: a pipeline component and DocBin output).

Importing this package imports none of those libraries; :func:`require` says cleanly when one is missing.
"""

from __future__ import annotations

from importlib.util import find_spec

from ..errors import UsageError


def require(module: str, extra: str, what: str) -> None:
    """A one-line UsageError naming the extra to install when ``module`` cannot be imported; ``what`` needs it."""
    try:
        found = find_spec(module) is not None
    except (ImportError, ValueError):
        found = False
    if not found:
        raise UsageError(f"{what} needs {extra}, which is not installed.", f"pip install 'b2ner[{extra}]'")
