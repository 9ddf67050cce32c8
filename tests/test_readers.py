"""Input readers (.txt, .jsonl, stdin), label sets, and few-shot example files."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from b2ner_cli.errors import EXIT_USAGE, InputError, LabelError, UsageError
from b2ner_cli.io.examples import load_examples
from b2ner_cli.io.readers import Document, ReadOptions, check_inputs, read_documents
from b2ner_cli.labels import load_labels_file, make_label_set, parse_labels_arg
from b2ner_cli.prompts import Example, LabelSet

BOM = b"\xef\xbb\xbf"


def write(path: Path, data: bytes | str) -> str:
    path.write_bytes(data if isinstance(data, bytes) else data.encode("utf-8"))
    return str(path)


def read(paths: list[str], stdin: bytes | None = None, **options: object) -> list[Document]:
    stream = io.BytesIO(stdin) if stdin is not None else None
    return list(read_documents(paths, ReadOptions(**options), stdin=stream))  # type: ignore[arg-type]


# --- .txt -------------------------------------------------------------------------------------------------------


def test_txt_gives_one_document_per_non_empty_line_numbered_from_one(tmp_path: Path) -> None:
    path = write(tmp_path / "in.txt", "alpha\n\nbeta gamma\n   \ndelta\n")
    assert read([path]) == [
        Document(id=f"{path}:1", text="alpha", labels=None, source=f"{path}, line 1"),
        Document(id=f"{path}:3", text="beta gamma", labels=None, source=f"{path}, line 3"),
        Document(id=f"{path}:5", text="delta", labels=None, source=f"{path}, line 5"),
    ]


def test_txt_drops_line_endings_but_keeps_the_rest_of_the_line(tmp_path: Path) -> None:
    path = write(tmp_path / "in.txt", "one\r\n  two  \r\nthree")
    assert [(d.id, d.text) for d in read([path])] == [
        (f"{path}:1", "one"),
        (f"{path}:2", "  two  "),
        (f"{path}:3", "three"),
    ]


def test_txt_lines_split_on_newline_only(tmp_path: Path) -> None:
    # U+2028 and NEL are characters of a line, not line breaks
    path = write(tmp_path / "in.txt", "a\u2028b\x85c\nd\n")
    assert [d.text for d in read([path])] == ["a\u2028b\x85c", "d"]


def test_utf8_bom_on_the_first_line_is_stripped(tmp_path: Path) -> None:
    path = write(tmp_path / "in.txt", BOM + b"hello\nworld\n")
    assert [d.text for d in read([path])] == ["hello", "world"]


def test_empty_file_gives_no_document(tmp_path: Path) -> None:
    assert read([write(tmp_path / "empty.txt", b"")]) == []
    assert read([write(tmp_path / "blank.txt", b"\n  \n\n")]) == []


def test_whole_file_gives_one_document_per_file_with_the_path_as_id(tmp_path: Path) -> None:
    first = write(tmp_path / "a.txt", BOM + b"para one\nline two\n\npara two\n")
    second = write(tmp_path / "b.txt", "single")
    docs = read([first, second], whole_file=True)
    assert docs == [
        Document(id=first, text="para one\nline two\n\npara two", source=first),
        Document(id=second, text="single", source=second),
    ]


def test_whole_file_skips_a_blank_file(tmp_path: Path) -> None:
    assert read([write(tmp_path / "blank.txt", "\n \n")], whole_file=True) == []


def test_whole_file_rejects_jsonl(tmp_path: Path) -> None:
    path = write(tmp_path / "in.jsonl", '{"text": "x"}\n')
    with pytest.raises(UsageError, match="--whole-file"):
        read([path], whole_file=True)


def test_non_utf8_line_names_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path / "gbk.txt", b"ok\n" + "北京\n".encode("gbk"))
    documents = read_documents([path], ReadOptions())
    assert next(documents).text == "ok"  # streamed: line 1 is read before line 2 fails
    with pytest.raises(InputError) as caught:
        next(documents)
    assert path in caught.value.message
    assert "line 2" in caught.value.message
    assert "UTF-8" in caught.value.message


def test_non_utf8_in_whole_file_mode_names_the_line(tmp_path: Path) -> None:
    path = write(tmp_path / "bad.txt", b"a\nb\n\xff\n")
    with pytest.raises(InputError, match="line 3"):
        read([path], whole_file=True)


# --- inputs that are missing, repeated or not files ---------------------------------------------------------------


def test_missing_file_is_an_input_error_naming_it(tmp_path: Path) -> None:
    missing = str(tmp_path / "nope.txt")
    with pytest.raises(InputError) as caught:
        check_inputs([missing])
    assert missing in caught.value.message
    assert caught.value.exit_code == 1
    with pytest.raises(InputError, match=r"nope\.txt"):
        read([missing])


def test_missing_file_fails_before_any_document_is_read(tmp_path: Path) -> None:
    good = write(tmp_path / "good.txt", "text\n")
    with pytest.raises(InputError, match=r"later\.txt"):
        next(read_documents([good, str(tmp_path / "later.txt")], ReadOptions()))


def test_directory_is_not_an_input(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not a file"):
        check_inputs([str(tmp_path)])


def test_no_input_or_stdin_twice_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="No input"):
        check_inputs([])
    with pytest.raises(UsageError, match="more than once"):
        check_inputs(["-", "-"])
    check_inputs(["-", write(tmp_path / "a.txt", "x")])  # one stdin and a file are fine


# --- .jsonl -----------------------------------------------------------------------------------------------------


def test_jsonl_reads_text_id_and_labels(tmp_path: Path) -> None:
    lines = [
        {"text": "Ada met Bob.", "id": "doc-a"},
        {"text": "Paris", "id": 42},
        {"text": "no id here"},
        {"text": "with labels", "labels": ["person", " city "]},
        {"text": "with descriptions", "labels": {"person": " a human ", "city": "a town"}},
    ]
    path = write(
        tmp_path / "in.jsonl",
        "\n".join(json.dumps(r) for r in lines[:2]) + "\n\n" + "\n".join(json.dumps(r) for r in lines[2:]) + "\n",
    )
    assert read([path]) == [
        Document(id="doc-a", text="Ada met Bob.", source=f"{path}, line 1"),
        Document(id="42", text="Paris", source=f"{path}, line 2"),
        Document(id=f"{path}:4", text="no id here", source=f"{path}, line 4"),
        Document(id=f"{path}:5", text="with labels", labels=LabelSet(("person", "city")), source=f"{path}, line 5"),
        Document(
            id=f"{path}:6",
            text="with descriptions",
            labels=LabelSet(("person", "city"), ("a human", "a town")),
            source=f"{path}, line 6",
        ),
    ]


def test_jsonl_text_is_kept_exactly(tmp_path: Path) -> None:
    path = write(tmp_path / "in.jsonl", json.dumps({"text": "  two\nlines\u2028 "}) + "\n")
    assert read([path])[0].text == "  two\nlines\u2028 "


@pytest.mark.parametrize("name", ["in.ndjson", "IN.JSONL", "x.Jsonl"])
def test_jsonl_suffixes_are_recognised_in_any_case(tmp_path: Path, name: str) -> None:
    path = write(tmp_path / name, '{"text": "hello", "id": "h"}\n')
    assert [(d.id, d.text) for d in read([path])] == [("h", "hello")]


def test_jsonl_custom_text_and_id_fields(tmp_path: Path) -> None:
    path = write(tmp_path / "in.jsonl", '{"sentence": "Hi there", "text": 5, "uid": "u1", "id": "ignored"}\n')
    docs = read([path], text_field="sentence", id_field="uid")
    assert [(d.id, d.text) for d in docs] == [("u1", "Hi there")]


def test_jsonl_custom_labels_field(tmp_path: Path) -> None:
    path = write(tmp_path / "in.jsonl", '{"text": "x", "labels": 3, "types": ["a", "b"]}\n')
    assert read([path], labels_field="types")[0].labels == LabelSet(("a", "b"))


def test_jsonl_null_labels_mean_no_override(tmp_path: Path) -> None:
    path = write(tmp_path / "in.jsonl", '{"text": "x", "labels": null}\n')
    assert read([path])[0].labels is None


def test_jsonl_bom_on_first_line_is_stripped(tmp_path: Path) -> None:
    path = write(tmp_path / "in.jsonl", BOM + b'{"text": "first"}\n{"text": "second"}\n')
    assert [d.text for d in read([path])] == ["first", "second"]


def test_jsonl_crlf_line_endings(tmp_path: Path) -> None:
    path = write(tmp_path / "in.jsonl", b'{"text": "a"}\r\n{"text": "b"}\r\n')
    assert [d.text for d in read([path])] == ["a", "b"]


def test_invalid_json_names_the_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path / "in.jsonl", '{"text": "ok"}\n\n{"text": "broken"\n')
    with pytest.raises(InputError) as caught:
        read([path])
    assert path in caught.value.message
    assert "line 3" in caught.value.message
    assert "invalid JSON" in caught.value.message


@pytest.mark.parametrize("line", ['["a list"]', '"a string"', "17"])
def test_jsonl_line_that_is_not_an_object_is_an_input_error(tmp_path: Path, line: str) -> None:
    path = write(tmp_path / "in.jsonl", '{"text": "ok"}\n' + line + "\n")
    with pytest.raises(InputError, match="line 2: expected a JSON object"):
        read([path])


def test_missing_text_field_names_field_and_line(tmp_path: Path) -> None:
    path = write(tmp_path / "in.jsonl", '{"text": "ok"}\n{"body": "no text", "id": 1}\n')
    with pytest.raises(InputError) as caught:
        read([path])
    message = caught.value.message
    assert "line 2" in message and '"text"' in message and path in message
    assert "body" in message  # the fields the record does have


def test_custom_text_field_missing_is_named(tmp_path: Path) -> None:
    path = write(tmp_path / "in.jsonl", '{"text": "there is text but not in body"}\n')
    with pytest.raises(InputError, match=r'line 1: .*"body"'):
        read([path], text_field="body")


@pytest.mark.parametrize("value", ["5", "null", '["a"]', '{"a": 1}', "true"])
def test_non_string_text_field_is_an_input_error(tmp_path: Path, value: str) -> None:
    path = write(tmp_path / "in.jsonl", '{"text": ' + value + "}\n")
    with pytest.raises(InputError, match=r'line 1: .*text field "text"'):
        read([path])


@pytest.mark.parametrize("value", ["true", "1.5", '["a"]', '{"a": 1}'])
def test_id_must_be_a_string_or_an_integer(tmp_path: Path, value: str) -> None:
    path = write(tmp_path / "in.jsonl", '{"text": "x", "id": ' + value + "}\n")
    with pytest.raises(InputError, match='line 1: "id" must be a string or an integer'):
        read([path])


@pytest.mark.parametrize(
    ("labels", "problem"),
    [
        ('["person", "person"]', "duplicate"),
        ('["person", " person "]', "duplicate"),
        ('["person", ""]', "empty"),
        ('["person", "  "]', "empty"),
        ("[]", "no labels"),
        ('{"person": "a human", "person": "someone"}', "duplicate"),
        ('{"person": ""}', "description"),
        ('["person", 3]', "not a string"),
        ('"person,city"', "JSON list"),
    ],
)
def test_bad_per_record_labels_are_a_label_error(tmp_path: Path, labels: str, problem: str) -> None:
    path = write(tmp_path / "in.jsonl", '{"text": "fine"}\n{"text": "x", "labels": ' + labels + "}\n")
    with pytest.raises(LabelError) as caught:
        read([path])
    assert isinstance(caught.value, UsageError)
    assert caught.value.exit_code == EXIT_USAGE
    assert "line 2" in caught.value.message
    assert problem in caught.value.message


def test_input_format_jsonl_forces_a_txt_file_to_be_read_as_jsonl(tmp_path: Path) -> None:
    path = write(tmp_path / "in.txt", '{"text": "from json", "id": "j"}\n')
    assert [(d.id, d.text) for d in read([path], input_format="jsonl")] == [("j", "from json")]


def test_input_format_txt_forces_a_jsonl_file_to_be_read_as_lines(tmp_path: Path) -> None:
    line = '{"text": "raw"}'
    path = write(tmp_path / "in.jsonl", line + "\n")
    assert [(d.id, d.text) for d in read([path], input_format="txt")] == [(f"{path}:1", line)]


# --- stdin ------------------------------------------------------------------------------------------------------


def test_stdin_text_lines_are_named_stdin() -> None:
    docs = read(["-"], stdin=b"hello\n\nworld\n")
    assert docs == [
        Document(id="<stdin>:1", text="hello", source="<stdin>, line 1"),
        Document(id="<stdin>:3", text="world", source="<stdin>, line 3"),
    ]


def test_stdin_is_jsonl_when_its_first_line_is_a_json_object() -> None:
    docs = read(["-"], stdin=b'{"text": "hi", "id": 7}\n{"text": "no id"}\n')
    assert [(d.id, d.text) for d in docs] == [("7", "hi"), ("<stdin>:2", "no id")]


def test_stdin_format_is_decided_by_the_first_non_blank_line() -> None:
    docs = read(["-"], stdin=b'\n  \n{"text": "hi"}\n')
    assert [(d.id, d.text) for d in docs] == [("<stdin>:3", "hi")]


def test_stdin_jsonl_detection_survives_a_bom() -> None:
    docs = read(["-"], stdin=BOM + b'{"text": "hi"}\n')
    assert [(d.id, d.text) for d in docs] == [("<stdin>:1", "hi")]


@pytest.mark.parametrize("first", ["[1, 2]", "{not json", '"quoted"', "plain text"])
def test_stdin_is_text_when_its_first_line_is_not_a_json_object(first: str) -> None:
    docs = read(["-"], stdin=(first + '\n{"text": "x"}\n').encode())
    assert [(d.id, d.text) for d in docs] == [("<stdin>:1", first), ("<stdin>:2", '{"text": "x"}')]


def test_input_format_forces_stdin_format() -> None:
    as_text = read(["-"], stdin=b'{"text": "hi"}\n', input_format="txt")
    assert [(d.id, d.text) for d in as_text] == [("<stdin>:1", '{"text": "hi"}')]
    with pytest.raises(InputError, match="<stdin>, line 1: invalid JSON"):
        read(["-"], stdin=b"plain words\n", input_format="jsonl")


def test_stdin_errors_name_stdin_and_line() -> None:
    with pytest.raises(InputError, match="<stdin>, line 2: invalid JSON"):
        read(["-"], stdin=b'{"text": "a"}\n{oops\n')
    with pytest.raises(InputError, match="<stdin>, line 2: not valid UTF-8"):
        read(["-"], stdin=b"fine\n\xc3\x28\n")


def test_whole_file_on_stdin_is_one_document() -> None:
    assert read(["-"], stdin=b"line one\nline two\n", whole_file=True) == [
        Document(id="<stdin>", text="line one\nline two", source="<stdin>")
    ]


def test_empty_stdin_gives_no_document() -> None:
    assert read(["-"], stdin=b"") == []


def test_inputs_are_read_in_the_order_given(tmp_path: Path) -> None:
    first = write(tmp_path / "a.txt", "from a\n")
    second = write(tmp_path / "b.jsonl", '{"text": "from b"}\n')
    docs = read([first, "-", second], stdin=b"from stdin\n")
    assert [(d.id, d.text) for d in docs] == [
        (f"{first}:1", "from a"),
        ("<stdin>:1", "from stdin"),
        (f"{second}:1", "from b"),
    ]


# --- labels -----------------------------------------------------------------------------------------------------


def test_parse_labels_arg_keeps_order_and_strips() -> None:
    assert parse_labels_arg("person,organization,location") == LabelSet(("person", "organization", "location"))
    assert parse_labels_arg(" person , gpe\t") == LabelSet(("person", "gpe"))
    assert parse_labels_arg("location,person").names == ("location", "person")


def test_parse_labels_arg_accepts_full_width_commas() -> None:
    assert parse_labels_arg("人名，地名,机构") == LabelSet(("人名", "地名", "机构"))


@pytest.mark.parametrize(
    "value", ["person,person", "person, person ", "a,b,a", "Person,person", "date or period,date  or Period"]
)
def test_parse_labels_arg_rejects_duplicates(value: str) -> None:
    with pytest.raises(LabelError, match="duplicate label") as caught:
        parse_labels_arg(value)
    assert caught.value.exit_code == EXIT_USAGE
    assert "--labels" in caught.value.message


@pytest.mark.parametrize("value", ["person,,location", "person,", ",person", "", "   ", "a, ,b"])
def test_parse_labels_arg_rejects_empty_labels(value: str) -> None:
    with pytest.raises(LabelError, match="empty label") as caught:
        parse_labels_arg(value)
    assert isinstance(caught.value, UsageError)
    assert caught.value.hint  # says what to do


def test_make_label_set_rejects_nothing_and_non_strings() -> None:
    with pytest.raises(LabelError, match="no labels"):
        make_label_set([], where="x")
    with pytest.raises(LabelError, match="not a string"):
        make_label_set(["a", None], where="x")


def test_make_label_set_pairs_descriptions_with_names() -> None:
    assert make_label_set([" a ", "b"], [" first ", "second"], where="x") == LabelSet(("a", "b"), ("first", "second"))


def test_labels_file_one_label_per_line(tmp_path: Path) -> None:
    path = tmp_path / "labels.txt"
    write(path, BOM + b"person\r\n\n  location  \norganization")
    assert load_labels_file(path) == LabelSet(("person", "location", "organization"))


def test_labels_file_json_list(tmp_path: Path) -> None:
    path = tmp_path / "labels.json"
    write(path, '  ["person", " location "]\n')
    assert load_labels_file(path) == LabelSet(("person", "location"))


def test_labels_file_json_object_sets_descriptions(tmp_path: Path) -> None:
    path = tmp_path / "labels.json"
    write(path, json.dumps({"person": "a human being", "location": " a place "}, indent=2))
    labels = load_labels_file(path)
    assert labels.names == ("person", "location")
    assert labels.descriptions == ("a human being", "a place")


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("person\nlocation\nperson\n", 'duplicate label "person"'),
        ('["a", "b", "a"]', 'duplicate label "a"'),
        ('{"a": "x", "b": "y", "a": "z"}', 'duplicate label "a"'),
        ('{"a": "x", " a": "y"}', 'duplicate label "a"'),
        ('["a", ""]', "empty label"),
        ('{"a": "  "}', 'label "a" has no description'),
        ('{"a": 3}', 'label "a" has no description'),
        ("", "no labels"),
        ("\n\n", "no labels"),
        ("[]", "no labels"),
    ],
)
def test_bad_labels_file_is_a_label_error_naming_it(tmp_path: Path, content: str, problem: str) -> None:
    path = tmp_path / "labels.json"
    write(path, content)
    with pytest.raises(LabelError) as caught:
        load_labels_file(path)
    assert problem in caught.value.message
    assert str(path) in caught.value.message
    assert caught.value.exit_code == EXIT_USAGE


def test_labels_file_missing_or_unreadable_is_an_input_error(tmp_path: Path) -> None:
    missing = tmp_path / "none.txt"
    with pytest.raises(InputError, match="does not exist") as caught:
        load_labels_file(missing)
    assert str(missing) in caught.value.message
    bad = tmp_path / "latin1.txt"
    bad.write_bytes("café\n".encode("latin-1"))
    with pytest.raises(InputError, match="not UTF-8"):
        load_labels_file(bad)


def test_labels_file_invalid_json_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "labels.json"
    write(path, '[\n  "person",\n  "location"\n  "org"\n]\n')
    with pytest.raises(InputError, match=r"line 4: invalid JSON"):
        load_labels_file(path)


# --- few-shot examples ------------------------------------------------------------------------------------------


def test_examples_jsonl_with_answers(tmp_path: Path) -> None:
    path = tmp_path / "ex.jsonl"
    write(
        path, '{"text": "Ada met Bob.", "answer": " person: Ada; person: Bob "}\r\n\r\n{"text": "Rain.", "answer": ""}'
    )
    assert load_examples(path) == [
        Example(text="Ada met Bob.", answer="person: Ada; person: Bob"),
        Example(text="Rain.", answer="None"),
    ]


def test_examples_with_entities_build_the_answer(tmp_path: Path) -> None:
    path = tmp_path / "ex.jsonl"
    records = [
        {
            "text": "Ada flew to Paris with Bob.",
            "entities": [
                {"label": "person", "text": "Ada"},
                {"type": "location", "name": "Paris"},
                {"label": "NA", "text": "with"},
                {"type": "", "name": "flew"},
                {"label": "person", "text": "Bob"},
            ],
        },
        {"sentence": "Nothing here.", "entities": []},
        {"sentence": "Only NA.", "entities": [{"type": "NA", "name": "Only"}]},
    ]
    write(path, "\n".join(json.dumps(r, ensure_ascii=False) for r in records))
    assert load_examples(path) == [
        Example(text="Ada flew to Paris with Bob.", answer="person: Ada; location: Paris; person: Bob"),
        Example(text="Nothing here.", answer="None"),
        Example(text="Only NA.", answer="None"),
    ]


def test_examples_json_array(tmp_path: Path) -> None:
    path = tmp_path / "ex.json"
    records = [
        {"sentence": "李明去了北京。", "entities": [{"type": "人名", "name": "李明"}, {"type": "地名", "name": "北京"}]}
    ]
    write(path, BOM + b"\n  " + json.dumps(records, ensure_ascii=False, indent=2).encode())
    assert load_examples(path) == [Example(text="李明去了北京。", answer="人名: 李明; 地名: 北京")]


def test_examples_text_with_unicode_line_separators_is_one_record(tmp_path: Path) -> None:
    # json.dumps(ensure_ascii=False) leaves U+2028 and NEL unescaped; they are not JSONL line breaks
    path = tmp_path / "ex.jsonl"
    records = [{"text": "a\u2028b", "answer": "None"}, {"text": "c\x85d", "answer": "x: c"}]
    write(path, "\n".join(json.dumps(r, ensure_ascii=False) for r in records) + "\n")
    assert load_examples(path) == [Example("a\u2028b", "None"), Example("c\x85d", "x: c")]


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("{broken", "invalid JSON"),
        ('["text"]', "expected a JSON object"),
        ('{"answer": "None"}', '"text" (or "sentence")'),
        ('{"text": "  ", "answer": "None"}', '"text" (or "sentence")'),
        ('{"text": "t"}', '"answer" string or an "entities" list'),
        ('{"text": "t", "entities": {"label": "a"}}', '"entities" must be a list'),
        ('{"text": "t", "entities": ["a"]}', "each entity must be an object"),
        ('{"text": "t", "entities": [{"label": "a"}]}', 'string "label"'),
        ('{"text": "t", "entities": [{"text": "t"}]}', 'string "label"'),
    ],
)
def test_bad_example_line_names_file_and_line(tmp_path: Path, line: str, problem: str) -> None:
    path = tmp_path / "ex.jsonl"
    write(path, '{"text": "ok", "answer": "None"}\n\n' + line + "\n")
    with pytest.raises(InputError) as caught:
        load_examples(path)
    assert f"{path}, line 3" in caught.value.message
    assert problem in caught.value.message


def test_bad_item_in_json_array_is_named(tmp_path: Path) -> None:
    path = tmp_path / "ex.json"
    write(path, '[{"text": "ok", "answer": "None"}, {"text": "no answer"}]')
    with pytest.raises(InputError, match="item 2"):
        load_examples(path)


def test_invalid_json_array_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "ex.json"
    write(path, '[\n{"text": "ok", "answer": "None"},\n{"text": }\n]')
    with pytest.raises(InputError, match="line 3: invalid JSON"):
        load_examples(path)


def test_examples_file_missing_empty_or_not_utf8(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        load_examples(tmp_path / "none.jsonl")
    empty = tmp_path / "empty.jsonl"
    write(empty, "\n  \n")
    with pytest.raises(InputError, match="holds no examples"):
        load_examples(empty)
    latin = tmp_path / "latin.jsonl"
    latin.write_bytes('{"text": "café", "answer": "None"}\n'.encode("latin-1"))
    with pytest.raises(InputError, match="not UTF-8"):
        load_examples(latin)
