"""Terminal rendering of records (``--format table``)."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    Progress,
    ProgressColumn,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.status import Status
from rich.text import Text

from ..models.registry import DEFAULT_MODEL
from ..records import Record
from ..runs.run import Event, Loaded, Loading, Note, Stopped
from ..runs.run import Progress as Progressed
from ..wording import count

__all__ = ["RunView", "TableRenderer", "count"]

_STYLES = (
    "bold black on cyan",
    "bold black on yellow",
    "bold black on green",
    "bold black on magenta",
    "bold white on blue",
    "bold white on red",
    "bold black on bright_cyan",
    "bold black on bright_green",
)


class TableRenderer:
    """Prints each record as its text with entities highlighted, then a line per entity (a run's record sink)."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.styles: dict[str, str] = {}
        self.count = 0
        self.path: Path | None = None

    def write(self, record: Record) -> None:
        self.render(record)
        self.count += 1

    def close(self, complete: bool) -> Path | None:
        return None

    def style(self, label: str) -> str:
        return self.styles.setdefault(label, _STYLES[len(self.styles) % len(_STYLES)])

    def render(self, record: Record) -> None:
        text = Text(record.text)
        for entity in record.entities:
            text.stylize(self.style(entity.label), entity.start, entity.end)
        self.console.print(Text(record.id, style="bold dim"))
        self.console.print(text)
        for entity in record.entities:
            line = Text("  ")
            line.append(f"[{entity.start}:{entity.end}] ", style="dim")
            line.append(entity.text, style=self.style(entity.label))
            line.append(f"  {entity.label}")
            self.console.print(line)
        for item in record.unmatched:
            self.console.print(Text(f"  (not in text) {item.text}  {item.label}", style="dim"))
        if not record.entities and not record.unmatched:
            self.console.print(Text("  no entities", style="dim"))
        self.console.print()


class RunView:
    """Shows a run's events on stderr: a loading spinner, a progress line, notes, a stop message.

    The live line is drawn only on a terminal, and not when the records themselves go to the same terminal (a line
    redrawn on stderr would land in the middle of stdout's lines): the records are the progress then.
    """

    def __init__(self, console: Console, *, quiet: bool = False, records_to_terminal: bool = False) -> None:
        self.console = console
        self.quiet = quiet
        self.show = not quiet and console.is_terminal and not records_to_terminal
        self._status: Status | None = None
        self._progress: Progress | None = None
        self._task: TaskID | None = None

    def __enter__(self) -> RunView:
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop()

    def _stop(self) -> None:
        if self._status is not None:
            self._status.stop()
            self._status = None
        if self._progress is not None:
            self._progress.stop()

    def _start(self, total: int | None) -> None:
        known = total is not None
        columns: list[ProgressColumn] = [SpinnerColumn()]
        if known:
            columns += [BarColumn(bar_width=24), TextColumn("{task.completed}/{task.total} documents")]
        else:
            columns.append(TextColumn("{task.completed} documents"))
        columns += [
            TextColumn("{task.fields[rate]:.1f} docs/s"),
            TextColumn("{task.fields[entities]} entities"),
            TimeElapsedColumn(),
        ]
        if known:
            columns.append(TimeRemainingColumn())
        self._progress = Progress(*columns, console=self.console, transient=True)
        self._progress.start()
        self._task = self._progress.add_task("run", total=total, rate=0.0, entities=0)

    def __call__(self, event: Event) -> None:
        if isinstance(event, Loading):
            if self.show:
                spec = event.model
                name = spec.model or DEFAULT_MODEL
                text = f"Loading model {name}" + (f" with adapter {spec.adapter}" if spec.adapter else "") + " ..."
                self._status = self.console.status(escape(text))
                self._status.start()
        elif isinstance(event, Loaded):
            if self._status is not None:
                self._status.stop()
                self._status = None
        elif isinstance(event, Note):
            if not self.quiet:
                self.console.print(f"Note: {event.text}", markup=False)
        elif isinstance(event, Progressed):
            if not self.show:
                return
            if self._progress is None:
                self._start(event.total)
            assert self._progress is not None and self._task is not None
            stats = event.stats
            done = max(stats.answered, stats.documents)
            self._progress.update(
                self._task, completed=done, entities=stats.entities, rate=done / max(event.seconds, 1e-9)
            )
        elif isinstance(event, Stopped):
            self._stop()
            self.console.print(
                f"{event.path} holds the {count(event.records, 'record')} completed before the run stopped.",
                markup=False,
            )
