"""Safe outputs: checked before a run starts, written atomically, never half-written.

``check_outputs`` runs before any model loads. It refuses an output that is the same file as an input or as
another output (symlinks resolved), a directory, a path whose parent is a file or cannot be created, and an
output the user cannot write. ``-``/``None`` (stdout), character devices and FIFOs are accepted as they are.

``AtomicFile`` writes one output:

- A regular file is written to a temporary file in the target's own directory, named
  ``.<name>.<pid>-<random>.tmp`` (unique per run, so concurrent runs never share one), and ``commit()`` renames
  it onto the target with ``os.replace``: readers see the old file or the new one, never a mix. When several runs
  write one target, the last to commit wins, whole.
- A symlink is resolved first: its target is written and the link is kept.
- A character device, FIFO, socket, or a ``/dev/stdout``-like path is written directly (no temporary file).
- ``abort()`` ends a failed or interrupted run. Only complete lines (whole writes) are kept. When the target did
  not exist, the partial result is published at the target (a valid file with the records completed so far). When
  the target exists, it stays intact and the partial result is kept beside it as ``<name>.partial`` (one stable name:
  a later aborted run replaces it); ``abort()`` returns where the partial result went.
- ``discard()`` drops the temporary file and leaves the target as it was.
- Disk full (ENOSPC/EDQUOT), permission and read-only errors become one-line ``OutputError``s with a hint; the
  temporary file is removed first, so none is ever left behind.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
from collections.abc import Mapping, Sequence
from pathlib import Path

from ..errors import OutputError, UsageError

PARTIAL_SUFFIX = ".partial"
_DISK_FULL = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}


def output_error(exc: OSError, path: str | Path) -> OutputError:
    """A one-line error (with a hint) for an OSError met while writing ``path``."""
    if exc.errno in _DISK_FULL:
        return OutputError(
            f"No space left on the device to write {path}.",
            "Free some disk space, or write the output to another disk with -o.",
        )
    if exc.errno in (errno.EACCES, errno.EPERM):
        return OutputError(f"Permission denied writing {path}.", "Write the output to a directory you own with -o.")
    if exc.errno == errno.EROFS:
        return OutputError(f"{path} is on a read-only file system.", "Write the output elsewhere with -o.")
    return OutputError(f"Cannot write {path}: {exc.strerror or exc}.", "Write the output elsewhere with -o.")


_STREAM_PATHS = ("/dev/stdout", "/dev/stderr", "/dev/fd/", "/proc/self/fd/")


def _is_special(path: Path) -> bool:
    """True for character/block devices, FIFOs, sockets (following symlinks) and ``/dev/stdout``-like paths.

    ``/dev/stdout`` may stand for a regular file the shell opened (``> file``): it is written through, in append
    mode, never replaced by a rename (which would leave the shell's file empty).
    """
    if str(path).startswith(_STREAM_PATHS):
        return True
    try:
        mode = os.stat(path).st_mode  # /dev/stdout and /proc/self/fd/1 resolve to the tty, pipe or file behind them
    except OSError:
        return False
    return stat.S_ISCHR(mode) or stat.S_ISBLK(mode) or stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)


def _same_file(a: Path, b: Path) -> bool:
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def check_outputs(outputs: Mapping[str, str | Path | None], inputs: Sequence[str | Path]) -> None:
    """Refuse outputs that would overwrite an input or each other, or that cannot be written.

    ``outputs`` maps an option as the user typed it (``-o``, ``--errors``) to its path; ``-``/``None`` is stdout
    and is skipped. Nothing is created or written.
    """
    input_paths = [Path(p) for p in inputs if str(p) != "-"]
    checked: list[tuple[str, str | Path, Path]] = []
    for option, target in outputs.items():
        if target is None or str(target) == "-":
            continue
        path = Path(target)
        if _is_special(path):
            continue
        for source in input_paths:
            if _same_file(path, source):
                raise UsageError(
                    f"{option} {target} is also an input.",
                    f"Write the output to another file, e.g. {option} {path.stem}.out{path.suffix or '.jsonl'}.",
                )
        for other_option, other_target, other in checked:
            if _same_file(path, other):
                raise UsageError(
                    f"{option} {target} is also the file given to {other_option} ({other_target}).",
                    "Give each output its own file.",
                )
        _check_writable(option, target, path)
        checked.append((option, target, path))


def _check_writable(option: str, target: str | Path, path: Path) -> None:
    real = Path(os.path.realpath(path))
    if real.is_dir():
        raise OutputError(f"{option} {target} is a directory.", f"Name a file, e.g. {option} {path / 'out.jsonl'}.")
    if real.exists() and not os.access(real, os.W_OK):
        raise OutputError(
            f"{option} {target} is not writable.", "Change its permissions, or write the output elsewhere."
        )
    ancestor = real.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise OutputError(
            f"{option} {target}: {ancestor} is a file, not a directory.", "Choose an output path in a directory."
        )
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise OutputError(
            f"{option} {target}: the directory {ancestor} is not writable.",
            "Write the output to a directory you own with -o.",
        )


class AtomicFile:
    """One output file, replaced only when ``commit()`` is called (see the module docstring)."""

    def __init__(self, target: str | Path) -> None:
        self.target = Path(target)
        self.partial_path: Path | None = None
        self._direct = _is_special(self.target)
        self._path = self.target if self._direct else Path(os.path.realpath(self.target))
        self._tmp: Path | None = None
        self._good = 0  # bytes written in whole writes
        try:
            if self._direct:
                fd = os.open(self._path, os.O_WRONLY | os.O_APPEND)
            else:
                self._path.parent.mkdir(parents=True, exist_ok=True)
                self._tmp = self._path.with_name(f".{self._path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")
                # Mode 0o666 less the umask, like any file the user writes (tempfile.mkstemp would give 0o600).
                fd = os.open(self._tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except OSError as exc:
            raise output_error(exc, self.target) from None
        self._file = os.fdopen(fd, "wb")

    @property
    def closed(self) -> bool:
        return self._file.closed

    def write(self, text: str) -> None:
        """Write and flush ``text``; an OSError removes the temporary file and raises an OutputError."""
        self.write_bytes(text.encode("utf-8"))

    def write_bytes(self, data: bytes) -> None:
        """Write and flush ``data`` (a binary output, e.g. a spaCy DocBin), as :meth:`write` does."""
        if self._file.closed:
            raise ValueError("write to a closed output")
        try:
            self._file.write(data)
            self._file.flush()
        except OSError as exc:
            self._fail()
            raise output_error(exc, self.target) from None
        self._good += len(data)

    def commit(self) -> Path:
        """The run is complete: publish the file at the target (or just close a device) and return the target."""
        if self._file.closed:
            return self.target
        try:
            self._file.flush()
            if self._tmp is not None:
                os.fsync(self._file.fileno())
            self._file.close()
            if self._tmp is not None:
                os.replace(self._tmp, self._path)
                self._tmp = None
        except OSError as exc:
            self._fail()
            raise output_error(exc, self.target) from None
        return self.target

    def abort(self) -> Path | None:
        """The run failed or stopped: keep the complete lines (see the module docstring) and say where they went.

        Returns the target when the partial result was published there, ``<target>.partial`` when an existing
        target was kept, and None when nothing was kept (a device, or an output already closed).
        """
        if self._file.closed:
            return self.partial_path
        if self._tmp is None:  # a device: what was written is written
            self._close_quietly()
            return None
        try:
            self._file.flush()
            self._file.truncate(self._good)
            self._file.close()
            if self._path.exists():  # keep the existing output; the partial result goes beside it
                kept = self._path.with_name(self._path.name + PARTIAL_SUFFIX)
                os.replace(self._tmp, kept)
                self.partial_path = kept
            else:
                os.replace(self._tmp, self._path)
                self.partial_path = self.target
            self._tmp = None
        except OSError as exc:
            self._fail()
            raise output_error(exc, self.target) from None
        return self.partial_path

    def discard(self) -> None:
        """Drop what was written; the target stays as it was."""
        self._fail()

    def _close_quietly(self) -> None:
        with contextlib.suppress(OSError):
            self._file.close()

    def _fail(self) -> None:
        self._close_quietly()
        if self._tmp is not None:
            self._tmp.unlink(missing_ok=True)
            self._tmp = None
