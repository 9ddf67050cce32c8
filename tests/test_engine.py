"""The generation engine on a tiny real model: BOS handling, batching equivalence, streaming safety."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import TAUGHT
from helpers import cli, interruptible

from b2ner_cli.api import Extractor
from b2ner_cli.pipeline import RunStats

LABELS = ["person", "organization", "location"]
OTHER_TEXTS = [
    "Angela Merkel met Emmanuel Macron in Berlin .",
    "The river flows .",
    "Seattle is rainy in winter and Microsoft is based near it , said Barack Obama in a long speech .",
    "Ada",
    "李明昨天去了北京，参观了故宫博物院。",
    "Marie Curie won the Nobel Prize in Physics in 1903 together with Pierre Curie .",
    "x y z",
    "Paris Paris Paris .",
]


@pytest.fixture(scope="module")
def extractor(tiny) -> Extractor:
    return Extractor.load(str(tiny.base), str(tiny.adapter), device="cpu", max_new_tokens=20)


def test_exactly_one_bos(extractor: Extractor) -> None:
    generator = extractor.generator
    tokenizer = generator.tokenizer  # type: ignore[attr-defined]
    instruction = "Given the label set of entities"
    ids = generator.encode(instruction)
    assert ids == [1, *tokenizer.encode(instruction, add_special_tokens=False)]
    assert ids.count(1) == 1


def test_batched_equals_one_by_one(extractor: Extractor) -> None:
    texts = [text for text, labels, _ in TAUGHT if tuple(labels) == tuple(LABELS)] + OTHER_TEXTS * 3
    lengths = {len(extractor.generator.encode(t)) for t in texts}
    assert len(lengths) > 3  # prompts of different lengths, so batches really are left-padded

    single = extractor.extract(texts, LABELS, batch_size=1)
    batched_stats = RunStats()
    batched = extractor.extract(texts, LABELS, batch_size=16, batch_tokens=100_000, window=7, stats=batched_stats)
    assert [r.to_dict(keep_raw=True) for r in batched] == [r.to_dict(keep_raw=True) for r in single]
    # and the taught answers came through, so the comparison is not between two empty outputs
    assert single[0].raw == " person: Barack Obama; organization: Microsoft; location: Seattle"
    assert [r.id for r in batched] == [str(i) for i in range(len(texts))]
    assert batched_stats.documents == len(texts)


HEAVY = ("torch", "transformers", "peft", "bitsandbytes", "accelerate")


def test_help_and_dry_run_do_not_import_torch(tmp_path: Path) -> None:
    source = tmp_path / "in.txt"
    source.write_text("Barack Obama visited Paris .\n", encoding="utf-8")
    code = f"""
import json, sys
from typer.testing import CliRunner
from b2ner_cli.cli.app import app
runner = CliRunner()
assert runner.invoke(app, ["--help"]).exit_code == 0
assert runner.invoke(app, ["extract", "--help"]).exit_code == 0
result = runner.invoke(app, ["extract", {str(source)!r}, "-l", "person,location", "--dry-run"])
heavy = [m for m in {HEAVY!r} if m in sys.modules]
print(json.dumps({{"heavy": heavy, "out": result.stdout, "code": result.exit_code}}))
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    report = json.loads(done.stdout.splitlines()[-1])
    assert report["heavy"] == []
    assert report["code"] == 0
    assert json.loads(report["out"]) == {
        "id": f"{source}:1",
        "language": "en",
        "prompt": "Given the label set of entities, please recognize all the entities in the text. The answer format "
        'should be "entity label: entity; entity label: entity". \nLabel Set: person, location \n\n'
        "Text: Barack Obama visited Paris . \nAnswer:",
    }


def test_ctrl_c_leaves_a_valid_output_file(tiny, tmp_path: Path) -> None:
    text, _, _ = TAUGHT[0]
    source = tmp_path / "in.txt"
    source.write_text((text + "\n") * 400, encoding="utf-8")
    out = tmp_path / "out.jsonl"

    def part() -> Path | None:  # the writer's temporary file, .out.jsonl.<pid>-<random>.tmp
        return next(iter(tmp_path.glob(".out.jsonl.*.tmp")), None)

    def lines_in(path: Path) -> int:
        try:
            return path.read_text(encoding="utf-8").count("\n")
        except FileNotFoundError:  # renamed into place meanwhile
            return 0

    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    command = [
        sys.executable,
        "-m",
        "b2ner_cli",
        "extract",
        str(source),
        "-l",
        ",".join(LABELS),
        "-m",
        str(tiny.base),
        "--adapter",
        str(tiny.adapter),
        "-b",
        "1",
        "-q",
        "-o",
        str(out),
    ]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               preexec_fn=interruptible)  # fmt: skip
    deadline = time.time() + 120
    while time.time() < deadline and process.poll() is None:
        temporary = part()
        if temporary is not None and lines_in(temporary) >= 3:
            break
        time.sleep(0.05)
    assert process.poll() is None, process.communicate()
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert part() is None
    lines = out.read_text(encoding="utf-8").splitlines()
    assert 3 <= len(lines) < 400
    records = [json.loads(line) for line in lines]  # every line whole and valid
    assert [r["id"] for r in records] == [f"{source}:{i}" for i in range(1, len(records) + 1)]
    assert all(r["entities"][0]["text"] == "Barack Obama" for r in records)
    meta = json.loads(Path(f"{out}.meta.json").read_text(encoding="utf-8"))
    assert meta["status"] == "interrupted" and meta["records_written"] == len(records)


