"""The HTML view: records as one self-contained page (inline CSS and JavaScript, nothing fetched).

:class:`HtmlSink` is a run's record sink (``extract --format html``) and what ``b2ner view`` writes through. It
streams: each document is rendered to HTML and written as it comes, so memory stays flat and an interrupted run
keeps a valid page of the records so far (at FILE, or FILE.partial beside an existing FILE, as for JSONL). The run's
header (metadata, legend, pager) is known only at the end; it is written after the documents and shown above them
by CSS (``order: -1``).

Every string from the data (text, ids, labels, mentions, metadata) is HTML-escaped; the only markup is ours.
Entities are ``<mark>`` elements carrying ``data-label``, ``data-start`` and ``data-end`` (character offsets, end
exclusive) and a ``title`` with the label and score. How overlaps render (:func:`highlight`): entities are opened
outermost first (by start, then the longer one), so a nested entity sits inside the one that contains it and two
labels on one span are two marks, one inside the other. A partial overlap (one entity ends inside another) cannot
nest: the entity that is still open is cut at that point and continued in a new mark; every piece carries the whole
entity's attributes, and the pieces before the last have class ``cut``.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence
from html import escape
from importlib.resources import files
from pathlib import Path
from typing import TextIO

from ..io.output import AtomicFile
from ..records import Entity, Record
from ..wording import count

#: documents per page (JavaScript paging; without JavaScript every document shows).
PAGE_SIZE = 50

#: label colours (displaCy's family); after these, hues a golden angle apart.
PALETTE = (
    "#7aecec", "#feca74", "#c887fb", "#bfeeb7", "#ff9561", "#aa9cfc",
    "#ffeb80", "#ff8197", "#9cc9cc", "#e4e7d2", "#bfe1d9", "#f0d0ff",
)  # fmt: skip


def colour(index: int) -> str:
    """The colour of the ``index``-th label."""
    if index < len(PALETTE):
        return PALETTE[index]
    return f"hsl({round((index * 137.508) % 360)}, 70%, 78%)"


def _asset(name: str) -> str:
    return files(__package__).joinpath(name).read_text(encoding="utf-8")


def _title(entity: Entity) -> str:
    parts = [entity.label]
    if entity.score is not None:
        parts.append(f"score {entity.score:.3f}")
    if entity.uncertainty is not None:
        parts.append(f"uncertainty {entity.uncertainty:.3f}")
    if entity.source is not None:
        parts.append(f"from {entity.source}")
    return " · ".join(parts)


def highlight(text: str, entities: Sequence[Entity], key: Mapping[str, str]) -> str:
    """``text`` as escaped HTML with each entity in a ``<mark>`` (see the module docstring for overlaps).

    ``key`` maps each label to its CSS class. Entities must lie within the text (``0 <= start < end <= len``).
    """
    order = sorted(range(len(entities)), key=lambda i: (entities[i].start, -entities[i].end, i))
    bounds = sorted({0, len(text)} | {e.start for e in entities} | {e.end for e in entities})
    out: list[str] = []
    stack: list[tuple[int, int]] = []  # (entity index, position in out of its opening tag)
    pending = iter(order)
    upcoming = next(pending, None)

    def open_(index: int) -> None:
        entity = entities[index]
        stack.append((index, len(out)))
        out.append(
            f'<mark class="{key[entity.label]}" data-label="{escape(entity.label)}" data-start="{entity.start}" '
            f'data-end="{entity.end}" title="{escape(_title(entity))}">'
        )

    position = 0
    for bound in bounds:
        out.append(escape(text[position:bound], quote=False))
        position = bound
        ending = sum(1 for index, _ in stack if entities[index].end == bound)
        reopen: list[int] = []
        while ending:  # close what ends here; marks opened inside one of them are cut and continued
            index, at = stack.pop()
            out.append("</mark>")
            if entities[index].end == bound:
                ending -= 1
            else:
                out[at] = out[at].replace('<mark class="', '<mark class="cut ', 1)
                reopen.append(index)
        starting = []
        while upcoming is not None and entities[upcoming].start == bound:
            starting.append(upcoming)
            upcoming = next(pending, None)
        for index in sorted(reopen + starting, key=lambda i: (-entities[i].end, i)):
            open_(index)
    return "".join(out)


def render_document(record: Record, number: int, key: Mapping[str, str], keep_raw: bool = False) -> str:
    """One document as an ``<article>``: its id, its text with entities marked, its unmatched mentions."""
    parts = [
        f'<article class="doc" data-id="{escape(record.id)}">',
        f'<h2><span class="n">#{number}</span> {escape(record.id)} '
        f'<span class="n">· {count(len(record.entities), "entity", "entities")}</span></h2>',
        f'<p class="text">{highlight(record.text, record.entities, key)}</p>',
    ]
    if record.unmatched:
        items = "".join(
            f'<li><span class="label {key[u.label]}">{escape(u.label)}</span> {escape(u.text, quote=False)}</li>'
            for u in record.unmatched
        )
        parts.append(f'<div class="unmatched">Not found in the text:<ul>{items}</ul></div>')
    elif not record.entities:
        parts.append('<p class="none">no entities</p>')
    if keep_raw and record.raw is not None:
        parts.append(
            f'<details class="raw"><summary>raw answer</summary><pre>{escape(record.raw, quote=False)}</pre></details>'
        )
    parts.append("</article>\n")
    return "".join(parts)


def _meta_rows(manifest: Mapping[str, object], documents: int, entities: int, unmatched: int) -> list[tuple[str, str]]:
    """The header's "what made this" lines (from the run metadata, when there is one) and the page's counts."""
    spec = manifest.get("model_spec")
    asked = spec if isinstance(spec, Mapping) else {}

    def named(kind: str) -> str | None:
        value = manifest.get(kind) or asked.get(kind if kind != "backbone" else "model")
        if not value:
            return None
        revision = manifest.get(f"{kind}_revision")
        return f"{value} @ {revision}" if revision else str(value)

    labels = manifest.get("labels")
    inputs = manifest.get("inputs")
    rows = [
        ("model", named("backbone")),
        ("adapter", named("adapter")),
        ("recognizer", manifest.get("recognizer")),
        ("labels", ", ".join(map(str, labels)) if isinstance(labels, list) else None),
        ("language", manifest.get("language")),
        ("inputs", ", ".join(map(str, inputs)) if isinstance(inputs, list) else None),
        ("started", manifest.get("started_at")),
        ("finished", manifest.get("finished_at")),
        ("status", manifest.get("status")),
        ("b2ner", manifest.get("b2ner_version")),
        (
            "this page",
            f"{count(documents, 'document')}, {count(entities, 'entity', 'entities')}, "
            f"{count(unmatched, 'unmatched mention')}",
        ),
    ]
    return [(name, str(value)) for name, value in rows if value not in (None, "")]


class HtmlSink:
    """Records as an HTML page, to a file (written atomically, like JSONL) or to a stream; a run's record sink.

    ``describe_run(manifest)`` gives it the run metadata for the header (``execute`` calls it before ``close``;
    ``b2ner view`` passes the ``.meta.json``). ``close(complete)`` ends the page; on an incomplete run the page of the
    records so far is kept (see :class:`~b2ner_cli.io.output.AtomicFile`) and its path returned. ``discard()``
    drops the file and leaves the target as it was.
    """

    def __init__(
        self,
        target: str | Path | None,
        *,
        keep_raw: bool = False,
        title: str | None = None,
        page_size: int = PAGE_SIZE,
        stream: TextIO | None = None,
    ) -> None:
        self.path = None if target is None or str(target) == "-" else Path(target)
        self.keep_raw = keep_raw
        self.title = title or (self.path.name if self.path is not None else "entities")
        self.keys: dict[str, str] = {}
        self.counts: dict[str, int] = {}  # entities per label
        self.entities = 0
        self.unmatched = 0
        self.manifest: Mapping[str, object] = {}
        self.page_size = page_size
        self._count = 0
        self._file: AtomicFile | None = None  # opened with the first write: a run that fails to load leaves nothing
        self._started = False
        self._closed = False
        self._stream = stream or sys.stdout

    @property
    def count(self) -> int:
        return self._count

    def key(self, label: str) -> str:
        """The CSS class of ``label`` (``k0``, ``k1``, ... in order of appearance)."""
        return self.keys.setdefault(label, f"k{len(self.keys)}")

    def write(self, record: Record) -> None:
        for entity in record.entities:
            self.key(entity.label)
            self.counts[entity.label] = self.counts.get(entity.label, 0) + 1
        for item in record.unmatched:
            self.key(item.label)
        self._write(render_document(record, self._count + 1, self.keys, self.keep_raw))
        self._count += 1
        self.entities += len(record.entities)
        self.unmatched += len(record.unmatched)

    def describe_run(self, manifest: Mapping[str, object]) -> None:
        self.manifest = manifest

    def close(self, complete: bool) -> Path | None:
        if self._closed:  # idempotent, like JsonlWriter.close
            return self._file.partial_path if self._file is not None else None
        self._closed = True
        self._write(self._trailer(complete))
        if self._file is None:  # a stream
            return None
        if complete:
            self._file.commit()
            return None
        return self._file.abort()

    def discard(self) -> None:
        self._closed = True
        if self._file is not None:
            self._file.discard()

    def _write(self, text: str) -> None:
        if not self._started:
            self._started = True
            if self.path is not None:
                self._file = AtomicFile(self.path)
            self._write(self._head())
        if self._file is not None:
            self._file.write(text)
        else:
            self._stream.write(text)
            self._stream.flush()

    def _head(self) -> str:
        return (
            '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>{escape(self.title)} · b2ner</title>\n<style>\n{_asset('page.css')}</style>\n</head>\n<body>\n"
            f'<main id="docs" data-page-size="{int(self.page_size)}">\n'
        )

    def _trailer(self, complete: bool) -> str:
        asked = self.manifest.get("labels")
        labels = [str(label) for label in asked] if isinstance(asked, list) else []
        legend = list(dict.fromkeys([*labels, *self.keys]))
        for label in legend:
            self.key(label)
        status = self.manifest.get("status")
        stopped = ""
        if not complete or status not in (None, "complete"):
            how = "failed" if status == "failed" else "was interrupted"
            stopped = (
                f'<p class="stopped">The run {how}: this page holds the {count(self._count, "record")} completed '
                "before it stopped.</p>"
            )
        rows = "".join(
            f"<dt>{escape(name)}</dt><dd>{escape(value)}</dd>"
            for name, value in _meta_rows(self.manifest, self._count, self.entities, self.unmatched)
        )
        keys = "".join(
            f'<label class="key {self.keys[label]}" title="show or hide {escape(label)}">'
            f'<input type="checkbox" checked data-key="{self.keys[label]}"> {escape(label)} '
            f'<span class="n">{self.counts.get(label, 0)}</span></label>'
            for label in legend
        )
        metadata = ""
        if self.manifest:
            dump = json.dumps(self.manifest, ensure_ascii=False, indent=2, default=str)
            metadata = f"<details><summary>run metadata</summary><pre>{escape(dump, quote=False)}</pre></details>"
        colours = "\n".join(
            f".{key} {{ --c: {colour(index)}; }}\n"
            f"body.off-{key} mark.{key} {{ background: transparent; box-shadow: none; }}\n"
            f"body.off-{key} mark.{key}::after {{ content: none; }}"
            for index, key in enumerate(self.keys.values())
        )
        return (
            "</main>\n"
            f'<header id="top">\n<h1>{escape(self.title)}</h1>\n{stopped}<dl>{rows}</dl>\n{metadata}\n'
            f'<div id="bar"><div id="legend">{keys}</div>\n'
            '<nav id="pager" hidden><button id="prev" type="button">&larr; previous</button> '
            'page <input id="page-number" type="number" min="1" value="1" style="width:4em"> '
            '<span id="page-info"></span> <button id="next" type="button">next &rarr;</button></nav></div>\n'
            f"</header>\n<style>\n{colours}\n</style>\n<script>\n{_asset('page.js')}</script>\n</body>\n</html>\n"
        )
