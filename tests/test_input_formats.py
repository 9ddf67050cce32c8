"""extract's other inputs: CoNLL columns, JSON arrays (B2NERD split files included), and the formats it refuses."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import cli

from b2ner_cli.errors import InputError, UsageError
from b2ner_cli.evaluation.readers import read_b2nerd, read_conll
from b2ner_cli.io.readers import Document, ReadOptions, read_documents

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def read(path: Path, **options: object) -> list[Document]:
    return list(read_documents([str(path)], ReadOptions(**options)))  # type: ignore[arg-type]


def test_conll_sentences_are_documents_with_the_gold_readers_texts_and_ids(tmp_path: Path) -> None:
    path = tmp_path / "in.bmes"
    path.write_text("-DOCSTART- O\n\n1 O\n9 O\n年 O\n， O\n\nHi O\nthere O\n", encoding="utf-8")
    docs = read(path)
    assert [(d.id, d.text) for d in docs] == [(f"{path}:1", "19年，"), (f"{path}:2", "Hi there")]
    assert [(r.id, r.text) for r in read_conll(path)] == [(d.id, d.text) for d in docs]


def test_conll_tokens_without_tags_are_read_too(tmp_path: Path) -> None:
    path = tmp_path / "tokens.conll"
    path.write_text("Ada\nmet\nBob\n", encoding="utf-8")
    assert [d.text for d in read(path)] == ["Ada met Bob"]


def test_shared_weibo_slice_gives_120_documents_as_the_gold_reader() -> None:
    path = DATA / "weibo-train-120.conll"
    if not path.is_file():
        pytest.skip(f"{path} is absent")
    docs = read(path)
    assert len(docs) == 120 and [(d.id, d.text) for d in docs] == [(r.id, r.text) for r in read_conll(path)]


def test_json_array_reads_like_jsonl(tmp_path: Path) -> None:
    path = tmp_path / "in.json"
    path.write_text(json.dumps([{"body": "one", "key": 7, "tags": ["person"]}, {"body": "two"}]), encoding="utf-8")
    docs = read(path, text_field="body", id_field="key", labels_field="tags")
    assert [(d.id, d.text) for d in docs] == [("7", "one"), (f"{path}:2", "two")]
    assert docs[0].labels is not None and docs[0].labels.names == ("person",)


def test_b2nerd_split_file_reads_its_sentences_with_the_gold_readers_ids(tmp_path: Path) -> None:
    folder = tmp_path / "NER_en" / "mit-movie"
    folder.mkdir(parents=True)
    items = [{"sentence": "a film by Ada", "entities": [{"name": "Ada", "type": "director", "pos": [10, 13]}]},
             {"sentence": "any comedies", "entities": []}]  # fmt: skip
    path = folder / "test.json"
    path.write_text(json.dumps(items), encoding="utf-8")
    docs = read(path)
    assert [(d.id, d.text) for d in docs] == [("mit-movie:0", "a film by Ada"), ("mit-movie:1", "any comedies")]
    assert [(r.id, r.text) for r in read_b2nerd(path)] == [(d.id, d.text) for d in docs]


@pytest.mark.parametrize(("content", "message"), [
    ('{"text": "x"}', "expected a JSON array of objects, found dict"),
    ('["x"]', "item 1: expected a JSON object, found str"),
    ('[{"text": "x"},', "invalid JSON"),
    ('[{"body": "x"}]', 'item 1: record has no text field "text" (fields: body)'),
])  # fmt: skip
def test_bad_json_arrays_are_input_errors(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "in.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(InputError, match=message.replace("(", r"\(").replace(")", r"\)")):
        read(path)


def test_input_format_forces_conll_and_json(tmp_path: Path) -> None:
    conll = tmp_path / "in.txt"
    conll.write_text("李 B-PER\n明 I-PER\n", encoding="utf-8")
    assert [d.text for d in read(conll, input_format="conll")] == ["李明"]
    array = tmp_path / "in.data"
    array.write_text('[{"text": "x"}]', encoding="utf-8")
    assert [d.text for d in read(array, input_format="json")] == ["x"]
    with pytest.raises(UsageError, match="--whole-file applies to text inputs, not CoNLL"):
        read(conll, input_format="conll", whole_file=True)


@pytest.mark.parametrize(("name", "hint"), [
    ("table.csv", "csv.DictReader"), ("table.tsv", "delimiter"), ("book.xlsx", "read_excel"),
    ("data.parquet", "read_parquet"), ("paper.pdf", "pdftotext"), ("letter.docx", "pandoc"),
])  # fmt: skip
def test_unreadable_formats_are_refused_with_a_hint(tmp_path: Path, name: str, hint: str) -> None:
    path = tmp_path / name
    path.write_bytes(b"a,b\n1,2\n")
    result = cli("extract", str(path), "-l", "person", "--dry-run")
    assert result.exit_code == 1 and result.stdout == ""
    error, hint_line = result.stderr.strip().split("\n")
    suffix = name.rsplit(".", 1)[1]
    assert error == f"Error: Cannot read {path}: .{suffix} files are not an input format of extract " \
        "(it reads .txt, .jsonl, .json arrays and CoNLL columns)."  # fmt: skip
    assert hint_line.startswith("Hint: ") and hint in hint_line


def test_a_refused_suffix_is_read_when_input_format_names_one(tmp_path: Path) -> None:
    path = tmp_path / "notes.csv"
    path.write_text("Ada met Bob\n", encoding="utf-8")
    result = cli("extract", str(path), "-l", "person", "--dry-run", "--input-format", "txt")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["id"] == f"{path}:1"


def test_conll_input_needs_labels_json_records_may_bring_their_own(tmp_path: Path) -> None:
    conll = tmp_path / "in.conll"
    conll.write_text("Ada O\n", encoding="utf-8")
    assert "No labels given" in cli("extract", str(conll), "--dry-run").stderr
    array = tmp_path / "in.json"
    array.write_text('[{"text": "Ada", "labels": ["person"]}]', encoding="utf-8")
    result = cli("extract", str(array), "--dry-run")
    assert result.exit_code == 0 and json.loads(result.stdout)["id"] == f"{array}:1"