def test_prefix_cached_path_equals_transformers_generate(tiny) -> None:
    from b2ner_cli.engine.hf import HFGenerator

    cached = Extractor.load(str(tiny.base), str(tiny.adapter), device="cpu", max_new_tokens=20)
    assert isinstance(cached.generator, HFGenerator) and cached.generator.prefix_cache
    reference = Extractor(
        HFGenerator(cached.generator.model, cached.generator.tokenizer, max_new_tokens=20, prefix_cache=False)
    )
    texts = [text for text, labels, _ in TAUGHT if tuple(labels) == tuple(LABELS)] + OTHER_TEXTS * 2
    zh = ["李明昨天去了北京。", "阿里巴巴集团在杭州发布了新的财报。"]
    for batch_size in (1, 5, 32):
        ours = cached.extract(texts, LABELS, batch_size=batch_size) + cached.extract(zh, ["人名", "地名"])
        theirs = reference.extract(texts, LABELS, batch_size=batch_size) + reference.extract(zh, ["人名", "地名"])
        assert [r.to_dict(keep_raw=True) for r in ours] == [r.to_dict(keep_raw=True) for r in theirs]
    # the instruction + label set prefix is computed once and then reused by later batches
    assert cached.generator.prefix_hits > 20
    assert all(len(prefix) >= 8 for prefix in cached.generator._prefixes)


def test_common_prefix_caps_and_runaways() -> None:
    from b2ner_cli.engine.hf import common_prefix_length, is_runaway, new_token_cap

    assert common_prefix_length([[1, 2, 3, 4], [1, 2, 9], [1, 2, 3]]) == 2
    assert common_prefix_length([[5, 6], [7]]) == 0
    assert new_token_cap(10, 512) == 72  # 32 + 4 * 10
    assert new_token_cap(5, 512) == 64  # never below 64
    assert new_token_cap(200, 512) == 512  # never above --max-new-tokens
    loop = [7, 8, 9, 10, 11, 12, 13, 14]
    assert is_runaway([1, 2, *loop, *loop, *loop])  # the same 8 tokens three times in a row
    assert not is_runaway([1, 2, *loop, *loop])
    assert not is_runaway([*loop, *loop, *loop[:-1], 99])


def test_data_parallel_replicas_keep_input_order(tiny, tmp_path: Path) -> None:
    texts = [text for text, labels, _ in TAUGHT if tuple(labels) == tuple(LABELS)] + OTHER_TEXTS * 3
    source = tmp_path / "in.txt"
    source.write_text("".join(t + "\n" for t in texts), encoding="utf-8")
    common = ["extract", str(source), "-l", ",".join(LABELS), "-m", str(tiny.base), "--adapter", str(tiny.adapter),
              "--keep-raw", "-b", "2", "--max-new-tokens", "16", "-q"]  # fmt: skip
    single = cli(*common)
    out = tmp_path / "out.jsonl"
    # batches of 2, windows of 8 documents: 28 documents go to 2 replicas as 4 windows, merged back in order
    parallel = cli(*common, "--data-parallel", "2", "-o", str(out))
    assert parallel.exit_code == 0, parallel.output
    assert out.read_text(encoding="utf-8") == single.stdout
    meta = json.loads(Path(f"{out}.meta.json").read_text(encoding="utf-8"))
    assert meta["data_parallel"] == 2 and meta["stats"]["documents"] == len(texts) and meta["device"] == "cpu"


def test_data_parallel_reports_a_replicas_error(tiny, tmp_path: Path) -> None:
    source = tmp_path / "in.txt"
    source.write_text("hello\n", encoding="utf-8")
    result = cli("extract", str(source), "-l", "person", "-m", str(tiny.base), "--adapter",
                 str(tiny.other_shape_adapter), "--data-parallel", "2", "-q")  # fmt: skip
    assert result.exit_code == 1
    assert result.stderr.startswith(
        f"Error: Adapter `{tiny.other_shape_adapter}` (its base model unknown) does not fit"
    )
