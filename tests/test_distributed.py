"""Extraction under ``torchrun``: ranks share the windows, rank 0 merges in order; ``--resume`` after a rank dies."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import torch.distributed as dist
from conftest import EN_LABELS, TAUGHT
from helpers import cli

from b2ner_cli.io.readers import Document
from b2ner_cli.runs.distributed import Launch, detect_launch, merge, mine, part_path, share

pytestmark = pytest.mark.skipif(
    not (dist.is_available() and dist.is_gloo_available()), reason="torch.distributed with gloo is unavailable"
)

TEXTS = [text for text, labels, _ in TAUGHT if tuple(labels) == EN_LABELS]  # 4 English texts


def _source(folder: Path, documents: int) -> Path:
    source = folder / "in.txt"
    source.write_text("".join(TEXTS[i % len(TEXTS)] + "\n" for i in range(documents)), encoding="utf-8")
    return source


def _args(tiny, source: Path, *extra: str) -> list[str]:
    return ["extract", str(source), "-l", ",".join(EN_LABELS), "-m", str(tiny.base), "--adapter", str(tiny.adapter),
            "--device", "cpu", "--keep-raw", "-b", "1", "--window", "2", "--max-new-tokens", "16", "-q",
            *extra]  # fmt: skip


def _torchrun(args: list[str]) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
               "-m", "b2ner_cli", *args]  # fmt: skip
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}  # PYTHONPATH passes through
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _single(tiny, source: Path, out: Path) -> str:
    result = cli(*_args(tiny, source, "-o", str(out)))
    assert result.exit_code == 0, result.output
    return out.read_text(encoding="utf-8")


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".rank-" in p.name or p.name.endswith(".tmp"))


def test_torchrun_ranks_merge_in_input_order(tiny, tmp_path: Path) -> None:
    source = _source(tmp_path, 11)
    expected = _single(tiny, source, tmp_path / "single.jsonl")
    out = tmp_path / "out.jsonl"
    process = _torchrun(_args(tiny, source, "-o", str(out)))
    stdout, stderr = process.communicate(timeout=600)
    assert process.returncode == 0, stderr
    assert stdout == ""
    assert out.read_text(encoding="utf-8") == expected
    meta = json.loads(Path(f"{out}.meta.json").read_text(encoding="utf-8"))
    # windows of 2: 0:[1,2] 1:[3,4] 2:[5,6] 3:[7,8] 4:[9,10] 5:[11]; rank 0 has windows 0, 2, 4 (6 documents),
    # rank 1 has windows 1, 3, 5 (2 + 2 + 1 = 5 documents)
    assert meta["distributed"] == {"world_size": 2, "records_per_rank": [6, 5]}
    assert meta["status"] == "complete" and meta["records_written"] == 11
    assert meta["stats"]["documents"] == 11 and meta["stats"]["chunks"] == 11
    assert _leftovers(tmp_path) == []


def _rank_pid(launcher: int, rank: str) -> int | None:
    for child in psutil.Process(launcher).children(recursive=True):
        try:
            if child.environ().get("RANK") == rank and "b2ner_cli" in " ".join(child.cmdline()):
                return child.pid
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return None


def test_a_killed_rank_resumes_without_duplicates_or_gaps(tiny, tmp_path: Path) -> None:
    source = _source(tmp_path, 40)
    expected = _single(tiny, source, tmp_path / "single.jsonl")
    out = tmp_path / "out.jsonl"
    part = part_path(out, 1, 2)
    process = _torchrun(_args(tiny, source, "-o", str(out)))
    deadline = time.time() + 300
    while (
        time.time() < deadline and process.poll() is None and (not part.exists() or part.read_bytes().count(b"\n") < 3)
    ):
        time.sleep(0.05)
    pid = _rank_pid(process.pid, "1")
    assert pid is not None and process.poll() is None, process.communicate()
    os.kill(pid, signal.SIGKILL)  # no cleanup code runs in that rank; torchrun then stops rank 0
    _, stderr = process.communicate(timeout=120)
    assert process.returncode != 0
    assert not out.exists()
    written = [json.loads(line) for line in part.read_text(encoding="utf-8").splitlines(keepends=True)
               if line.endswith("\n")]  # fmt: skip
    assert 3 <= len(written) < 20 and {w["window"] for w in written} <= {1, 3, 5, 7, 9, 11, 13, 15, 17, 19}

    process = _torchrun(_args(tiny, source, "-o", str(out), "--resume"))
    _, stderr = process.communicate(timeout=600)
    assert process.returncode == 0, stderr
    assert out.read_text(encoding="utf-8") == expected  # every document once, in input order
    meta = json.loads(Path(f"{out}.meta.json").read_text(encoding="utf-8"))
    assert meta["distributed"] == {"world_size": 2, "records_per_rank": [20, 20]}
    # kept: whole windows only (2 records each); the documents extracted again are the rest
    assert meta["resumed_records"] % 2 == 0 and meta["resumed_records"] >= 2
    assert meta["stats"]["documents"] == 40 - meta["resumed_records"]
    assert _leftovers(tmp_path) == []


def test_a_launch_needs_an_output_file(tiny, tmp_path: Path) -> None:
    source = _source(tmp_path, 2)
    process = _torchrun(_args(tiny, source))
    stdout, stderr = process.communicate(timeout=300)
    assert process.returncode != 0 and stdout == ""
    assert "Error: A distributed run (rank 0 of 2) writes to a file: -o is required." in stderr
    assert "Error: A distributed run (rank 1 of 2) writes to a file: -o is required." in stderr


def test_eval_with_a_model_under_torchrun(tiny, tmp_path: Path) -> None:
    from helpers import write_jsonl

    text, labels, _ = TAUGHT[0]  # taught: person Barack Obama, organization Microsoft, location Seattle
    entities = [{"start": 0, "end": 12, "label": "person"}, {"start": 21, "end": 30, "label": "organization"},
                {"start": 34, "end": 41, "label": "location"}]  # fmt: skip
    gold = write_jsonl(tmp_path / "gold.jsonl", [
        {"id": f"g{i}", "text": text, "labels": list(labels), "dataset": "taught", "entities": entities}
        for i in range(3)
    ])  # fmt: skip
    out = tmp_path / "pred.jsonl"
    process = _torchrun(["eval", str(gold), "-m", str(tiny.base), "--adapter", str(tiny.adapter), "--window", "1",
                         "--predictions-out", str(out), "--json", "-q"])  # fmt: skip
    stdout, stderr = process.communicate(timeout=600)
    assert process.returncode == 0, stderr
    [d] = json.loads(stdout)["datasets"]  # one report: rank 1 prints nothing
    assert d["b2ner"]["f1"] == 1.0 and d["strict"]["f1"] == 1.0
    assert [json.loads(line)["id"] for line in out.read_text(encoding="utf-8").splitlines()] == ["g0", "g1", "g2"]
    manifest = json.loads(Path(f"{out}.meta.json").read_text(encoding="utf-8"))
    # windows of 1: rank 0 has g0 and g2, rank 1 has g1
    assert manifest["distributed"] == {"world_size": 2, "records_per_rank": [2, 1]}
    assert manifest["records_written"] == 3 and manifest["stats"]["documents"] == 3


def test_launch_detection_and_shares() -> None:
    env = {"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1", "MASTER_ADDR": "node0", "MASTER_PORT": "29500"}
    assert detect_launch(env) == Launch(3, 4, 1)
    assert detect_launch({**env, "WORLD_SIZE": "1", "RANK": "0"}) is None  # a group of one is a plain run
    assert detect_launch({"RANK": "0", "WORLD_SIZE": "2"}) is None  # no rendezvous address: not a launch
    # 11 documents in windows of 2 (6 windows): rank 0 of 2 takes windows 0, 2, 4; rank 1 takes 1, 3, 5
    documents = [Document(str(i), f"text {i}") for i in range(11)]
    taken = [(n, [d.id for d in w]) for n, w in mine(Launch(1, 2, 1), iter(documents), 2)]
    assert taken == [(1, ["2", "3"]), (3, ["6", "7"]), (5, ["10"])]
    assert [share(11, 2, Launch(r, 2, r)) for r in (0, 1)] == [6, 5]
    assert [share(11, 2, Launch(r, 3, r)) for r in (0, 1, 2)] == [4, 4, 3]  # windows 0,3 | 1,4 | 2,5
    assert part_path("runs/out.jsonl", 1, 4) == Path("runs/.out.jsonl.rank-1-of-4.jsonl")


def test_merge_refuses_a_gap(tmp_path: Path) -> None:
    parts = [tmp_path / "a", tmp_path / "b"]
    parts[0].write_text('{"window": 0, "record": {"id": "1"}}\n{"window": 2, "record": {"id": "5"}}\n')
    parts[1].write_text('{"window": 3, "record": {"id": "7"}}\n')  # window 1 is missing
    with pytest.raises(Exception, match="does not follow window 1"):
        merge(parts, str(tmp_path / "out.jsonl"))
    assert not (tmp_path / "out.jsonl").exists()
    parts[1].write_text('{"window": 1, "record": {"id": "3"}}\n')
    assert merge(parts, str(tmp_path / "out.jsonl")) == 3
    assert (tmp_path / "out.jsonl").read_text() == '{"id": "1"}\n{"id": "3"}\n{"id": "5"}\n'


# -- --data-parallel N: N local processes on the same rank path -------------------------------------------------------


def _extract(args: list[str]) -> subprocess.Popen[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    return subprocess.Popen([sys.executable, "-m", "b2ner_cli", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip


def test_data_parallel_stops_on_sigterm_and_resumes(tiny, tmp_path: Path) -> None:
    source = _source(tmp_path, 24)
    expected = _single(tiny, source, tmp_path / "single.jsonl")
    out = tmp_path / "out.jsonl"
    part = part_path(out, 1, 2)
    process = _extract(_args(tiny, source, "-o", str(out), "--data-parallel", "2"))
    deadline = time.time() + 300
    while (
        time.time() < deadline and process.poll() is None and (not part.exists() or part.read_bytes().count(b"\n") < 3)
    ):
        time.sleep(0.05)
    ranks = psutil.Process(process.pid).children(recursive=True)
    assert process.poll() is None, process.communicate()
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 143, stderr
    assert stderr.splitlines()[-1] == "Stopped by SIGTERM." and "Traceback" not in stderr
    assert not out.exists()
    meta = json.loads(Path(f"{out}.meta.json").read_text(encoding="utf-8"))
    assert meta["status"] == "interrupted" and meta["records_written"] == 0 and meta["data_parallel"] == 2
    assert meta["distributed"]["world_size"] == 2 and meta["distributed"]["records_per_rank"][1] >= 3
    _, alive = psutil.wait_procs(ranks, timeout=20)
    assert not alive  # the rank processes stopped with their launcher

    process = _extract(_args(tiny, source, "-o", str(out), "--data-parallel", "2", "--resume"))
    _, stderr = process.communicate(timeout=600)
    assert process.returncode == 0, stderr
    assert out.read_text(encoding="utf-8") == expected  # every document once, in input order
    meta = json.loads(Path(f"{out}.meta.json").read_text(encoding="utf-8"))
    # windows of 2 over 24 documents: 6 windows per rank, 12 records each
    assert meta["distributed"] == {"world_size": 2, "records_per_rank": [12, 12]} and meta["data_parallel"] == 2
    assert meta["resumed_records"] % 2 == 0 and meta["resumed_records"] >= 2
    assert meta["stats"]["documents"] == 24 - meta["resumed_records"] and meta["status"] == "complete"
    assert _leftovers(tmp_path) == []


def test_data_parallel_reads_stdin_writes_stdout_and_resumes_a_single_run(tiny, tmp_path: Path) -> None:
    source = _source(tmp_path, 5)
    lines = source.read_text(encoding="utf-8")
    single = cli(*_args(tiny, Path("-")), input=lines)
    assert single.exit_code == 0, single.output
    # 5 documents in windows of 2: rank 0 takes windows 0 and 2 ([1,2], [5]), rank 1 window 1 ([3,4])
    parallel = cli(*_args(tiny, Path("-"), "--data-parallel", "2"), input=lines)
    assert parallel.exit_code == 0, parallel.output
    assert parallel.stdout == single.stdout
    assert [json.loads(line)["id"] for line in parallel.stdout.splitlines()] == [f"<stdin>:{i}" for i in range(1, 6)]

    # a one-process run stopped after 3 records (the 4th cut mid-line) continues on 2 processes: its whole
    # windows (records 1-2) are kept, the rest is extracted again
    expected = single.stdout.replace('"<stdin>:', f'"{source}:')  # the same records, read from the file
    whole = expected.splitlines(keepends=True)
    out = tmp_path / "out.jsonl"
    out.write_text("".join(whole[:3]) + whole[3][:15], encoding="utf-8")
    resumed = cli(*_args(tiny, source, "-o", str(out), "--data-parallel", "2", "--resume"))
    assert resumed.exit_code == 0, resumed.output
    assert out.read_text(encoding="utf-8") == expected
    meta = json.loads(Path(f"{out}.meta.json").read_text(encoding="utf-8"))
    assert meta["resumed_records"] == 2 and meta["stats"]["documents"] == 3
    assert meta["distributed"] == {"world_size": 2, "records_per_rank": [3, 2]}
    assert _leftovers(tmp_path) == []
