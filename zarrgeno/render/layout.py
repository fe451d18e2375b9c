"""Fitting a table to a terminal's width without cutting a cell: pure text, no rich.

A table that is too wide first wraps its headers, then the text cells that can break (at
spaces, a path after a ``/``); a number or any other unbreakable word is never split. If
that is not enough the columns are split into groups that each repeat the first (key)
column, and as a last resort each row becomes a block of ``header: value`` lines.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

#: Where a cell may break inside a word too long for its column: after a ``/`` (paths).
CELL_BREAKS = "/"
#: Headers may also break after ``_`` and ``-`` (``complete_data``, ``hom-ref``).
HEADER_BREAKS = "/_-"
#: At most this many lines to a wrapped cell: the key (first) column's cells name their
#: rows, and a column narrower than that would be harder to read than a split table.
KEY_LINES = 2
CELL_LINES = 3
#: What a rich box costs per column (a border and one space of padding on either side),
#: and once per table (the closing border).
FRAME_PER_COLUMN = 3
FRAME_EDGE = 1

# Spaces that never break a line: between a number and its unit (``78.6 MB``,
# ``12.3 MB/s``, ``0.2 s``) and inside a shape (``300000 x 50 x 2``).
_UNIT_SPACE = re.compile(r"(?<=\d) (?=(?:[kMGTP]?B|s)(?:/s)?\b)|(?<=\d) (?=x \d)|(?<=\d x) (?=\d)")
_GLUE = "\x00"


def _pieces(text: str, width: int, breaks: str) -> list[tuple[str, str]]:
    """``text`` as (separator, piece) pairs: words at runs of spaces (the separator keeps
    the run, so an aligned ``key   : value`` stays aligned), and a word longer than
    ``width`` cut after each of ``breaks`` (an empty separator)."""
    out: list[tuple[str, str]] = []
    for match in re.finditer(r"(\s*)(\S+)", _UNIT_SPACE.sub(_GLUE, text)):
        sep, word = match.group(1) or " ", match.group(2).replace(_GLUE, " ")
        if len(word) <= width or not breaks:
            out.append((sep, word))
            continue
        parts = re.split(f"(?<=[{re.escape(breaks)}])", word)
        out.extend((sep if i == 0 else "", p) for i, p in enumerate(parts) if p)
    return out


def longest_piece(text: str, breaks: str) -> int:
    """The narrowest width ``text`` can wrap to without cutting a word.

    >>> longest_piece("2L/calldata/GT *", "/"), longest_piece("48,525,747", "/")
    (9, 10)
    """
    return max((len(p) for _, p in _pieces(text, 0, breaks)), default=0)


def wrap(
    text: str, width: int, breaks: str = CELL_BREAKS, *, first: int | None = None
) -> list[str]:
    """Lines of at most ``width`` characters (``first`` for the first line), broken at
    spaces (and after ``breaks`` inside a longer word); a piece that cannot break stays
    whole, even if longer.

    >>> wrap("2L/calldata/GT *", 10)
    ['2L/', 'calldata/', 'GT *']
    >>> wrap("Compressor   : Blosc(cname='lz4', clevel=5)", 34)
    ["Compressor   : Blosc(cname='lz4',", 'clevel=5)']
    >>> wrap("shape 300000 x 50 x 2 (30.0 MB)", 16)
    ['shape', '300000 x 50 x 2', '(30.0 MB)']
    """
    first = width if first is None else first
    if len(text) <= first:
        return [text]
    lines: list[str] = []
    line = ""
    for sep, piece in _pieces(text, min(width, first), breaks):
        if not line:
            line = piece
        elif len(line) + len(sep) + len(piece) <= (width if lines else first):
            line += sep + piece
        else:
            lines.append(line)
            line = piece
    return [*lines, line] if line or not lines else lines


@dataclass(frozen=True)
class Grid:
    """One boxed table of a layout: which columns it shows (the key column first when the
    table is split) and the content width of each."""

    columns: tuple[int, ...]
    widths: tuple[int, ...]


def frame(n_columns: int) -> int:
    """The characters a boxed table of ``n_columns`` spends on borders and padding."""
    return FRAME_PER_COLUMN * n_columns + FRAME_EDGE


@dataclass(frozen=True)
class _Measure:
    natural: list[int]  # one line per cell and header
    spaced: list[int]  # headers wrapped at spaces, cells whole
    headed: list[int]  # headers wrapped as far as they go, cells whole
    narrowest: list[int]  # headers and breakable text cells wrapped as far as they go


def _measure(
    headers: Sequence[str], numeric: Sequence[bool], rows: Sequence[Sequence[str]]
) -> _Measure:
    m = _Measure([], [], [], [])
    for i, header in enumerate(headers):
        cells = [row[i] for row in rows]
        whole = max((len(c) for c in cells), default=0)
        head = longest_piece(header, HEADER_BREAKS)
        m.natural.append(max(len(header), whole, 1))
        m.spaced.append(max(longest_piece(header, ""), whole, 1))
        m.headed.append(max(head, whole, 1))
        if numeric[i]:
            m.narrowest.append(m.headed[-1])
        else:
            most = KEY_LINES if i == 0 else CELL_LINES
            broken = max((_narrowest(c, most) for c in cells), default=0)
            m.narrowest.append(max(head, broken, 1))
    return m


def _narrowest(cell: str, lines: int) -> int:
    """The narrowest width at which ``cell`` wraps into at most ``lines`` lines."""
    width = longest_piece(cell, CELL_BREAKS)
    while width < len(cell) and len(wrap(cell, width)) > lines:
        width += 1
    return width


def _shrink(widths: list[int], floor: Sequence[int], excess: int, *, few: bool) -> int:
    """Take up to ``excess`` characters from ``widths``, none below ``floor``; returns what
    is still in excess. ``few``: from as few columns as possible (a header wrapped once
    costs the same however narrow); else evenly from the widest (cells wrap per row)."""
    while excess > 0:
        slack = [(w - floor[i], w, i) for i, w in enumerate(widths) if w > floor[i]]
        if not slack:
            break
        most, _, i = max(slack)
        take = min(excess, most) if few else 1
        widths[i] -= take
        excess -= take
    return excess


def _fit(columns: Sequence[int], m: _Measure, width: int) -> Grid | None:
    """The widths of ``columns`` in one boxed table within ``width``, or None. Headers wrap
    first (at spaces, then after ``_`` or ``-``): that costs a line or two once, where a
    wrapped text cell costs lines in every row."""
    widths = [m.natural[i] for i in columns]
    excess = sum(widths) + frame(len(columns)) - width
    excess = _shrink(widths, [m.spaced[i] for i in columns], excess, few=True)
    excess = _shrink(widths, [m.headed[i] for i in columns], excess, few=True)
    excess = _shrink(widths, [m.narrowest[i] for i in columns], excess, few=False)
    return Grid(tuple(columns), tuple(widths)) if excess <= 0 else None


def _groups(n: int, parts: int, cost: Sequence[int]) -> list[list[int]]:
    """Columns 1..n-1 cut into ``parts`` consecutive groups of near-equal total ``cost``."""
    rest = list(range(1, n))
    target = sum(cost[i] for i in rest) / parts
    groups: list[list[int]] = [[]]
    total = 0
    for k, i in enumerate(rest):
        left = len(rest) - k  # columns not yet placed, this one included
        need = parts - len(groups)  # groups still to open after this one
        if groups[-1] and (total + cost[i] / 2 > target * len(groups) or left <= need):
            groups.append([])
        groups[-1].append(i)
        total += cost[i]
    return groups


def fit_table(
    headers: Sequence[str],
    numeric: Sequence[bool],
    rows: Sequence[Sequence[str]],
    width: int,
) -> tuple[Grid, ...] | None:
    """Boxed tables that show every cell whole within ``width`` characters: one table if
    it fits, else column groups repeating column 0; None when even two columns do not fit
    (the caller stacks the rows).

    >>> fit_table(["contig", "total_pos"], [False, True], [["2L", "48,525,747"]], 80)
    (Grid(columns=(0, 1), widths=(6, 10)),)
    >>> fit_table(["a", "n"], [False, True], [["x" * 30, "1" * 30]], 60) is None
    True
    """
    m = _measure(headers, numeric, rows)
    n = len(headers)
    whole = _fit(range(n), m, width)
    if whole is not None:
        return (whole,)
    cost = [w + FRAME_PER_COLUMN for w in m.narrowest]
    for parts in range(2, n):
        grids = [_fit([0, *g], m, width) for g in _groups(n, parts, cost)]
        if all(g is not None for g in grids):
            return tuple(g for g in grids if g is not None)
    return None


def stacked(
    headers: Sequence[str], rows: Sequence[Sequence[str]], width: int
) -> list[list[tuple[str | None, str]]]:
    """Each row as a block of (label, text) lines: its key cell (label None), then a
    ``header: value`` line for each other non-empty cell, the value wrapped to ``width`` (a
    value too wide to sit beside its header goes on the lines below it).

    >>> stacked(["key", "mod", "entry"], [["t", "a b", "zarrgeno.x:T"]], 14)
    [[(None, 't'), ('  mod:   ', 'a b'), ('  entry:', ''), ('', '    zarrgeno.x:T')]]
    """
    pad = max((len(h) for h in headers[1:]), default=0) + 1
    blocks = []
    for row in rows:
        block: list[tuple[str | None, str]] = [(None, line) for line in wrap(row[0], width)]
        for header, value in zip(headers[1:], row[1:], strict=True):
            if not value:
                continue
            label = f"  {header + ':':<{pad}} "
            room = width - len(label)
            if room >= longest_piece(value, CELL_BREAKS):
                first, *more = wrap(value, room)
                block.append((label, first))
                block.extend((" " * len(label), line) for line in more)
            else:
                block.append((f"  {header}:", ""))
                block.extend(("", "    " + line) for line in wrap(value, width - 4))
        blocks.append(block)
    return blocks
