"""The HTML view of extract results: one self-contained page with the entities highlighted in their text
(``b2ner view PRED.jsonl``, ``b2ner extract ... --format html``)."""

from __future__ import annotations

from .html import PAGE_SIZE, HtmlSink, highlight, render_document
from .job import ViewResult, read_records, render_view

__all__ = ["PAGE_SIZE", "HtmlSink", "ViewResult", "highlight", "read_records", "render_document", "render_view"]
