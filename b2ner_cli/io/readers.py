"""Input readers: ``.txt`` (a document per non-empty line, or per file), ``.jsonl``, ``.json`` (one array of
objects), CoNLL columns (a document per sentence), and stdin; formats that cannot be read are refused with a hint."""

from __future__ import annotations

import itertools
import json
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import BinaryIO, Literal

from ..errors import InputError, UsageError
from ..labels import json_object_pairs, labels_from_json
from ..prompts import Example, LabelSet
from .conll import CONLL_SUFFIXES, conll_sentences, join_tokens
from .unicode import check_unicode

STDIN = "-"
InputFormat = Literal["auto", "txt", "jsonl", "json", "conll"]
Format = Literal["txt", "jsonl", "json", "conll"]
JSONL_SUFFIXES = (".jsonl", ".ndjson")
#: formats extract cannot read, by suffix: refused before any model loads, with a way to convert them.
_TO_JSONL = 'convert it to JSONL (one {"text": ...} per line)'
REFUSED_SUFFIXES = {
    ".csv": f'{_TO_JSONL}, e.g. python -c "import csv,json,sys; [print(json.dumps(r)) for r in '
    'csv.DictReader(open(sys.argv[1]))]" FILE.csv > FILE.jsonl (then --text-field COLUMN)',
    ".tsv": f'{_TO_JSONL}, e.g. python -c "import csv,json,sys; [print(json.dumps(r)) for r in '
    "csv.DictReader(open(sys.argv[1]), delimiter='\\t')]\" FILE.tsv > FILE.jsonl (then --text-field COLUMN)",
    ".xlsx": f'{_TO_JSONL}, e.g. python -c "import pandas,sys; pandas.read_excel(sys.argv[1])'
    ".to_json(sys.stdout, orient='records', lines=True, force_ascii=False)\" FILE.xlsx > FILE.jsonl",
    ".xls": f"{_TO_JSONL}, e.g. with pandas.read_excel(...).to_json(orient='records', lines=True)",
    ".parquet": f'{_TO_JSONL}, e.g. python -c "import pandas,sys; pandas.read_parquet(sys.argv[1])'
    ".to_json(sys.stdout, orient='records', lines=True, force_ascii=False)\" FILE.parquet > FILE.jsonl",
    ".pdf": "extract its text first, e.g. pdftotext FILE.pdf FILE.txt (then --whole-file for one document)",
    ".docx": "extract its text first, e.g. pandoc FILE.docx -t plain -o FILE.txt",
    ".doc": "save it as plain text first (e.g. libreoffice --headless --convert-to txt FILE.doc)",
    ".odt": "extract its text first, e.g. pandoc FILE.odt -t plain -o FILE.txt",
    ".rtf": "save it as plain text first, e.g. pandoc FILE.rtf -t plain -o FILE.txt",
    ".html": "extract its text first, e.g. pandoc FILE.html -t plain -o FILE.txt",
    ".htm": "extract its text first, e.g. pandoc FILE.htm -t plain -o FILE.txt",
    ".xml": f"{_TO_JSONL}",
    ".gz": "decompress it first: gunzip -k FILE.gz, or zcat FILE.gz | b2ner extract - ...",
    ".zip": "unpack it first: unzip FILE.zip",
}


@dataclass(frozen=True)
class Document:
    """One text to extract from; ``labels`` overrides the run's label set when given."""

    id: str
    text: str
    labels: LabelSet | None = None
    #: where the document came from (``file:line``), for error messages.
    source: str = ""
    #: few-shot examples for this document only (``--demos``: its nearest training sentences); None: the run's.
    examples: tuple[Example, ...] | None = None


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


def b2nerd_dataset(path: Path) -> str:
    """The dataset a B2NERD split file belongs to: the name of its folder (``NER_en/mit-movie/test.json``)."""
    return path.absolute().parent.name


def input_format(path: str, options: ReadOptions) -> Format | None:
    """The format a file is read as: --input-format, else by suffix (None for stdin in auto mode: its first line
    decides)."""
    if options.input_format != "auto":
        return options.input_format
    if path == STDIN:
        return None
    name = path.lower()
    if name.endswith(JSONL_SUFFIXES):
        return "jsonl"
    if name.endswith(".json"):
        return "json"
    if name.endswith(CONLL_SUFFIXES):
        return "conll"
    return "txt"


