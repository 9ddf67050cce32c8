"""Output writers: JSONL streamed record by record, never a half-written file (see ``io/output.py``)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from types import TracebackType
from typing import TextIO

from .output import AtomicFile


def dumps(record: dict[str, object]) -> str:
    return json.dumps(record, ensure_ascii=False, separators=(", ", ": "))


class JsonlWriter:
    """Writes one JSON line per record to stdout or to a file.

    A file is written through an ``AtomicFile``: a unique temporary file beside the target, renamed onto it by
    ``close()`` (the run is complete). ``abort()`` ends a failed or interrupted run: every complete line is kept,
    at the target when there was none, else beside it as ``<name>.partial`` (the existing output stays intact);
    ``partial_path`` then names the file that holds the records. Leaving the ``with`` block on an exception aborts;
    leaving it normally closes.
    """

    def __init__(self, target: str | Path | None, stdout: TextIO | None = None) -> None:
        self.count = 0
        self.path = None if target is None or str(target) == "-" else Path(target)
        self._file = AtomicFile(self.path) if self.path is not None else None
        self._stream = stdout or sys.stdout

    @property
    def partial_path(self) -> Path | None:
        """Where the records of an aborted run went (the target or ``<target>.partial``); None before ``abort()``."""
        return self._file.partial_path if self._file is not None else None

    def write(self, record: dict[str, object]) -> None:
        line = dumps(record) + "\n"
        if self._file is not None:
            self._file.write(line)
        else:
            self._stream.write(line)
            self._stream.flush()
        self.count += 1

    def close(self) -> None:
        """The run is complete: publish the file (idempotent; a no-op after ``abort()`` or a failed write)."""
        if self._file is not None:
            self._file.commit()

    def abort(self) -> Path | None:
        """The run failed or was interrupted: keep the complete lines and return the file that holds them."""
        if self._file is not None:
            return self._file.abort()
        return None

    def __enter__(self) -> JsonlWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def write_json_atomic(path: Path, data: object) -> None:
    """Write a JSON document via a unique temporary file and a rename (symlinks followed, disk-full errors typed)."""
    text = json.dumps(data, ensure_ascii=False, indent=2) + "\n"  # an unserialisable value fails before any write
    output = AtomicFile(path)
    try:
        output.write(text)
        output.commit()
    except BaseException:
        output.discard()
        raise
