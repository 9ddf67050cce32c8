"""``extract --resume``: continue an interrupted ``-o FILE`` run from the records already written.

Records are always written in input order, so an interrupted run's output holds the first N records of the input.
A resumed run checks that they are (each record's id and text equal the N-th input document's), skips those
documents, and writes the old records and the new ones to a fresh output that replaces the old one when complete.
When an interrupted run had left an earlier complete output in place, its records are in ``FILE.partial``: the
newer of the two is resumed.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import InputError, UsageError
from ..io.output import PARTIAL_SUFFIX
from ..io.readers import Document


@dataclass(frozen=True)
class Done:
    """The records an interrupted run wrote, and where they were read from."""

    source: Path
    records: list[dict[str, Any]]


def resume_source(output: Path) -> Path | None:
    partial = output.with_name(output.name + PARTIAL_SUFFIX)
    candidates = [p for p in (output, partial) if p.is_file()]
    return max(candidates, key=lambda p: p.stat().st_mtime_ns) if candidates else None


def read_done(output: str | None) -> Done:
    """The records already written to ``output`` (or to its ``.partial``), each line checked."""
    if output is None or output == "-":
        raise UsageError("--resume continues an output file.", "Give the interrupted run's -o FILE.")
    path = Path(output)
    source = resume_source(path)
    if source is None:
        parts = sorted(path.parent.glob(f".{path.name}.rank-*-of-*.jsonl"))
        if parts:  # an interrupted run of several processes
            processes = parts[0].name.rsplit("-of-", 1)[1].removesuffix(".jsonl")
            raise UsageError(
                f"Nothing to resume in one process: {path} does not exist, but {parts[0]} does.",
                f"Resume with --data-parallel {processes} (or {processes} torchrun processes).",
            )
        raise UsageError(f"Nothing to resume: {path} does not exist.", "Drop --resume to start the run.")
    records = []
    with open(source, encoding="utf-8") as stream:
        for number, line in enumerate(stream, start=1):
            if not line.endswith("\n"):
                break  # a cut last line (a crash mid-write): it is done again
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                raise InputError(
                    f"{source}, line {number}: not a record that b2ner extract wrote.",
                    "Resume only the output of an interrupted b2ner extract run, or drop --resume.",
                ) from None
            if not isinstance(record, dict) or "id" not in record or "text" not in record:
                raise InputError(f"{source}, line {number}: a record needs an id and a text (not written by extract).")
            records.append(record)
    return Done(source, records)


def skip_done(documents: Iterable[Document], done: Done) -> Iterator[Document]:
    """The documents after those ``done`` holds, checking at once (before any model loads) that the done records
    are the input's first ones."""
    iterator = iter(documents)
    for position, record in enumerate(done.records, start=1):
        document = next(iterator, None)
        if document is None:
            raise UsageError(
                f"{done.source} holds {len(done.records)} records but the input has only {position - 1} documents.",
                "Resume with the same input as the interrupted run.",
            )
        if str(record["id"]) != document.id or record["text"] != document.text:
            differs = "another text" if str(record["id"]) == document.id else f"id {document.id!r}"
            raise UsageError(
                f"{done.source} does not continue this input: its record {position} ({record['id']!r}) is not the "
                f"input's document {position} ({differs}).",
                "Resume with the same input (and options) as the interrupted run, or drop --resume.",
            )
    return iterator
