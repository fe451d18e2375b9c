"""Chunk specs and chunk-aligned partitions."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from zarrgeno.chunkgrid import chunk_intervals, grouped_intervals, parse_chunks
from zarrgeno.errors import UsageError


def test_tutorial_spec() -> None:
    assert parse_chunks("12131437,81,2", (48525747, 81, 2)) == (12131437, 81, 2)


def test_minus_one_is_whole_axis_and_spec_is_clamped() -> None:
    assert parse_chunks("-1, 100, 2", (1000, 81, 2)) == (1000, 81, 2)
    assert parse_chunks([5, -1, 3], (0, 4, 2)) == (1, 4, 2)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("300000,50", "has 2 value(s) but the array has 3 dimension(s)"),
        ("0,50,2", "0 is not allowed"),
        ("-2,50,2", "-2 is not allowed"),
        ("1.5,50,2", "'1.5' is not an integer"),
        ("a,b,c", "'a' is not an integer"),
        ("", "'' is not an integer"),
    ],
)
def test_bad_specs(spec: str, message: str) -> None:
    with pytest.raises(UsageError, match="chunk spec") as info:
        parse_chunks(spec, (100, 81, 2))
    assert message in str(info.value)


@given(
    start=st.integers(0, 5000),
    length=st.integers(0, 5000),
    chunk=st.integers(1, 700),
    per_task=st.integers(1, 5),
)
def test_intervals_tile_the_range_on_chunk_boundaries(
    start: int, length: int, chunk: int, per_task: int
) -> None:
    stop = start + length
    for pieces in (
        chunk_intervals(start, stop, chunk),
        grouped_intervals(start, stop, chunk, per_task),
    ):
        # Contiguous cover of start:stop with no empty piece.
        assert [p[0] for p in pieces[1:]] == [p[1] for p in pieces[:-1]]
        if length:
            assert pieces[0][0] == start and pieces[-1][1] == stop
        else:
            assert pieces == []
        assert all(a < b for a, b in pieces)
    # Each elementary piece lies within one stored chunk.
    for a, b in chunk_intervals(start, stop, chunk):
        assert a // chunk == (b - 1) // chunk
    # Grouped pieces span at most per_task stored chunks.
    for a, b in grouped_intervals(start, stop, chunk, per_task):
        assert (b - 1) // chunk - a // chunk < per_task
