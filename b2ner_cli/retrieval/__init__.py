"""Retrieval over your training data: a datastore of sentence vectors made with a tagger's encoder
(``b2ner index``), and the nearest training sentences as few-shot demonstrations for the LLM
(``b2ner extract --demos STORE``).

Importing this package does not import torch; building, opening and searching a store do.
"""

from __future__ import annotations

from .store import SENTENCES, STORE_JSON, VECTORS, StoreSummary, tagger_fingerprint

__all__ = ["SENTENCES", "STORE_JSON", "VECTORS", "StoreSummary", "tagger_fingerprint"]
