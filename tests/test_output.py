"""The safe output layer: outputs checked before a run, written atomically, partial results never clobbering."""

from __future__ import annotations

import errno
import json
import os
import stat
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from b2ner_cli.errors import OutputError, UsageError
from b2ner_cli.io import output
from b2ner_cli.io.output import AtomicFile, check_outputs
from b2ner_cli.io.writers import JsonlWriter, write_json_atomic


def names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def lines(path: Path) -> list[object]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


# --- symlinks, existing outputs, partial results ----------------------------------------------------------------


def test_a_symlinked_output_writes_the_link_target_and_keeps_the_link(tmp_path: Path) -> None:
    real = tmp_path / "data" / "real.jsonl"
    real.parent.mkdir()
    real.write_text("old\n", encoding="utf-8")
    link = tmp_path / "out.jsonl"
    link.symlink_to(real)
    with JsonlWriter(link) as writer:
        writer.write({"n": 1})
    assert link.is_symlink() and os.readlink(link) == str(real)
    assert real.read_text(encoding="utf-8") == '{"n": 1}\n'
    assert names(tmp_path / "data") == ["real.jsonl"] and names(tmp_path) == ["data", "out.jsonl"]


def test_an_aborted_run_leaves_an_existing_output_intact_and_the_partial_beside_it(tmp_path: Path) -> None:
    target = tmp_path / "out.jsonl"
    target.write_text('{"old": 1}\n', encoding="utf-8")
    writer = JsonlWriter(target)
    writer.write({"n": 1})
    writer.write({"n": 2})
    assert writer.abort() == tmp_path / "out.jsonl.partial"
    assert writer.partial_path == tmp_path / "out.jsonl.partial"
    writer.close()  # the CLI's finally: nothing more happens after an abort
    assert target.read_text(encoding="utf-8") == '{"old": 1}\n'
    assert lines(tmp_path / "out.jsonl.partial") == [{"n": 1}, {"n": 2}]
    assert names(tmp_path) == ["out.jsonl", "out.jsonl.partial"]


def test_an_aborted_run_without_an_existing_output_publishes_the_complete_lines_at_the_target(tmp_path: Path) -> None:
    target = tmp_path / "out.jsonl"
    with pytest.raises(KeyboardInterrupt), JsonlWriter(target) as writer:
        writer.write({"n": 1})
        raise KeyboardInterrupt
    assert writer.partial_path == target
    assert lines(target) == [{"n": 1}] and names(tmp_path) == ["out.jsonl"]


def test_abort_keeps_only_complete_writes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    file = AtomicFile(tmp_path / "out.jsonl")
    file.write("one\n")
    file._file.write(b"half a li")  # bytes that no whole write accounts for (a write cut short)
    assert file.abort() == tmp_path / "out.jsonl"
    assert (tmp_path / "out.jsonl").read_bytes() == b"one\n"


# --- concurrent runs --------------------------------------------------------------------------------------------


def test_two_writers_to_one_target_use_their_own_temporary_files_and_the_last_commit_wins_whole(
    tmp_path: Path,
) -> None:
    target = tmp_path / "out.jsonl"
    first, second = JsonlWriter(target), JsonlWriter(target)
    for n in range(3):
        first.write({"run": 1, "n": n})
        second.write({"run": 2, "n": n})
    assert len(list(tmp_path.glob(".out.jsonl.*.tmp"))) == 2
    first.close()
    assert lines(target) == [{"run": 1, "n": n} for n in range(3)]
    second.close()
    assert lines(target) == [{"run": 2, "n": n} for n in range(3)]
    assert names(tmp_path) == ["out.jsonl"]


# --- check_outputs: same files ----------------------------------------------------------------------------------


def test_an_output_that_is_an_input_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    Path("same.jsonl").write_text("{}\n", encoding="utf-8")
    with pytest.raises(UsageError, match=r"^-o same.jsonl is also an input\.$"):
        check_outputs({"-o": "same.jsonl"}, [str(tmp_path / "same.jsonl")])
    assert Path("same.jsonl").read_text(encoding="utf-8") == "{}\n"


