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

from rich.cells import cell_len
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
        lines = _pipe_lines(table)
        if lines is not None:
            console.file.write("".join(line + "\n" for line in lines))
            return
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


def _pipe_lines(table: TerminalTable) -> Optional[List[str]]:
    """The lines rich prints for `table` through a pipe (HEAVY_HEAD box, one space of padding, every
    column as wide as its widest cell), formatted directly: rich lays out ~1,000 rows a second (9 s
    for a 10,000-device inventory), this ~100,000. None when rich's own layout is needed: a cell of
    several lines or with control characters, a centred column or cell, a title or caption wider than the
    table, fewer than 20 columns of width (rich's console minimum)."""
    if any(column.justify not in ("left", "right") for column in table.columns):
        return None
    if any(cell.justify for row in table.rows for cell in row):
        return None  # a cell's own justification overrides its column's in rich
    texts = [[cell.plain for cell in row] for row in table.rows]
    if any(not text.isprintable() for row in texts for text in row if text):
        return None
    headers = [column.header for column in table.columns]
    widths = [cell_len(header) for header in headers]
    lengths = [[cell_len(text) for text in row] for row in texts]
    for row in lengths:
        widths = [max(width, length) for width, length in zip(widths, row)]
    total = sum(widths) + 3 * len(widths) + 1
    if total < 20 or any(cell_len(note) > total or not note.isprintable() for note in (table.title, table.caption)):
        return None

    def line(cells: List[str], cell_lengths: List[int], edge: str, inner: str) -> str:
        parts = []
        for column, text, length, width in zip(table.columns, cells, cell_lengths, widths):
            pad = " " * (width - length)
            parts.append(" %s%s " % ((pad, text) if column.justify == "right" else (text, pad)))
        return edge + inner.join(parts) + edge

    def rule(left: str, fill: str, cross: str, right: str) -> str:
        return left + cross.join(fill * (width + 2) for width in widths) + right

    out = []
    if table.title:
        out.append(table.title.ljust(total + len(table.title) - cell_len(table.title)))
    out.append(rule("┏", "━", "┳", "┓"))
    out.append(line(headers, [cell_len(header) for header in headers], "┃", "┃"))
    out.append(rule("┡", "━", "╇", "┩"))
    out.extend(line(row, row_lengths, "│", "│") for row, row_lengths in zip(texts, lengths))
    out.append(rule("└", "─", "┴", "┘"))
    if table.caption:
        out.append(table.caption.ljust(total + len(table.caption) - cell_len(table.caption)))
    return out


def fmt(value: Optional[float], digits: int = 1) -> str:
    """A number for a table cell ('-' when missing)."""
    if value is None:
        return "-"
    return ("%." + str(digits) + "f") % value


def say(console: Console, text: Union[str, Text]) -> None:
    """A line of free text: word-wrapped on a terminal, one line through a pipe (for grep)."""
    console.print(text if isinstance(text, Text) else Text(text), soft_wrap=not console.is_terminal)
