"""Input readers: ``.txt`` (a document per non-empty line, or per file), ``.jsonl``, and stdin."""

from __future__ import annotations

import itertools
import json
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Literal

from ..errors import InputError, UsageError
from ..labels import json_object_pairs, labels_from_json
from ..prompts import LabelSet
from .unicode import check_unicode

STDIN = "-"
InputFormat = Literal["auto", "txt", "jsonl"]
JSONL_SUFFIXES = (".jsonl", ".ndjson")


@dataclass(frozen=True)
class Document:
    """One text to extract from; ``labels`` overrides the run's label set when given."""

    id: str
    text: str
    labels: LabelSet | None = None
    #: where the document came from (``file:line``), for error messages.
    source: str = ""


@dataclass(frozen=True)
class ReadOptions:
    text_field: str = "text"
    id_field: str = "id"
    labels_field: str = "labels"
    whole_file: bool = False
    input_format: InputFormat = "auto"


def display_name(path: str) -> str:
    """How an input names its documents: ``<stdin>``; a file under the working directory by its path relative to it
    (``./a.txt`` and ``a.txt`` are both ``a.txt``); any other file as typed."""
    if path == STDIN:
        return "<stdin>"
    try:
        return Path(os.path.abspath(path)).relative_to(os.getcwd()).as_posix()
    except (ValueError, OSError):
        return path


def check_inputs(paths: Sequence[str]) -> None:
    """Fail early, before any model loads, when an input file is missing or not a file."""
    if not paths:
        raise UsageError("No input given.", "Pass one or more files, or - to read standard input.")
    if list(paths).count(STDIN) > 1:
        raise UsageError("Standard input (-) is given more than once.")
    for path in paths:
        if path == STDIN:
            continue
        p = Path(path)
        if not p.exists():
            raise InputError(f"Input file {path} does not exist.", "Check the path, or use - for standard input.")
        if not p.is_file():
            raise InputError(f"Input {path} is not a file.", "Pass text or JSONL files, or - for standard input.")


def read_documents(paths: Sequence[str], options: ReadOptions, stdin: BinaryIO | None = None) -> Iterator[Document]:
    """Documents from every input in order, streamed (nothing is held beyond the current line)."""
    check_inputs(paths)
    for path in paths:
        if path == STDIN:
            yield from _read_stream(stdin or sys.stdin.buffer, display_name(path), options)
            continue
        try:
            with open(path, "rb") as stream:
                yield from _read_stream(stream, display_name(path), options)
        except PermissionError:
            raise InputError(f"Cannot read input file {path}: permission denied.") from None
        except IsADirectoryError:
            raise InputError(f"Input {path} is not a file.") from None


def _format_for(name: str, options: ReadOptions, first_line: str | None) -> Literal["txt", "jsonl"]:
    if options.input_format != "auto":
        return options.input_format
    if name == display_name(STDIN):
        # Standard input has no suffix: it is JSONL when its first non-blank line is a JSON object.
        if first_line is not None and first_line.lstrip().startswith("{"):
            try:
                return "jsonl" if isinstance(json.loads(first_line), dict) else "txt"
            except json.JSONDecodeError:
                return "txt"
        return "txt"
    return "jsonl" if name.lower().endswith(JSONL_SUFFIXES) else "txt"


def _decoded_lines(stream: BinaryIO, name: str) -> Iterator[tuple[int, str]]:
    for number, raw in enumerate(stream, start=1):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise InputError(
                f"{name}, line {number}: not valid UTF-8.",
                "Convert the file to UTF-8, e.g. iconv -f GB18030 -t UTF-8 in.txt > out.txt",
            ) from None
        if number == 1:
            line = line.lstrip("\ufeff")
        yield number, line.rstrip("\r\n")


def _read_stream(stream: BinaryIO, name: str, options: ReadOptions) -> Iterator[Document]:
    lines = _decoded_lines(stream, name)
    head: list[tuple[int, str]] = []  # up to the first non-blank line, which decides stdin's format
    for item in lines:
        head.append(item)
        if item[1].strip():
            break
    if not head:
        return
    fmt = _format_for(name, options, head[-1][1])
    all_lines = itertools.chain(head, lines)
    if options.whole_file:
        if fmt == "jsonl":
            raise UsageError("--whole-file applies to text inputs, not JSONL.", "Drop --whole-file for JSONL inputs.")
        text = "\n".join(line for _, line in all_lines)
        if text.strip():
            yield Document(id=name, text=text, source=name)
        return
    parse: Callable[[int, str], Document] = (
        (lambda n, line: _jsonl_document(line, name, n, options))
        if fmt == "jsonl"
        else (lambda n, line: Document(id=f"{name}:{n}", text=line, source=f"{name}, line {n}"))
    )
    for number, line in all_lines:
        if line.strip():
            yield parse(number, line)


def _jsonl_document(line: str, name: str, number: int, options: ReadOptions) -> Document:
    where = f"{name}, line {number}"
    try:
        record = json.loads(line, object_pairs_hook=json_object_pairs)
    except json.JSONDecodeError as exc:
        raise InputError(
            f"{where}: invalid JSON ({exc.msg}).", "Each line of a JSONL file must be one JSON object."
        ) from None
    if not isinstance(record, dict):
        raise InputError(f"{where}: expected a JSON object, found {type(record).__name__}.")
    text = record.get(options.text_field)
    if not isinstance(text, str):
        fields = ", ".join(sorted(record)) or "none"
        problem = "has no" if text is None else "has a non-string"
        raise InputError(
            f'{where}: record {problem} text field "{options.text_field}" (fields: {fields}).',
            "Name the field holding the text with --text-field.",
        )
    doc_id = record.get(options.id_field)
    if doc_id is None:
        doc_id = f"{name}:{number}"
    elif not isinstance(doc_id, (str, int)) or isinstance(doc_id, bool):
        raise InputError(f'{where}: "{options.id_field}" must be a string or an integer.')
    labels = record.get(options.labels_field)
    for field in (options.text_field, options.id_field, options.labels_field):
        check_unicode(record.get(field), where, field)
    label_set = labels_from_json(labels, where=where) if labels is not None else None
    return Document(id=str(doc_id), text=text, labels=label_set, source=where)
