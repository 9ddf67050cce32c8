"""Stopping a run from outside: SIGTERM and SIGHUP take the Ctrl-C path, and worker replicas die with their parent."""

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
from conftest import EN_LABELS, TAUGHT


def _extract(tiny, source: Path, *extra: str) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "b2ner_cli", "extract", str(source), "-l", ",".join(EN_LABELS), "-m",
               str(tiny.base), "--adapter", str(tiny.adapter), "-q", *extra]  # fmt: skip
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _written(folder: Path, source: Path) -> int:
    """Lines written so far to any file of the run in ``folder`` (whatever the temporary file is called)."""
    return max((p.read_bytes().count(b"\n") for p in folder.iterdir() if p.is_file() and p != source), default=0)


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGHUP, 129)])
def test_sigterm_and_sighup_leave_valid_output_and_metadata(tiny, tmp_path: Path, signum: int, code: int) -> None:
    text, _, _ = TAUGHT[0]
    source = tmp_path / "in.txt"
    source.write_text((text + "\n") * 400, encoding="utf-8")
    out = tmp_path / "out.jsonl"
    process = _extract(tiny, source, "-b", "1", "-o", str(out))
    deadline = time.time() + 120
    while time.time() < deadline and process.poll() is None and _written(tmp_path, source) < 3:
        time.sleep(0.05)
    assert process.poll() is None, process.communicate()
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == code, stderr
    assert "Traceback" not in stderr
    assert stderr.splitlines()[-1] == f"Stopped by {signal.Signals(signum).name}."
    records = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]  # every line whole
    assert 3 <= len(records) < 400
    assert [r["id"] for r in records] == [f"{source}:{i}" for i in range(1, len(records) + 1)]
    meta = json.loads(Path(f"{out}.meta.json").read_text(encoding="utf-8"))
    assert meta["status"] == "interrupted" and meta["records_written"] == len(records)


def _workers(pid: int) -> list[psutil.Process]:
    try:
        children = psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []
    found = []
    for child in children:
        try:
            if "spawn_main" in " ".join(child.cmdline()):
                found.append(child)
        except psutil.NoSuchProcess:
            pass
    return found


def test_worker_replicas_die_with_their_parent(tiny, tmp_path: Path) -> None:
    text, _, _ = TAUGHT[0]
    source = tmp_path / "in.txt"
    source.write_text((text + "\n") * 2000, encoding="utf-8")
    process = _extract(tiny, source, "-b", "1", "--data-parallel", "2", "-o", str(tmp_path / "out.jsonl"))
    deadline = time.time() + 120
    workers: list[psutil.Process] = []
    while time.time() < deadline and process.poll() is None and len(workers) < 2:
        workers = _workers(process.pid)
        time.sleep(0.1)
    assert len(workers) == 2, process.communicate()
    process.kill()  # SIGKILL: no cleanup code runs in the parent
    process.wait(timeout=30)
    gone, alive = psutil.wait_procs(workers, timeout=20)
    assert not alive, [w.pid for w in alive]
    assert {w.pid for w in gone} == {w.pid for w in workers}


def test_stdout_lines_stay_clean_in_a_terminal(tiny, tmp_path: Path) -> None:
    """stdout and stderr on one pseudo-terminal (as in an interactive shell): no progress frame lands on a JSON line."""
    import pty

    text, _, _ = TAUGHT[0]
    source = tmp_path / "in.txt"
    source.write_text((text + "\n") * 40, encoding="utf-8")
    command = [sys.executable, "-m", "b2ner_cli", "extract", str(source), "-l", ",".join(EN_LABELS), "-m",
               str(tiny.base), "--adapter", str(tiny.adapter), "-b", "4"]  # fmt: skip
    leader, follower = pty.openpty()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "TERM": "xterm", "COLUMNS": "200"}
    process = subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL, stdout=follower, stderr=follower)
    os.close(follower)
    chunks = []
    while True:
        try:
            data = os.read(leader, 65536)
        except OSError:  # the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    process.wait(timeout=120)
    os.close(leader)
    assert process.returncode == 0
    lines = b"".join(chunks).decode("utf-8").replace("\r\n", "\n").split("\n")
    records = [line for line in lines if '"id"' in line]
    assert len(records) == 40
    assert all(line.startswith('{"id"') and line.endswith("}") for line in records), records[:3]