def check_inputs(paths: Sequence[str], options: ReadOptions | None = None) -> None:
    """Fail early, before any model loads, when an input file is missing, not a file, or in a format extract cannot
    read (by suffix, unless --input-format names one)."""
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
        hint = REFUSED_SUFFIXES.get(p.suffix.lower())
        if hint is not None and (options is None or options.input_format == "auto"):
            raise InputError(
                f"Cannot read {path}: {p.suffix} files are not an input format of extract "
                "(it reads .txt, .jsonl, .json arrays and CoNLL columns).",
                f"{hint[0].upper()}{hint[1:]}.",
            )


def read_documents(paths: Sequence[str], options: ReadOptions, stdin: BinaryIO | None = None) -> Iterator[Document]:
    """Documents from every input in order, streamed (nothing is held beyond the current line)."""
    check_inputs(paths, options)
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


def _format_for(name: str, options: ReadOptions, first_line: str | None) -> Format:
    if name == display_name(STDIN) and options.input_format == "auto":
        # Standard input has no suffix: it is JSONL when its first non-blank line is a JSON object.
        if first_line is not None and first_line.lstrip().startswith("{"):
            try:
                return "jsonl" if isinstance(json.loads(first_line), dict) else "txt"
            except json.JSONDecodeError:
                return "txt"
        return "txt"
    return input_format(name, options) or "txt"


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
    if options.whole_file and fmt != "txt":
        kind = {"jsonl": "JSONL", "json": "JSON", "conll": "CoNLL"}[fmt]
        raise UsageError(f"--whole-file applies to text inputs, not {kind}.", f"Drop --whole-file for {kind} inputs.")
    if fmt == "conll":
        yield from _conll_documents(all_lines, name)
        return
    if fmt == "json":
        yield from _json_documents("\n".join(line for _, line in all_lines), name, options)
        return
    if options.whole_file:
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
    return _record_document(record, where, f"{name}:{number}", options)


def _record_document(record: dict[str, object], where: str, default_id: str, options: ReadOptions) -> Document:
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
        doc_id = default_id
    elif not isinstance(doc_id, (str, int)) or isinstance(doc_id, bool):
        raise InputError(f'{where}: "{options.id_field}" must be a string or an integer.')
    labels = record.get(options.labels_field)
    for field in (options.text_field, options.id_field, options.labels_field):
        check_unicode(record.get(field), where, field)
    label_set = labels_from_json(labels, where=where) if labels is not None else None
    return Document(id=str(doc_id), text=text, labels=label_set, source=where)


def _conll_documents(lines: Iterator[tuple[int, str]], name: str) -> Iterator[Document]:
    """A document per sentence, its tokens joined as eval's CoNLL gold reader joins them; ids ``FILE:N``."""
    for number, sentence in enumerate(conll_sentences(lines), start=1):
        text, _ = join_tokens(sentence.tokens)
        yield Document(id=f"{name}:{number}", text=text, source=f"{name}, line {sentence.lines[0]}")


def _json_documents(content: str, name: str, options: ReadOptions) -> Iterator[Document]:
    """A JSON array of objects, read as JSONL records are (``--text-field`` etc.); ids ``FILE:N`` for the N-th item.

    A B2NERD split file (objects with ``sentence``) reads its ``sentence`` when the objects have no ``text``; its
    ids are ``DATASET:INDEX`` as eval's B2NERD gold reader names them (dataset = the file's folder, index from 0),
    so that ``b2ner eval test.json PREDICTIONS`` matches them.
    """
    try:
        items = json.loads(content, object_pairs_hook=json_object_pairs)
    except json.JSONDecodeError as exc:
        raise InputError(
            f"{name}, line {exc.lineno}: invalid JSON ({exc.msg}).",
            "A .json input is one JSON array of objects; for one object per line use .jsonl.",
        ) from None
    if not isinstance(items, list):
        raise InputError(
            f"{name}: expected a JSON array of objects, found {type(items).__name__}.",
            'e.g. [{"text": "Barack Obama visited Paris."}]; for one object per line use .jsonl.',
        )
    dataset = b2nerd_dataset(Path(name))
    for index, item in enumerate(items):
        where = f"{name}, item {index + 1}"
        if not isinstance(item, dict):
            raise InputError(f"{where}: expected a JSON object, found {type(item).__name__}.")
        b2nerd = options.text_field == "text" and "text" not in item and isinstance(item.get("sentence"), str)
        if b2nerd:
            yield _record_document(item, where, f"{dataset}:{index}", replace(options, text_field="sentence"))
        else:
            yield _record_document(item, where, f"{name}:{index + 1}", options)
