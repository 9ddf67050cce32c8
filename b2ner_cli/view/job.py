"""``b2ner view``: an extract output (JSONL, with its ``.meta.json`` when there is one) rendered as an HTML page."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import InputError, UsageError
from ..io.output import check_outputs
from ..io.unicode import check_unicode
from ..records import Entity, Record, Unmatched
from .html import PAGE_SIZE, HtmlSink


@dataclass(frozen=True)
class ViewResult:
    output: Path | None
    documents: int
    entities: int
    meta: Path | None


def default_output(predictions: Path) -> Path:
    """``PRED.html`` beside ``PRED.jsonl``."""
    return predictions.with_suffix(".html") if predictions.suffix else predictions.with_name(predictions.name + ".html")


def default_meta(predictions: Path) -> Path:
    return predictions.with_name(predictions.name + ".meta.json")


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _entity(data: Any, text: str, where: str) -> Entity:
    if not isinstance(data, dict):
        raise InputError(f"{where}: each entity must be an object with start, end and label.")
    start, end, label = data.get("start"), data.get("end"), data.get("label")
    if not isinstance(start, int) or not isinstance(end, int) or isinstance(start, bool) or not isinstance(label, str):
        raise InputError(f'{where}: an entity needs integer "start", "end" and a string "label" ({data}).')
    if not 0 <= start < end <= len(text):
        raise InputError(
            f"{where}: entity {start}-{end} ({label}) lies outside the text, which has {len(text)} characters.",
            "Offsets are character positions in the text, end exclusive.",
        )
    given = data.get("text")
    if isinstance(given, str) and given != text[start:end]:
        raise InputError(
            f'{where}: entity {start}-{end} says "{given}" but the text there is "{text[start:end]}".',
            "Offsets must be character offsets into this record's text (end exclusive).",
        )
    score, uncertainty, source = data.get("score"), data.get("uncertainty"), data.get("source")
    return Entity(
        start,
        end,
        text[start:end],
        label,
        score=_number(score),
        uncertainty=_number(uncertainty),
        source=source if isinstance(source, str) else None,
    )


def record_of(data: Any, where: str) -> Record:
    """A record as ``extract`` writes it (``id``, ``text``, ``entities``, ``unmatched``, optional ``raw``), checked."""
    if not isinstance(data, dict) or "id" not in data or not isinstance(data.get("text"), str):
        raise InputError(f'{where}: a record needs "id" and "text" (the JSONL that b2ner extract writes).')
    check_unicode(data, where)
    text = data["text"]
    entities, unmatched = data.get("entities", []), data.get("unmatched") or []
    if not isinstance(entities, list) or not isinstance(unmatched, list):
        raise InputError(f'{where}: "entities" and "unmatched" must be lists.')
    missing = [Unmatched(str(u.get("text", "")), str(u.get("label", ""))) for u in unmatched if isinstance(u, dict)]
    raw = data.get("raw")
    return Record(
        str(data["id"]),
        text,
        [_entity(e, text, where) for e in entities],
        missing,
        raw if isinstance(raw, str) else None,
    )


def read_records(path: Path) -> Iterator[Record]:
    """The records of an extract output, one line at a time (blank lines skipped)."""
    try:
        stream = open(path, "rb")  # noqa: SIM115 (closed below; a generator)
    except FileNotFoundError:
        raise InputError(f"{path} does not exist.", "Check the path.") from None
    except IsADirectoryError:
        raise InputError(f"{path} is a directory.", "Give the JSONL file that b2ner extract wrote.") from None
    with stream:
        for number, raw in enumerate(stream, start=1):
            where = f"{path}, line {number}"
            try:
                line = raw.decode("utf-8").removeprefix("\ufeff" if number == 1 else "")
            except UnicodeDecodeError:
                raise InputError(f"{where}: not valid UTF-8.", "Convert the file to UTF-8.") from None
            if not line.strip():
                continue
            try:
                data = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InputError(
                    f"{where}: invalid JSON ({exc.msg}).", "Give the JSONL file that b2ner extract wrote."
                ) from None
            yield record_of(data, where)


def read_meta(path: Path) -> dict[str, object]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"Cannot read the run metadata {path}: {exc}.", "Check --meta, or drop it.") from None
    if not isinstance(data, dict):
        raise InputError(f"{path} is not run metadata (a JSON object).", "Check --meta, or drop it.")
    check_unicode(data, str(path))
    return data


def check_view(predictions: Path, output: str, meta: Path | None, overwrite: bool) -> None:
    """Fail before reading: a missing input, an output over the input or that cannot be written, an existing
    default output without ``--overwrite``."""
    if not predictions.is_file():
        what = "is not a file" if predictions.exists() else "does not exist"
        raise InputError(f"{predictions} {what}.", "Give the JSONL file that b2ner extract wrote.")
    if meta is not None and not meta.is_file():
        raise InputError(f"--meta {meta} does not exist.", "Check the path, or drop --meta.")
    check_outputs({"-o": output}, [predictions, *([meta] if meta is not None else [])])
    if not overwrite and output != "-" and Path(output).exists():
        raise UsageError(f"{output} exists.", "Pass --overwrite to replace it, or choose another file with -o.")


def render_view(
    predictions: Path,
    output: str | None = None,
    *,
    meta: Path | None = None,
    overwrite: bool = False,
    page_size: int = PAGE_SIZE,
) -> ViewResult:
    """Write ``predictions`` as an HTML page to ``output`` (default ``PRED.html``; ``-`` is stdout).

    The run metadata comes from ``meta``, else from ``PRED.jsonl.meta.json`` when it exists. An explicit ``output``
    is replaced like any ``-o``; the default one only with ``overwrite``. A bad record fails the whole view and
    leaves no page.
    """
    target = output if output is not None else str(default_output(predictions))
    check_view(predictions, target, meta, overwrite or output is not None)
    if meta is None and default_meta(predictions).is_file():
        meta = default_meta(predictions)
    manifest = read_meta(meta) if meta is not None else {}
    sink = HtmlSink(target, title=predictions.name, keep_raw=True, page_size=page_size)
    try:
        for record in read_records(predictions):
            sink.write(record)
        sink.describe_run(manifest)
        sink.close(complete=True)
    except BaseException:
        sink.discard()
        raise
    return ViewResult(sink.path, sink.count, sink.entities, meta)
