"""The run layer and the recognizer seam, driven with a fake recognizer registered as a plugin would register one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fakes import FakeRecognizer
from helpers import cli, read_jsonl

from b2ner_cli import Extractor
from b2ner_cli.errors import UsageError
from b2ner_cli.io.readers import Document
from b2ner_cli.models.spec import ModelSpec
from b2ner_cli.prompts import LabelSet
from b2ner_cli.records import Record
from b2ner_cli.runs.recognizer import recognizer_kind
from b2ner_cli.runs.run import OutputSpec, Progress, RunSpec, Stopped, check, execute
from b2ner_cli.runs.settings import ExtractSettings, Task

TEXTS = ["Ada lives in Paris .", "Nothing here .", "Acme hired Ada .", "Paris and Paris .", "Ada ."]


def docs() -> list[Document]:
    return [Document(str(i), t) for i, t in enumerate(TEXTS)]


class ListSink:
    def __init__(self, fail_after: int | None = None) -> None:
        self.records: list[Record] = []
        self.count = 0
        self.path = None
        self.closed: bool | None = None
        self.fail_after = fail_after

    def write(self, record: Record) -> None:
        if self.fail_after is not None and self.count == self.fail_after:
            raise KeyboardInterrupt
        self.records.append(record)
        self.count += 1

    def close(self, complete: bool) -> None:
        self.closed = complete


def spec(**changes: object) -> RunSpec:
    task = Task.of(LabelSet(("person", "location")), settings=ExtractSettings(window=2))
    return RunSpec(model=ModelSpec("fake"), task=task, **changes)  # type: ignore[arg-type]


def test_windows_order_labels_and_progress(fake_model: str) -> None:
    recognizer, sink, events = FakeRecognizer(), ListSink(), []
    result = execute(spec(label_map=(("person", "PER"),)), documents=docs(), sink=sink, recognizer=recognizer,
                     events=events.append)  # fmt: skip
    assert recognizer.windows == [2, 2, 1]  # window=2 over 5 documents
    assert [r.id for r in sink.records] == ["0", "1", "2", "3", "4"] and sink.closed is True
    # Ada 0-3 (person -> PER through the label map), Paris 13-18; "Acme" is not asked for.
    first = sink.records[0]
    assert [(e.start, e.end, e.label, e.score, e.source) for e in first.entities] == [
        (0, 3, "PER", 0.9, "fake"),
        (13, 18, "location", 0.75, "fake"),
    ]
    assert [(e.start, e.end) for e in sink.records[3].entities] == [(0, 5), (10, 15)]
    assert result.status == "complete" and result.records == 5 and result.stats.documents == 5
    progress = [e for e in events if isinstance(e, Progress)]
    assert progress and progress[-1].stats.documents == 5
    assert result.manifest["recognizer"] == "fake" and result.manifest["model_spec"]["model"] == "fake"


def test_interrupted_run_is_recorded(fake_model: str, tmp_path: Path) -> None:
    meta = tmp_path / "run.meta.json"
    sink, events = ListSink(fail_after=3), []
    with pytest.raises(KeyboardInterrupt):
        execute(spec(output=OutputSpec(meta=meta)), documents=docs(), sink=sink, events=events.append)
    manifest = json.loads(meta.read_text(encoding="utf-8"))
    assert manifest["status"] == "interrupted" and manifest["records_written"] == 3
    assert sink.closed is False
    assert not [e for e in events if isinstance(e, Stopped)]  # nothing on disk to point at (no path)


def test_cli_extract_through_a_registered_recognizer(fake_model: str, tmp_path: Path) -> None:
    source = tmp_path / "in.txt"
    source.write_text("Ada lives in Paris .\n", encoding="utf-8")
    out = tmp_path / "out.jsonl"
    result = cli("extract", str(source), "-m", "fake", "-l", "person,location", "-o", str(out))
    assert result.exit_code == 0, result.output
    assert read_jsonl(out) == [{
        "id": f"{source}:1", "text": "Ada lives in Paris .",
        "entities": [{"start": 0, "end": 3, "text": "Ada", "label": "person", "score": 0.9, "source": "fake"},
                     {"start": 13, "end": 18, "text": "Paris", "label": "location", "score": 0.75, "source": "fake"}],
        "unmatched": [],
    }]  # fmt: skip
    meta = json.loads(Path(f"{out}.meta.json").read_text(encoding="utf-8"))
    assert meta["recognizer"] == "fake" and meta["status"] == "complete" and meta["language"] == "auto"
    assert result.stderr.splitlines()[-1] == f"2 entities in 1 document (1 prompt, {_rate(result.stderr)}) -> {out}"


def _rate(stderr: str) -> str:
    return stderr.splitlines()[-1].split("(1 prompt, ")[1].split(")")[0]


def test_cli_table_rendering(fake_model: str, tmp_path: Path) -> None:
    source = tmp_path / "in.txt"
    source.write_text("Ada lives in Paris .\nNothing here .\n", encoding="utf-8")
    result = cli("extract", str(source), "-m", "fake", "-l", "person,location", "--format", "table", "-q")
    assert result.exit_code == 0, result.output
    assert result.stdout == (
        f"{source}:1\nAda lives in Paris .\n  [0:3] Ada  person\n  [13:18] Paris  location\n\n"
        f"{source}:2\nNothing here .\n  no entities\n\n"
    )


def test_markup_in_user_strings_is_printed_verbatim(fake_model: str, tmp_path: Path) -> None:
    source = tmp_path / "in.txt"
    source.write_text("[bold]Ada[/] in Paris\n", encoding="utf-8")
    result = cli("extract", str(source), "-m", "fake", "-l", "person", "--format", "table", "-q")
    assert result.exit_code == 0, result.output
    assert "[bold]Ada[/] in Paris\n  [6:9] Ada  person\n" in result.stdout


def test_python_api_with_any_recognizer() -> None:
    ner = Extractor(FakeRecognizer())
    [record] = ner.extract(["Acme hired Ada ."], ["organization"])
    assert [(e.start, e.end, e.label) for e in record.entities] == [(0, 4, "organization")]


def test_kinds_and_the_no_labels_check(fake_model: str, tmp_path: Path) -> None:
    assert recognizer_kind(ModelSpec("fake")) == "fake"
    assert recognizer_kind(ModelSpec("./some-llm")) == "llm"
    with pytest.raises(UsageError, match="Unknown model kind `nope`"):
        recognizer_kind(ModelSpec(kind="nope"))
    source = tmp_path / "in.txt"
    source.write_text("x\n", encoding="utf-8")
    no_labels = RunSpec(model=ModelSpec("./some-llm"), task=Task(), inputs=(str(source),))
    with pytest.raises(UsageError, match="No labels given"):
        check(no_labels)
    check(RunSpec(model=ModelSpec("fake"), task=Task(), inputs=(str(source),)))  # its labels may come from the model
