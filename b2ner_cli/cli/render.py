"""Terminal rendering of records (``--format table``)."""

from __future__ import annotations

from rich.console import Console
from rich.text import Text

from ..pipeline import Record

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
    """Prints each record as its text with entities highlighted, then a line per entity."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.styles: dict[str, str] = {}

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
