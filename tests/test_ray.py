"""``extract --ray``: the input as a Ray Dataset of windows, an actor pool of replicas, the output in input order.

Ray starts once for the module (``ray.init(num_cpus=2)``, a few seconds); the CLI runs in this process and joins it.
The tests that need Ray are skipped where it is not installed (``pip install 'b2ner[ray]'``).
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import EN_LABELS, TAUGHT
from helpers import cli, read_jsonl

from b2ner_cli.io.readers import Document
from b2ner_cli.prompts import Example, LabelSet
from b2ner_cli.records import Entity, Record, Unmatched
from b2ner_cli.runs.ray_pool import decode_documents, encode_documents

TESTS = Path(__file__).resolve().parent
LINES = ["Ada lives in Paris .", "Nothing here .", "Acme hired Ada .", "Paris and Paris .", "Ada .", "Bob .",
         "Paris ."]  # fmt: skip


@pytest.fixture(scope="module")
def ray_local() -> Iterator[None]:
    """One local Ray for the module. Its workers inherit this environment: b2ner and the tests' fake recognizers
    (``fakes``) importable, offline."""
    ray = pytest.importorskip("ray")
    pytest.importorskip("ray.data")
    with pytest.MonkeyPatch.context() as patch:
        path = [str(TESTS), str(TESTS.parent), os.environ.get("PYTHONPATH", "")]
        patch.setenv("PYTHONPATH", os.pathsep.join(p for p in path if p))
        patch.setenv("OMP_NUM_THREADS", "1")
        patch.delenv("RAY_ADDRESS", raising=False)
        ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False)
    logging.getLogger("ray.data").setLevel(logging.ERROR)
    yield
    ray.shutdown()


def _source(folder: Path, lines: list[str]) -> Path:
    source = folder / "in.txt"
    source.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return source


def _fake(source: Path, *extra: str) -> list[str]:
    return ["extract", str(source), "-m", "fake", "-l", "person,location", "--window", "2", "-q", *extra]


def test_ray_keeps_input_order_on_stdout(ray_local: None, fake_model: str, tmp_path: Path) -> None:
    source = _source(tmp_path, LINES)
    single = cli(*_fake(source))
    result = cli(*_fake(source, "--ray", "--data-parallel", "2"))
    assert result.exit_code == 0, result.output
    assert result.stdout == single.stdout
    records = [json.loads(line) for line in result.stdout.splitlines()]
    # 7 documents in windows of 2: [1,2] [3,4] [5,6] [7], spread over 2 actors, back in input order
    assert [r["id"] for r in records] == [f"{source}:{i}" for i in range(1, 8)]
    # "Ada lives in Paris .": Ada 0-3 (person, the fake's 0.9), Paris 13-18 (location, 0.75)
    assert records[0]["entities"] == [
        {"start": 0, "end": 3, "text": "Ada", "label": "person", "score": 0.9, "source": "fake"},
        {"start": 13, "end": 18, "text": "Paris", "label": "location", "score": 0.75, "source": "fake"},
    ]
    # "Paris and Paris .": both, 0-5 and 10-15; "Acme hired Ada .": Acme is not asked for, Ada at 11-14
    assert [(e["start"], e["end"]) for e in records[3]["entities"]] == [(0, 5), (10, 15)]
    assert [(e["start"], e["end"], e["label"]) for e in records[2]["entities"]] == [(11, 14, "person")]


def test_ray_resumes_and_writes_the_ray_block(ray_local: None, fake_model: str, tmp_path: Path) -> None:
    source = _source(tmp_path, LINES)
    whole = tmp_path / "whole.jsonl"
    assert cli(*_fake(source, "-o", str(whole))).exit_code == 0
    expected = read_jsonl(whole)
    out = tmp_path / "out.jsonl"
    lines = whole.read_text(encoding="utf-8").splitlines(keepends=True)
    out.write_text("".join(lines[:3]) + lines[3][:10], encoding="utf-8")  # an interrupted run: 3 records, a cut line
    result = cli(*_fake(source, "-o", str(out), "--ray", "--data-parallel", "2", "--resume"))
    assert result.exit_code == 0, result.output
    assert read_jsonl(out) == expected
    meta = json.loads(Path(f"{out}.meta.json").read_text(encoding="utf-8"))
    assert meta["status"] == "complete" and meta["records_written"] == 7 and meta["resumed_records"] == 3
    assert meta["stats"]["documents"] == 4  # documents 4-7: windows [4,5] [6,7]
    assert meta["data_parallel"] == 2 and meta["recognizer"] == "fake"
    ray_block = meta["ray"]
    assert {k: ray_block[k] for k in ("address", "actors", "gpus_per_actor")} == {
        "address": None, "actors": 2, "gpus_per_actor": 0
    }  # fmt: skip
    assert sum(ray_block["records_per_actor"]) == 4 and 1 <= len(ray_block["records_per_actor"]) <= 2


def test_a_lost_worker_is_retried(ray_local: None, tmp_path: Path) -> None:
    from fakes import CrashOnceRecognizer

    from b2ner_cli.runs.recognizer import register_recognizer, unregister_recognizer

    marker = str(tmp_path / "crashed")
    register_recognizer("crash-once", lambda spec, options: CrashOnceRecognizer(marker),
                        matches=lambda spec: spec.model == "crash-once")  # fmt: skip
    try:
        source = _source(tmp_path, [*LINES[:4], "CRASH Ada .", *LINES[4:]])
        out = tmp_path / "out.jsonl"
        result = cli("extract", str(source), "-m", "crash-once", "-l", "person", "--window", "2", "-q", "-o",
                     str(out), "--ray", "--data-parallel", "2")  # fmt: skip
        assert result.exit_code == 0, result.output
    finally:
        unregister_recognizer("crash-once")
    assert Path(marker).exists()  # an actor died on window 2 ([5, 6]); Ray restarted it and sent the window again
    records = read_jsonl(out)
    assert [r["id"] for r in records] == [f"{source}:{i}" for i in range(1, 9)]
    assert records[4]["entities"] == [{"start": 6, "end": 9, "text": "Ada", "label": "person", "score": 0.9,
                                       "source": "fake"}]  # fmt: skip
    meta = json.loads(Path(f"{out}.meta.json").read_text(encoding="utf-8"))
    assert meta["stats"]["documents"] == 8 and sum(meta["ray"]["records_per_actor"]) == 8


def test_an_actors_load_error_stops_the_run_cleanly(ray_local: None, tmp_path: Path) -> None:
    from b2ner_cli.errors import ModelError
    from b2ner_cli.runs.recognizer import register_recognizer, unregister_recognizer

    def broken(spec: object, options: object) -> None:
        raise ModelError("Model `broken` cannot be loaded here.", "Check the model on every node.")

    register_recognizer("broken", broken, matches=lambda spec: spec.model == "broken")  # type: ignore[arg-type]
    try:
        source = _source(tmp_path, LINES[:3])
        out = tmp_path / "out.jsonl"
        result = cli("extract", str(source), "-m", "broken", "-l", "person", "-q", "-o", str(out), "--ray")
    finally:
        unregister_recognizer("broken")
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [f"{out} holds the 0 records completed before the run stopped.",
                                          "Error: Model `broken` cannot be loaded here.",
                                          "Hint: Check the model on every node."]  # fmt: skip
    assert out.read_text(encoding="utf-8") == ""
    assert json.loads(Path(f"{out}.meta.json").read_text(encoding="utf-8"))["status"] == "failed"


def test_ray_on_the_tiny_model_matches_one_process(ray_local: None, tiny, tmp_path: Path) -> None:
    texts = [text for text, labels, _ in TAUGHT if tuple(labels) == EN_LABELS]  # 4 English texts, taught answers
    source = _source(tmp_path, texts + texts[:1])
    common = ["extract", str(source), "-l", ",".join(EN_LABELS), "-m", str(tiny.base), "--adapter",
              str(tiny.adapter), "--device", "cpu", "--keep-raw", "-b", "1", "--window", "2", "--max-new-tokens",
              "16", "-q"]  # fmt: skip
    single = cli(*common)
    assert single.exit_code == 0, single.output
    out = tmp_path / "out.jsonl"
    result = cli(*common, "-o", str(out), "--ray", "--data-parallel", "2")
    assert result.exit_code == 0, result.output
    assert out.read_text(encoding="utf-8") == single.stdout
    first = json.loads(single.stdout.splitlines()[0])
    assert first["raw"] == " person: Barack Obama; organization: Microsoft; location: Seattle"  # the taught answer
    meta = json.loads(Path(f"{out}.meta.json").read_text(encoding="utf-8"))
    assert meta["device"] == "cpu" and meta["ray"]["actors"] == 2 and meta["stats"]["documents"] == 5


# -- without Ray ---------------------------------------------------------------------------------------------------


def test_documents_and_records_cross_as_json() -> None:
    labels = LabelSet(("person", "city"), ("a human", "a town"))
    window = [Document("1", "Ada 北京", labels, "in.jsonl:1", (Example("Bob .", "person: Bob"),)),
              Document("2", "x", None, "in.txt:2", None)]  # fmt: skip
    assert decode_documents(encode_documents(window)) == window
    record = Record("1", "Ada .", [Entity(0, 3, "Ada", "person", score=0.1234567, source="fake")],
                    [Unmatched("Bob", "person")], " person: Ada; person: Bob")  # fmt: skip
    back = Record.from_dict(record.to_dict(keep_raw=True))
    assert back.to_dict(keep_raw=True) == record.to_dict(keep_raw=True)
    assert back.entities[0].score == 0.123457  # rounded once, as the JSONL writes it


def test_ray_missing_is_a_clean_error(fake_model: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    source = _source(tmp_path, LINES[:1])
    out = tmp_path / "out.jsonl"
    result = cli(*_fake(source, "-o", str(out), "--ray-address", "auto"))
    assert result.exit_code == 2
    lines = result.stderr.splitlines()
    assert lines[0].startswith("Error: --ray needs Ray with Ray Data, which is not installed")
    assert lines[1] == "Hint: Install it with: pip install 'b2ner[ray]'"
    assert not out.exists() and not Path(f"{out}.meta.json").exists()
