"""Tables for the terminal that stay readable at 80 columns and through a pipe.

Identifiers (run ids, device names) and numbers are never split across lines: their columns do
not wrap. Only free text (messages, errors, descriptions) folds. When the unsplittable columns
alone do not fit the width, each row is printed as a block of `column: value` lines instead of a
table of slivers. Through a pipe (no terminal, so no width to respect) a table is printed as wide
as its content needs, so `grep` sees one row per line.

Every cell is shown as text: values from boards, engines and config files are never parsed as
rich markup.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Sequence, Union

from rich.console import Console
from rich.table import Table
from rich.text import Text

Cell = Union[str, Text, None]


@dataclass(frozen=True)
class Column:
    """A table column; `wrap=False` for identifiers and numbers (never split)."""

    header: str
    wrap: bool = False
    justify: str = "left"


def text_col(header: str) -> Column:
    """Free text that may fold over several lines (messages, errors)."""
    return Column(header, wrap=True)


def num_col(header: str) -> Column:
    return Column(header, wrap=False, justify="right")


def _cell(value: Cell) -> Text:
    if value is None:
        return Text("")
    if isinstance(value, Text):
        return value
    return Text(str(value))


class TerminalTable:
    """Rows of cells with a title and an optional caption, rendered by `show`."""

    def __init__(self, columns: Sequence[Union[Column, str]], title: str = "", caption: str = "") -> None:
        self.columns: List[Column] = [c if isinstance(c, Column) else Column(c) for c in columns]
        self.title = title
        self.caption = caption
        self.rows: List[List[Text]] = []

    def add_row(self, *cells: Cell) -> None:
        if len(cells) != len(self.columns):
            raise ValueError("row has %d cells for %d columns" % (len(cells), len(self.columns)))
        self.rows.append([_cell(c) for c in cells])

    def table(self) -> Table:
        table = Table(title=self.title or None, caption=self.caption or None, title_justify="left",
                      caption_justify="left")
        for column in self.columns:
            if column.wrap:
                # a small floor: rich may otherwise squeeze a text column to nothing
                table.add_column(column.header, overflow="fold", justify=column.justify,
                                 min_width=min(self._widest(column), 8))
            else:
                table.add_column(column.header, no_wrap=True, justify=column.justify,
                                 min_width=self._widest(column))
        for row in self.rows:
            table.add_row(*row)
        return table

    def _widest(self, column: Column) -> int:
        index = self.columns.index(column)
        cells = [len(column.header)] + [row[index].cell_len for row in self.rows]
        return max(cells)

    def unsplittable_width(self) -> int:
        """Width of the table if every non-wrapping column keeps its widest cell and text columns
        shrink to a few characters (borders and padding included)."""
        widths = [self._widest(c) if not c.wrap else min(self._widest(c), 8) for c in self.columns]
        return sum(widths) + 3 * len(widths) + 1

    def records(self) -> Text:
        """One block of `column: value` lines per row (for widths no table fits in)."""
        out = Text()
        if self.title:
            out.append(self.title + "\n", style="bold")
        label = max((len(c.header) for c in self.columns), default=0)
        for number, row in enumerate(self.rows):
            if number:
                out.append("\n")
            for column, cell in zip(self.columns, row):
                if not cell.plain:
                    continue
                out.append(("%-" + str(label) + "s  ") % column.header, style="dim")
                out.append_text(cell)
                out.append("\n")
        if self.caption:
            out.append(self.caption + "\n", style="dim")
        return out


def show(console: Console, table: TerminalTable) -> None:
    """Print `table` so that no identifier or number is split (see the module doc)."""
    if not console.is_terminal:
        # a pipe has no width: print each row on one line, however long
        rendered = table.table()
        wide = console.options.update_width(100_000)
        needed = rendered.__rich_measure__(console, wide).maximum
        Console(file=console.file, width=max(needed, 20), no_color=console.no_color,
                color_system=None, force_terminal=False).print(rendered)
        return
    if table.unsplittable_width() > console.width:
        console.print(table.records())
        return
    console.print(table.table())


def fmt(value: Optional[float], digits: int = 1) -> str:
    """A number for a table cell ('-' when missing)."""
    if value is None:
        return "-"
    return ("%." + str(digits) + "f") % value


def say(console: Console, text: Union[str, Text]) -> None:
    """A line of free text: word-wrapped on a terminal, one line through a pipe (for grep)."""
    console.print(text if isinstance(text, Text) else Text(text), soft_wrap=not console.is_terminal)
