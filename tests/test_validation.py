"""Input validation: each bad shape is one line naming the file, the line (or item) and the field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from b2ner_cli.errors import InputError, LabelError, UsageError
from b2ner_cli.evaluation.readers import read_b2nerd, read_conll, read_gold_jsonl
from b2ner_cli.io.readers import ReadOptions, read_documents
from b2ner_cli.labels import load_labels_file, make_label_set, parse_labels_arg
from b2ner_cli.training.data import TrainExample, labels_without_examples


def b2nerd(tmp_path: Path, items: object, labels: str | None = None) -> Path:
    folder = tmp_path / "ds"
    folder.mkdir()
    if labels is not None:
        (folder / "labels.json").write_text(labels, encoding="utf-8")
    path = folder / "test.json"
    path.write_text(json.dumps(items), encoding="utf-8")  # \uXXXX escapes, as B2NERD writes them
    return path


def error(call) -> InputError:
    with pytest.raises(InputError) as caught:
        call()
    assert "\n" not in caught.value.message
    return caught.value


# --- B2NERD shapes ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("entities", "message"),
    [
        (["Obama"], 'item 1, entity 1: expected an object like {"name": "Obama", "type": "person", "pos": [0, 5]}, '
                    'found "Obama".'),
        ([{"type": "person", "pos": [0, 5]}], 'item 1, entity 1: "name" must be a str, found missing.'),
        ([{"name": "Obama", "pos": [0, 5]}], 'item 1, entity 1: "type" must be a str, found missing.'),
        ([{"name": "Obama", "type": "person"}], 'item 1, entity 1: "pos" must be a list, found missing.'),
        ([{"name": "Obama", "type": "person", "pos": [0]}], 'entity 1: "pos" must be two integers [start, end], '
                                                            "found [0]."),
        ([{"name": "Obama", "type": "person", "pos": ["0", 5]}], 'found ["0", 5].'),
        (None, 'item 1: "entities" must be a list, found null.'),
    ],
)  # fmt: skip
def test_wrong_b2nerd_entity_shapes(tmp_path: Path, entities: object, message: str) -> None:
    path = b2nerd(tmp_path, [{"sentence": "Obama spoke", "entities": entities}])
    caught = error(lambda: read_b2nerd(path))
    assert caught.message.startswith(f"{path}, item 1") and caught.message.endswith(message), caught.message


def test_a_broken_or_non_list_labels_json(tmp_path: Path) -> None:
    path = b2nerd(tmp_path, [{"sentence": "x", "entities": []}], labels='["person", ')
    caught = error(lambda: read_b2nerd(path))
    assert caught.message.startswith(f"{path.parent / 'labels.json'}, line 1: invalid JSON (")
    (path.parent / "labels.json").write_text('{"person": 1}', encoding="utf-8")
    assert error(lambda: read_b2nerd(path)).message == (
        f"{path.parent / 'labels.json'}: expected a JSON list of label names, found dict."
    )
    (path.parent / "labels.json").write_text('["person", 3]', encoding="utf-8")
    assert error(lambda: read_b2nerd(path)).message == (
        f"{path.parent / 'labels.json'}: the list item 2 is 3, not a label name."
    )


def test_na_entities_are_still_skipped(tmp_path: Path) -> None:
    path = b2nerd(tmp_path, [{"sentence": "Obama", "entities": [{"name": "Obama", "type": "NA", "pos": [0, 5]}]}])
    assert read_b2nerd(path)[0].entities == ()


# --- gold JSONL and CoNLL ---------------------------------------------------------------------------------------


def test_gold_labels_that_are_not_names(tmp_path: Path) -> None:
    path = tmp_path / "gold.jsonl"
    path.write_text('{"text": "x", "entities": []}\n{"text": "y", "labels": [1, null]}\n', encoding="utf-8")
    assert error(lambda: read_gold_jsonl(path)).message == f'{path}, line 2: "labels" item 1 is 1, not a label name.'
    path.write_text('{"text": "y", "labels": "person"}\n', encoding="utf-8")
    assert error(lambda: read_gold_jsonl(path)).message == (
        f'{path}, line 1: "labels" must be a list of label names, found str.'
    )


@pytest.mark.parametrize("tag", ["B-", "I-", "S-"])
def test_conll_tag_without_a_type(tmp_path: Path, tag: str) -> None:
    path = tmp_path / "data.conll"
    path.write_text(f"Obama B-PER\nspoke O\n\nParis {tag}\n", encoding="utf-8")
    caught = error(lambda: read_conll(path))
    assert caught.message == f"{path}, line 4: tag '{tag}' has no entity type."
    assert caught.hint == "Tags name the type after the prefix, e.g. B-PER, I-PER."


# --- lone surrogates --------------------------------------------------------------------------------------------

SURROGATE_HINT = "Fix the \\uXXXX escape in the file: a surrogate must be half of a pair, e.g. \\ud83d\\ude00."


def test_lone_surrogate_in_an_extract_input(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_text('{"text": "ok \\ud83d\\ude00"}\n{"text": "bad \\ud800"}\n', encoding="utf-8")

    def read() -> list[object]:
        return list(read_documents([str(path)], ReadOptions()))

    caught = error(read)
    assert caught.message == f'{path}, line 2: "text" holds a lone surrogate (\\ud800), which is not valid Unicode.'
    assert caught.hint == SURROGATE_HINT
    path.write_text('{"text": "x", "labels": ["person", "\\udc00x"]}\n', encoding="utf-8")
    assert '"labels[1]" holds a lone surrogate (\\udc00)' in error(read).message


def test_lone_surrogate_in_a_labels_file(tmp_path: Path) -> None:
    path = tmp_path / "labels.json"
    path.write_text('{"person": "a human \\ud800"}', encoding="utf-8")
    caught = error(lambda: load_labels_file(path))
    assert caught.message == (
        f'{path}: "description of person" holds a lone surrogate (\\ud800), which is not valid Unicode.'
    )


def test_lone_surrogate_in_gold_data(tmp_path: Path) -> None:
    path = tmp_path / "gold.jsonl"
    path.write_text('{"text": "Obama", "entities": [{"start": 0, "end": 5, "label": "per\\ud800"}]}\n', "utf-8")
    assert error(lambda: read_gold_jsonl(path)).message.startswith(
        f'{path}, line 1: "entities[0].label" holds a lone surrogate'
    )
    split = b2nerd(tmp_path, [{"sentence": "x\ud800", "entities": []}])
    assert error(lambda: read_b2nerd(split)).message.startswith(f'{split}, item 1: "sentence" holds a lone surrogate')


# --- labels that the answer format cannot carry -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "char", "renamed"),
    [("city;town", ";", "city/town"), ("person, group", ",", "person/group"), ("line\nbreak", "\n", "line break")],
)
def test_labels_with_answer_separators_are_refused(name: str, char: str, renamed: str) -> None:
    with pytest.raises(LabelError) as caught:
        make_label_set(["person", name], where="labels.json")
    assert caught.value.message == (
        f"labels.json: label {name!r} contains {char!r}, which separates entities and labels in prompts and answers."
    )
    assert caught.value.hint == f'Rename it, e.g. use "/" or a space: "{renamed}".'


def test_a_labels_file_with_a_semicolon_is_refused_but_the_command_line_splits_commas(tmp_path: Path) -> None:
    path = tmp_path / "labels.txt"
    path.write_text("person\ncity; town\n", encoding="utf-8")
    with pytest.raises(LabelError, match="contains ';'"):
        load_labels_file(path)
    assert parse_labels_arg("a,b").names == ("a", "b")


# --- finetune labels that leave nothing to learn ----------------------------------------------------------------


def test_finetune_labels_that_match_no_training_entity_are_refused() -> None:
    examples = [TrainExample("Ada met Bob", (("person", "Ada"), ("person", "Bob")), ("city",))]
    with pytest.raises(UsageError) as caught:
        labels_without_examples(examples)
    assert caught.value.message == (
        "No training entity has a label in the label set (city); the data's entities are: person."
    )
    both = [TrainExample("Ada met Bob", (("person", "Ada"),), ("person", "city"))]
    assert labels_without_examples(both) == ["city"]
