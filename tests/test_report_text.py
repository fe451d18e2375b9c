"""The compiled text helper of the plink2 reports against the same text built in Python."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from zarrgeno.stats.qc.plink2 import _join, _lines

CELL = st.text("ACGT.-0123456789e,", max_size=7).map(str.encode)


@given(rows=st.lists(st.lists(st.tuples(CELL, st.booleans()), min_size=3, max_size=3), max_size=20))
def test_join_joins_the_present_cells_with_commas(rows: list[list[tuple[bytes, bool]]]) -> None:
    items = np.array([[c for c, _ in r] for r in rows] or np.empty((0, 3)), dtype="S7")
    present = np.array([[p for _, p in r] for r in rows] or np.empty((0, 3)), dtype=bool)
    expected = [b",".join(c for c, p in r if p) for r in rows]
    assert _join(items.reshape(-1, 3), present.reshape(-1, 3)).tolist() == expected


@given(columns=st.lists(st.lists(CELL, min_size=5, max_size=5), min_size=1, max_size=4))
def test_lines_are_tab_separated_rows_ending_in_newlines(columns: list[list[bytes]]) -> None:
    arrays = [np.array(c, dtype=f"S{max(len(x) for x in c) or 1}") for c in columns]
    expected = "".join("\t".join(c[i].decode() for c in columns) + "\n" for i in range(5))
    assert _lines(*arrays) == expected
