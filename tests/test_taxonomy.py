"""Taxonomy search, suggestions, the `b2ner taxonomy` commands, and label help in `b2ner extract`."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import cli, scored

from b2ner_cli.taxonomy.data import load
from b2ner_cli.taxonomy.search import edit_distance, normalize, search
from b2ner_cli.taxonomy.suggest import advise, dataset_labels, suggest, suggested_labels


def top(query: str) -> str:
    hits = search(query, limit=1)
    assert hits, query
    return hits[0].entry.en


def test_the_taxonomy_is_big_enough() -> None:
    taxonomy = load()
    assert len(taxonomy.types) >= 400
    assert len(taxonomy.datasets) >= 30
    assert {d.language for d in taxonomy.datasets.values()} == {"en", "zh"}


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("company", "company"),  # the exact English name first
        ("Company", "company"),  # case
        ("companies", "company"),  # plural
        ("compnay", "company"),  # a typo (two letters swapped)
        ("comapny", "company"),
        ("公司", "company"),  # the Chinese leaf of 组织机构名->公司
        ("组织机构名->公司", "company"),
        ("PER", "person"),  # a raw tag
        ("B-ORG", "organization"),  # a BIO tag
        ("GPE", "geopolitical entity"),
        ("疾病", "disease"),
        ("date or period", "date or period"),
    ],
)
def test_search_ranking(query: str, expected: str) -> None:
    assert top(query) == expected


def test_search_finds_nothing_for_nonsense() -> None:
    assert search("qqqqzzzz") == []


def test_normalize_and_edit_distance() -> None:
    assert normalize("B-ORGs") == "org"
    assert normalize("  Movie_Genres ") == "movie genre"
    assert normalize("cities") == "city"
    assert normalize("address") == "address"
    assert edit_distance("compnay", "company", 2) == 1  # one swap of neighbours
    assert edit_distance("kitten", "sitting", 3) == 3
    assert edit_distance("abc", "abcdefg", 2) == 3  # beyond the limit: limit + 1


def test_suggest_for_conll2003_tags() -> None:
    suggestions = suggest(["PER", "ORG", "LOC", "MISC"])
    assert suggested_labels(suggestions, "en") == ["person", "organization", "location", "miscellaneous entity"]
    assert suggested_labels(suggestions, "zh") == ["人名", "组织机构名", "地名", "其他实体"]
    assert all(s.basis in ("dataset tag", "alias") for s in suggestions)


def test_suggest_collapses_weibo_nominal_tags() -> None:
    suggestions = suggest(["PER.NAM", "PER.NOM", "GPE.NAM"])
    assert suggested_labels(suggestions, "zh")[0] == "人名"
    assert len(suggested_labels(suggestions, "zh")) == 2


def test_suggest_keeps_canonical_and_unknown_labels() -> None:
    kept, unknown = suggest(["company", "xyzzy-thing"])
    assert (kept.basis, kept.name("en"), kept.changes) == ("canonical", "company", False)
    assert (unknown.basis, unknown.name("en"), unknown.entry) == ("none", "xyzzy-thing", None)


def test_advise_maps_and_writes_back() -> None:
    advice = advise(["PER", "B-LOC", "company"], "en")
    assert [s.raw for s in advice.flagged] == ["PER", "B-LOC"]
    assert advice.names == ["person", "location", "company"]
    assert advice.back == {"person": "PER", "location": "B-LOC"}


def test_dataset_labels_in_canonical_names() -> None:
    assert dataset_labels("conll2003") == ["person", "organization", "location", "miscellaneous entity"]
    assert dataset_labels("CoNLL-2003", "zh") == ["人名", "组织机构名", "地名", "其他实体"]
    assert dataset_labels("no-such-dataset") is None


def test_every_dataset_has_a_usable_label_set() -> None:
    taxonomy = load()
    for name, dataset in taxonomy.datasets.items():
        labels = dataset_labels(name)
        assert labels, name
        assert len(labels) == len(set(labels)), name
        if dataset.language == "zh":
            assert all(taxonomy.by_zh.get(label) for label in labels), name


# --- CLI --------------------------------------------------------------------------------------------------------


def test_cli_search_json() -> None:
    result = cli("taxonomy", "search", "company", "--json", "--limit", "3")
    assert result.exit_code == 0
    hits = json.loads(result.stdout)
    assert hits[0]["en"] == "company" and hits[0]["zh"] == "组织机构名->公司" and hits[0]["match"] == "name"
    assert len(hits) <= 3


def test_cli_search_table_in_chinese() -> None:
    result = cli("taxonomy", "search", "公司")
    assert result.exit_code == 0
    assert "组织机构名->公司" in result.stdout


def test_cli_search_nothing_found() -> None:
    result = cli("taxonomy", "search", "qqqqzzzz")
    assert result.exit_code == 1
    assert result.stderr == 'No entity type matches "qqqqzzzz".\n'


def test_cli_show() -> None:
    result = cli("taxonomy", "show", "company", "--json")
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    assert data["path"] == ["organization", "company"]
    assert data["zh"] == "组织机构名->公司"
    assert "CORP" in data["aliases"]
    shown = cli("taxonomy", "show", "人名")  # found by its Chinese name, shown as the same entry
    assert shown.exit_code == 0
    out = shown.stdout
    assert re.search(r"^\s*name\s+person\s+人名\s*$", out, re.MULTILINE)
    assert re.search(r"^\s*path\s+person\s*$", out, re.MULTILINE)
    assert "conll2003" in out[out.index("datasets") :]


def test_cli_show_unknown_suggests() -> None:
    result = cli("taxonomy", "show", "compnay")
    assert result.exit_code == 2
    assert result.stderr.startswith('Error: "compnay" is not a taxonomy entry.\nHint: Did you mean "company"')


def test_cli_list_dataset_prints_a_labels_line() -> None:
    result = cli("taxonomy", "list", "--dataset", "conll2003")
    assert result.exit_code == 0
    assert result.stdout == "person,organization,location,miscellaneous entity\n"
    data = json.loads(cli("taxonomy", "list", "--dataset", "conll2003", "--json").stdout)
    assert data["mapping"]["PER"] == ["person"]


def test_cli_list_under_and_tree() -> None:
    taxonomy = load()
    listed = cli("taxonomy", "list", "--under", "organization")
    assert listed.exit_code == 0
    names = listed.stdout.splitlines()
    assert names[0] == "organization" and "company" in names and "person" not in names
    # every name listed lies under organization, and every entry under it is listed
    under = {e.en for e in taxonomy.types.values() if "organization" in [p.en for p in taxonomy.path(e)]}
    assert set(names) == under
    tree = cli("taxonomy", "list", "--tree", "--under", "organization")
    assert tree.exit_code == 0
    lines = tree.stdout.splitlines()
    assert lines[0] == "organization" and "├── company" in lines
    assert {line.lstrip("│├└─ ") for line in lines} == under


def test_cli_suggest_line_is_usable_as_labels() -> None:
    result = cli("taxonomy", "suggest", "PER,B-ORG,LOC")
    assert result.exit_code == 0
    assert result.stdout == "person,organization,location\n"
    assert "PER" in result.stderr  # the reasons table
    zh = cli("taxonomy", "suggest", "PER,B-ORG,LOC", "--lang", "zh", "--json")
    assert json.loads(zh.stdout)["labels"] == "人名,组织机构名,地名"


def test_taxonomy_search_does_not_import_torch() -> None:
    code = (
        "import sys\nfrom typer.testing import CliRunner\nfrom b2ner_cli.cli.app import app\n"
        "r = CliRunner().invoke(app, ['taxonomy', 'search', 'company'])\n"
        "assert r.exit_code == 0, r.output\n"
        "print([m for m in ('torch', 'transformers', 'peft') if m in sys.modules])"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


# --- extract ----------------------------------------------------------------------------------------------------


def test_extract_labels_from_dataset_dry_run(tmp_path: Path) -> None:
    source = tmp_path / "in.txt"
    source.write_text("Ada met Bob .\n", encoding="utf-8")
    result = cli("extract", str(source), "--labels-from-dataset", "conll2003", "--dry-run")
    assert result.exit_code == 0, result.output
    assert "Label Set: person, organization, location, miscellaneous entity \n" in json.loads(result.stdout)["prompt"]


def test_extract_unknown_dataset(tmp_path: Path) -> None:
    source = tmp_path / "in.txt"
    source.write_text("x\n", encoding="utf-8")
    result = cli("extract", str(source), "--labels-from-dataset", "nope", "--dry-run")
    assert result.exit_code == 2
    assert result.stderr.startswith('Error: No dataset "nope" in the taxonomy.')


def test_extract_flags_raw_tags(tmp_path: Path) -> None:
    source = tmp_path / "in.txt"
    source.write_text("Ada met Bob .\n", encoding="utf-8")
    result = cli("extract", str(source), "-l", "PER,ORG", "--dry-run")
    assert result.exit_code == 0
    assert "Label Set: PER, ORG \n" in json.loads(result.stdout)["prompt"]  # unchanged without --map-labels
    assert result.stderr.startswith(
        "Note: some labels look like raw dataset tags (PER -> person, ORG -> organization). B2NER works better "
        'with descriptive names: --labels "person,organization", or add --map-labels'
    )


def test_extract_map_labels_writes_the_users_tags_back(tiny, tmp_path: Path) -> None:
    # The taught adapter answers "person: Ada; city: Bob; person: Bob" for this text with the canonical labels
    # person, organization, location (conftest.TAUGHT); --map-labels prompts with those for PER, ORG, LOC.
    source = tmp_path / "in.txt"
    source.write_text("Ada met Bob .\n", encoding="utf-8")
    result = cli(
        "extract",
        str(source),
        "-l",
        "PER,ORG,LOC",
        "--map-labels",
        "-m",
        str(tiny.base),
        "--adapter",
        str(tiny.adapter),
        "-q",
    )
    assert result.exit_code == 0, result.output
    assert scored(json.loads(result.stdout))["entities"] == [
        {"start": 0, "end": 3, "text": "Ada", "label": "PER"},
        {"start": 8, "end": 11, "text": "Bob", "label": "PER"},
    ]


def test_the_wheel_ships_the_taxonomy(tmp_path: Path) -> None:
    # Build from a clean copy of the sources, so no stale build/ folder can leak files into the wheel.
    root = Path(__file__).resolve().parents[1]
    source = tmp_path / "src"
    shutil.copytree(root, source, ignore=shutil.ignore_patterns(".git", ".venv", "build", "*.egg-info", "__pycache__"))
    build = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path)]
    subprocess.run([*build, str(source)], check=True, capture_output=True)
    [wheel] = tmp_path.glob("b2ner-*.whl")
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
        check=True, capture_output=True,
    )  # fmt: skip
    code = (
        "import b2ner_cli.taxonomy.data as d, taxonomy_data\n"
        "t = d.load()\n"
        "print(taxonomy_data.__file__, len(t.types), len(t.datasets), len(d.validate(t)))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
        env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"},
    )
    location, types, datasets, problems = done.stdout.split()
    assert location.startswith(str(target))
    assert int(types) == len(load().types) and int(datasets) == len(load().datasets) and problems == "0"


def test_tables_never_cut_the_names_users_copy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "80")  # a narrow terminal, or a pipe
    taxonomy = load()
    result = cli("taxonomy", "search", "公司", "--limit", "10")
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    hits = search("公司", limit=10, taxonomy=taxonomy)
    for hit in hits:  # each name whole on one line, in both languages
        assert any(hit.entry.zh in line and hit.entry.en in line for line in lines), hit.entry.zh
    assert "…" not in result.stdout
