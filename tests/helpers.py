"""What CLI tests share: invoking the app, and reading and writing JSONL."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from click.testing import Result
from typer.testing import CliRunner

from b2ner_cli.cli.app import app


def cli(*args: str, input: str | None = None) -> Result:
    """Run ``b2ner ARGS`` in-process; stdout and stderr are kept apart (``result.stdout``/``result.stderr``)."""
    return CliRunner().invoke(app, list(args), input=input, catch_exceptions=False)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def write_jsonl(path: Path, records: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path


def scored(records: Any) -> Any:
    """LLM records (a list, or one) with every entity's ``score`` checked to lie in (0, 1] and then removed, so that
    the rest can be compared with offsets worked out by hand."""
    items = records if isinstance(records, list) else [records]
    for record in items:
        for entity in record["entities"]:
            assert 0.0 < entity.pop("score") <= 1.0
    return records


def interruptible() -> None:
    """``preexec_fn`` for a child a test will Ctrl-C: SIGINT back to its default. A test run started with ``&`` by
    a non-interactive shell (a CI script, nohup) has SIGINT ignored, and children inherit that, so Python in the
    child would never raise KeyboardInterrupt."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)
