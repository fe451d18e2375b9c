"""Rendering for the CLI: colour tables on a terminal, plain aligned text otherwise.

On a terminal every table and line fits the window without cutting a cell or a number
(:mod:`zarrgeno.render.layout`); piped, a table is one line per row, whole, for ``awk``.
rich is imported only when something may be drawn on a terminal: a command whose output is
piped (``zarrgeno info STORE > file``, every test) writes plain text without it.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any

from zarrgeno.render.layout import HEADER_BREAKS, fit_table, stacked, wrap

if TYPE_CHECKING:
    from rich.console import Console


@dataclass(frozen=True)
class Column:
    """A table column: a header, and whether it holds numbers (right-aligned)."""

    header: str
    numeric: bool = False


def _may_be_terminal(stream: IO[str]) -> bool:
    """False when rich's ``Console.is_terminal`` is surely False for ``stream``: it is not a
    tty and neither ``FORCE_COLOR`` nor ``TTY_COMPATIBLE`` (which rich obeys) is set. Lets a
    piped command skip importing rich (about 25 ms)."""
    if "FORCE_COLOR" in os.environ or "TTY_COMPATIBLE" in os.environ:
        return True
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream: rich says False
        return False


class Output:
    """Where the CLI writes: results to stdout, messages and progress to stderr."""

    @staticmethod
    def console() -> Console:
        from rich.console import Console  # only when drawing (see the module docstring)

        return Console(highlight=False, soft_wrap=True)

    @staticmethod
    def err_console() -> Console:
        from rich.console import Console

        return Console(stderr=True, highlight=False, soft_wrap=True)

    @staticmethod
    def err_is_terminal() -> bool:
        """Whether stderr is a terminal as rich sees it (progress bars go there)."""
        return _may_be_terminal(sys.stderr) and Output.err_console().is_terminal

    @staticmethod
    def error(message: str) -> None:
        """Print a one-line error to stderr (red on a terminal)."""
        line = " ".join(message.split("\n"))
        if Output.err_is_terminal():
            Output.err_console().print(f"[bold red]Error:[/] {line}", markup=True)
        else:
            sys.stderr.write(f"Error: {line}\n")

    @staticmethod
    def note(message: str) -> None:
        """A one-line informational message on stderr."""
        if Output.err_is_terminal():
            Output.err_console().print(f"[dim]{message}[/]", markup=True)
        else:
            sys.stderr.write(message + "\n")

    @staticmethod
    def terminal() -> Console | None:
        """The console drawing on stdout when stdout is a terminal as rich sees it, else None."""
        if _may_be_terminal(sys.stdout) and (console := Output.console()).is_terminal:
            return console
        return None

    @staticmethod
    def text(message: str, *, hang: int | None = None) -> None:
        """Write plain text to stdout. On a terminal a line wider than the window wraps at
        spaces, never inside a number, its next lines ``hang`` columns in (default: the
        line's own indent + 2); piped, every line is written whole."""
        console = Output.terminal()
        if console is not None:
            lines = message.split("\n")
            message = "\n".join(_fit_line(line, console.width, hang) for line in lines)
        sys.stdout.write(message if message.endswith("\n") else message + "\n")

    @staticmethod
    def table(
        title: str | None,
        columns: Sequence[Column | str],
        rows: Sequence[Sequence[Any]],
        footer: Sequence[Any] | None = None,
    ) -> None:
        """Print a table: rich on a terminal, fitted to its width without cutting a cell
        (:func:`zarrgeno.render.layout.fit_table`); aligned plain text, one line a row, when
        piped."""
        cols = [c if isinstance(c, Column) else Column(c) for c in columns]
        cells = [[_cell(v) for v in row] for row in rows]
        foot = [_cell(v) for v in footer] if footer is not None else None
        console = Output.terminal()
        if console is None:
            sys.stdout.write(plain_table(title, cols, cells, foot))
        else:
            draw_table(console, title, cols, cells, foot)


def _fit_line(line: str, width: int, hang: int | None) -> str:
    """``line`` wrapped to ``width`` at spaces, keeping its indent (see Output.text)."""
    if len(line) <= width:
        return line
    indent = len(line) - len(line.lstrip(" "))
    hang = min(indent + 2 if hang is None else hang, width // 2)
    first, *more = wrap(line[indent:], width - hang, first=width - indent)
    return "\n".join([" " * indent + first, *(" " * hang + m for m in more)])


def draw_table(
    console: Console,
    title: str | None,
    cols: Sequence[Column],
    cells: Sequence[Sequence[str]],
    foot: Sequence[str] | None,
) -> None:
    """Draw a table on ``console`` within its width, cutting no cell: one rich table,
    tables of column groups, or one block of lines per row (see Output.table)."""
    from rich.table import Table
    from rich.text import Text

    width = console.width
    if title:
        console.print(Text("\n".join(wrap(title, width)), style="italic"))
    headers = [c.header for c in cols]
    every = [*cells, *([foot] if foot is not None else [])]
    grids = fit_table(headers, [c.numeric for c in cols], every, width)
    if grids is None:
        for n, block in enumerate(stacked(headers, every, width)):
            text = Text("\n" if n else "")
            for label, value in block:
                if label is None:
                    text.append(value + "\n", style="bold")
                else:
                    text.append(label, style="cyan")
                    text.append(value + "\n")
            text.rstrip()
            console.print(text)
        return
    for grid in grids:
        table = Table(show_footer=foot is not None, header_style="bold cyan")
        for i, w in zip(grid.columns, grid.widths, strict=True):
            table.add_column(
                Text("\n".join(wrap(cols[i].header, w, HEADER_BREAKS))),
                justify="right" if cols[i].numeric else "left",
                footer=Text("\n".join(wrap(foot[i], w))) if foot is not None else "",
                footer_style="bold",
                width=w,
                no_wrap=True,  # the cells are wrapped to fit already
                overflow="fold",
            )
        for row in cells:
            table.add_row(
                *(
                    Text("\n".join(wrap(row[i], w)))
                    for i, w in zip(grid.columns, grid.widths, strict=True)
                )
            )
        console.print(table)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1e4 else f"{value:,.0f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


def plain_table(
    title: str | None,
    columns: Sequence[Column],
    rows: Sequence[Sequence[str]],
    footer: Sequence[str] | None = None,
) -> str:
    """Columns separated by two spaces; numbers right-aligned; easy to read and to ``awk``."""
    body = [list(r) for r in rows]
    allrows = [[c.header for c in columns], *body, *([list(footer)] if footer else [])]
    widths = [max(len(r[i]) for r in allrows) for i in range(len(columns))]

    def fmt(row: Sequence[str]) -> str:
        parts = [
            cell.rjust(w) if col.numeric else cell.ljust(w)
            for cell, w, col in zip(row, widths, columns, strict=True)
        ]
        return "  ".join(parts).rstrip()

    lines = [title] if title else []
    lines.append(fmt(allrows[0]))
    lines.append("  ".join("-" * w for w in widths))
    lines.extend(fmt(r) for r in body)
    if footer:
        lines.append("  ".join("-" * w for w in widths))
        lines.append(fmt(footer))
    return "\n".join(lines) + "\n"
