"""``extract --resume``: an interrupted run continues from the records it wrote, without duplicates or gaps."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import cli, read_jsonl

TEXTS = [f"Ada met Bob in Paris, day {i} ." for i in range(10)]


@pytest.fixture
def source(tmp_path: Path) -> Path:
    path = tmp_path / "in.txt"
    path.write_text("".join(t + "\n" for t in TEXTS), encoding="utf-8")
    return path


def run(source: Path, out: Path, *extra: str) -> object:
    return cli("extract", str(source), "-m", "fake", "-l", "person,location", "-o", str(out), "-q", *extra)


def test_resume_continues_without_duplicates_or_gaps(fake_model: str, source: Path, tmp_path: Path) -> None:
    whole = tmp_path / "whole.jsonl"
    assert run(source, whole).exit_code == 0  # type: ignore[attr-defined]
    expected = read_jsonl(whole)
    out = tmp_path / "out.jsonl"
    # an interrupted run's output: its first 4 records, the 5th cut mid-line by a crash
    lines = whole.read_text(encoding="utf-8").splitlines(keepends=True)
    out.write_text("".join(lines[:4]) + lines[4][:20], encoding="utf-8")
    result = run(source, out, "--resume")
    assert result.exit_code == 0, result.output  # type: ignore[attr-defined]
    assert read_jsonl(out) == expected
    meta = json.loads(Path(f"{out}.meta.json").read_text(encoding="utf-8"))
    assert meta["resumed_records"] == 4 and meta["records_written"] == 10 and meta["stats"]["documents"] == 6


def test_resume_refuses_another_input(fake_model: str, source: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    out.write_text(json.dumps({"id": f"{source}:1", "text": "something else", "entities": []}) + "\n", "utf-8")
    result = run(source, out, "--resume")
    assert result.exit_code == 2
    assert result.stderr.splitlines()[0] == (  # type: ignore[attr-defined]
        f"Error: {out} does not continue this input: its record 1 ('{source}:1') is not the input's document 1 "
        "(another text)."
    )


def test_resume_needs_an_output_to_continue(fake_model: str, source: Path, tmp_path: Path) -> None:
    result = run(source, tmp_path / "none.jsonl", "--resume")
    assert result.exit_code == 2
    assert result.stderr.startswith(f"Error: Nothing to resume: {tmp_path / 'none.jsonl'} does not exist.")  # type: ignore[attr-defined]


def test_resume_prefers_the_newer_partial_file(fake_model: str, source: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    assert run(source, out).exit_code == 0  # type: ignore[attr-defined]
    complete = out.read_text(encoding="utf-8")
    # a second run over the complete output was interrupted after 3 records: they went to out.jsonl.partial
    partial = tmp_path / "out.jsonl.partial"
    partial.write_text("".join(complete.splitlines(keepends=True)[:3]), encoding="utf-8")
    result = run(source, out, "--resume")
    assert result.exit_code == 0, result.output  # type: ignore[attr-defined]
    meta = json.loads(Path(f"{out}.meta.json").read_text(encoding="utf-8"))
    assert meta["resumed_from"] == str(partial) and meta["resumed_records"] == 3
    assert out.read_text(encoding="utf-8") == complete


def test_resume_in_one_process_points_to_the_parts_of_several(fake_model: str, source: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    part = tmp_path / ".out.jsonl.rank-0-of-3.jsonl"
    part.write_text("", encoding="utf-8")  # an interrupted 3-process run
    result = run(source, out, "--resume")
    assert result.exit_code == 2  # type: ignore[attr-defined]
    assert result.stderr.splitlines() == [  # type: ignore[attr-defined]
        f"Error: Nothing to resume in one process: {out} does not exist, but {part} does.",
        "Hint: Resume with --data-parallel 3 (or 3 torchrun processes).",
    ]