def test_an_output_that_is_a_symlink_to_an_input_is_refused(tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text("{}\n", encoding="utf-8")
    (tmp_path / "link.jsonl").symlink_to(source)
    with pytest.raises(UsageError, match="is also an input"):
        check_outputs({"-o": tmp_path / "link.jsonl"}, [source])
    (tmp_path / "hard.jsonl").hardlink_to(source)
    with pytest.raises(UsageError, match="is also an input"):
        check_outputs({"-o": tmp_path / "hard.jsonl"}, [source])


def test_two_outputs_on_one_file_are_refused(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"--errors .*out.jsonl is also the file given to -o"):
        check_outputs({"-o": tmp_path / "out.jsonl", "--errors": tmp_path / "sub" / ".." / "out.jsonl"}, [])


def test_stdout_devices_and_distinct_files_pass(tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text("{}\n", encoding="utf-8")
    check_outputs({"-o": "-", "--errors": None, "--meta": "/dev/null", "-x": tmp_path / "new" / "out.jsonl"}, [source])


# --- check_outputs: places that cannot be written, refused before anything is written ---------------------------


def test_a_directory_output_is_refused(tmp_path: Path) -> None:
    with pytest.raises(OutputError, match=r"^-o .* is a directory\.$") as caught:
        check_outputs({"-o": tmp_path}, [])
    assert caught.value.hint and "out.jsonl" in caught.value.hint


def test_an_output_under_a_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "file.txt").write_text("x", encoding="utf-8")
    with pytest.raises(OutputError, match=r"file.txt is a file, not a directory"):
        check_outputs({"-o": tmp_path / "file.txt" / "deeper" / "out.jsonl"}, [])
    assert names(tmp_path) == ["file.txt"]


def as_unprivileged(check: Callable[[Path], None]) -> str:
    """Run ``check`` on a fresh world-writable directory as an ordinary user; return the error or "ok".

    Root may write anywhere, so under root the check runs in a forked child that drops to uid 65534.
    """
    folder = Path(tempfile.mkdtemp())
    folder.chmod(0o777)
    try:
        if os.geteuid() != 0:
            try:
                check(folder)
            except OutputError as error:
                return error.message
            return "ok"
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            os.close(read)
            try:
                os.setgid(65534)
                os.setuid(65534)
                check(folder)
                result = "ok"
            except OutputError as error:
                result = error.message
            except BaseException as error:
                result = f"unexpected {error!r}"
            os.write(write, result.encode())
            os._exit(0)
        os.close(write)
        with os.fdopen(read, "rb") as stream:
            result = stream.read().decode()
        os.waitpid(pid, 0)
        return result
    finally:
        for path in sorted(folder.rglob("*"), reverse=True):
            path.chmod(0o755) if path.is_dir() else path.unlink()
            if path.is_dir():
                path.rmdir()
        folder.rmdir()


def test_an_unwritable_directory_or_file_is_refused() -> None:
    def read_only_dir(folder: Path) -> None:
        (folder / "ro").mkdir(mode=0o555)
        (folder / "ro").chmod(0o555)
        check_outputs({"-o": folder / "ro" / "out.jsonl"}, [])

    def read_only_file(folder: Path) -> None:
        (folder / "w").mkdir(mode=0o777)
        (folder / "w").chmod(0o777)
        (folder / "w" / "out.jsonl").write_text("", encoding="utf-8")
        (folder / "w" / "out.jsonl").chmod(0o444)
        check_outputs({"-o": folder / "w" / "out.jsonl"}, [])

    def writable(folder: Path) -> None:
        (folder / "w").mkdir(mode=0o777)
        (folder / "w").chmod(0o777)
        check_outputs({"-o": folder / "w" / "out.jsonl"}, [])

    if os.geteuid() == 0:
        assert as_unprivileged(writable) == "ok"
    assert as_unprivileged(read_only_dir).endswith("/ro is not writable.")
    assert as_unprivileged(read_only_file).endswith("/w/out.jsonl is not writable.")


# --- disk full, FIFOs -------------------------------------------------------------------------------------------


class FullDisk:
    """A file object whose writes fail with ENOSPC, as on a full disk."""

    def __init__(self, real: object) -> None:
        self.real = real

    def __getattr__(self, name: str) -> object:
        return getattr(self.real, name)

    def write(self, data: bytes) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")


def test_disk_full_is_a_one_line_error_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    target = tmp_path / "out.jsonl"
    target.write_text("old\n", encoding="utf-8")
    writer = JsonlWriter(target)
    writer.write({"n": 1})
    writer._file._file = FullDisk(writer._file._file)  # type: ignore[union-attr]
    with pytest.raises(OutputError, match=r"^No space left on the device to write .*out.jsonl\.$") as caught:
        writer.write({"n": 2})
    assert caught.value.hint and "disk space" in caught.value.hint
    writer.close()
    assert names(tmp_path) == ["out.jsonl"] and target.read_text(encoding="utf-8") == "old\n"


def test_disk_full_in_write_json_atomic_is_typed_and_leaves_no_temporary_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_fdopen = os.fdopen
    monkeypatch.setattr(output.os, "fdopen", lambda *a, **k: FullDisk(real_fdopen(*a, **k)))
    with pytest.raises(OutputError, match="No space left"):
        write_json_atomic(tmp_path / "meta.json", {"a": 1})
    assert names(tmp_path) == []


def test_a_fifo_is_written_directly(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    received: list[bytes] = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_bytes()))
    reader.start()
    check_outputs({"-o": fifo}, [])
    with JsonlWriter(fifo) as writer:
        writer.write({"n": 1})
    reader.join(timeout=10)
    assert received == [b'{"n": 1}\n']
    assert stat.S_ISFIFO(os.stat(fifo).st_mode) and names(tmp_path) == ["pipe"]
