"""Rendering for the CLI: colour tables on a terminal, plain aligned text otherwise.

rich is imported only when something may be drawn on a terminal: a command whose output is
piped (``zarrgeno info STORE > file``, every test) writes plain text without it.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console


def human_bytes(n: int | float) -> str:
    """Bytes in zarr's ``.info`` style: ``7862171014 (7.3G)``'s parenthesised part."""
    value = float(n)
    for unit in ("", "K", "M", "G", "T", "P"):
        if abs(value) < 1024.0 or unit == "P":
            if unit == "":
                return f"{int(value)}"
            return f"{value:.1f}{unit}"
        value /= 1024.0
    raise AssertionError("unreachable")


def zarr_bytes(n: int) -> str:
    """``No. bytes`` as zarr prints it: ``162000 (158.2K)``, or just ``1000`` below 1 KiB."""
    short = human_bytes(n)
    return f"{n}" if short == f"{n}" else f"{n} ({short})"


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
    def text(message: str) -> None:
        """Write plain text to stdout."""
        sys.stdout.write(message if message.endswith("\n") else message + "\n")

    @staticmethod
    def table(
        title: str | None,
        columns: Sequence[Column | str],
        rows: Sequence[Sequence[Any]],
        footer: Sequence[Any] | None = None,
    ) -> None:
        """Print a table: rich on a terminal, aligned plain text when piped."""
        cols = [c if isinstance(c, Column) else Column(c) for c in columns]
        cells = [[_cell(v) for v in row] for row in rows]
        foot = [_cell(v) for v in footer] if footer is not None else None
        if _may_be_terminal(sys.stdout) and (console := Output.console()).is_terminal:
            from rich.table import Table as RichTable

            table = RichTable(title=title, show_footer=foot is not None, header_style="bold cyan")
            for i, col in enumerate(cols):
                table.add_column(
                    col.header,
                    justify="right" if col.numeric else "left",
                    footer=foot[i] if foot is not None else "",
                    footer_style="bold",
                )
            for row in cells:
                table.add_row(*row)
            console.print(table)
            return
        sys.stdout.write(plain_table(title, cols, cells, foot))


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
