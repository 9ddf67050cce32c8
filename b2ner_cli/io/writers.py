"""Output writers: JSONL streamed record by record, never a half-written file."""

from __future__ import annotations

import json
import os
import secrets
import sys
from pathlib import Path
from types import TracebackType
from typing import TextIO


def dumps(record: dict[str, object]) -> str:
    return json.dumps(record, ensure_ascii=False, separators=(", ", ": "))


class JsonlWriter:
    """Writes one JSON line per record to stdout or to a file.

    A file is written as ``<name>.part`` and renamed into place when the writer closes, so a
    reader never sees a half-written line. Closing after an error or Ctrl-C still renames it:
    the file then holds every record completed so far, each line valid.
    """

    def __init__(self, target: str | Path | None, stdout: TextIO | None = None) -> None:
        self.count = 0
        self.path = None if target is None or target == "-" else Path(target)
        self._part: Path | None = None
        if self.path is None:
            self._stream = stdout or sys.stdout
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._part = self.path.with_name(self.path.name + ".part")
            self._stream = open(self._part, "w", encoding="utf-8", newline="\n")  # noqa: SIM115

    def write(self, record: dict[str, object]) -> None:
        self._stream.write(dumps(record) + "\n")
        self._stream.flush()
        self.count += 1

    def close(self) -> None:
        if self._part is not None and self.path is not None:
            if not self._stream.closed:
                self._stream.close()
            os.replace(self._part, self.path)
            self._part = None

    def __enter__(self) -> JsonlWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def write_json_atomic(path: Path, data: object) -> None:
    """Write a JSON document via a temporary file and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{secrets.token_hex(6)}.tmp")
    # Mode 0o666 less the umask, like any file the user writes (tempfile.mkstemp would give 0o600).
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as stream:
            json.dump(data, stream, ensure_ascii=False, indent=2)
            stream.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
